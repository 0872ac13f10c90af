"""The README's Python code blocks run, in order, in one namespace (docs that cannot rot)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

import flowplan

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_examples() -> None:
    assert len(_python_blocks()) >= 2


def test_readme_python_blocks_run_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("readme_example")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    flow = namespace["flow"]
    assert isinstance(flow, flowplan.Flow)
    assert namespace["total"] == 6
    report = namespace["report"]
    assert isinstance(report, dict)
    assert report["status"] == "SUCCESS"
    again = namespace["again"]
    assert isinstance(again, flowplan.Snapshot)
    assert again["process"].succeeded
