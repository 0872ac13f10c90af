"""The guide in docs/ and the examples: every ```python block runs; every example runs."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import flowplan

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
REQUIRED = {
    "concepts.md",
    "flow.md",
    "engine.md",
    "core-api.md",
    "stores.md",
    "hooks-and-logging.md",
    "scaling-out.md",
    "guarantees.md",
    "migrating.md",
    "cli.md",
}


def _blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)


def test_the_guide_has_every_page() -> None:
    assert {p.name for p in PAGES} >= REQUIRED
    assert sum(len(_blocks(p)) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run_in_order(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    registry = flowplan.Registry()
    token = registry.activate()
    try:
        for block in _blocks(page):
            exec(compile(block, str(page), "exec"), module.__dict__)
    finally:
        registry.deactivate(token)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def _run_example(name: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_etl_example_resumes_after_the_injected_failure() -> None:
    out = _run_example("etl_sqlite.py")
    assert "first run: load failed: OperationalError: disk I/O error (injected)" in out
    assert "reuse extract: succeeded in an earlier run" in out
    assert "resumed run: load succeeded, rows = 3" in out
    assert "warehouse: ada=19.75, bob=40.01, cy=0.99" in out
    assert "calls: extract=1 transform=1 load=2" in out


def test_tool_call_example_uses_gates_validation_retry_until_and_detached() -> None:
    out = _run_example("tool_calls.py")
    assert "SUCCEEDED weather" in out
    assert "search pages fetched: 2" in out
    assert "answer: Lisbon: 24°C, sunny. Pack: packing tip 1, packing tip 2." in out
    assert "notify: succeeded: posted:" in out
    assert "[detached]" in out
