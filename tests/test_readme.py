"""The README's Python code blocks run as a reader copies them (docs that cannot rot), and
its set-up commands say what they install."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import flowplan
from doc_blocks import python_blocks, run_blocks

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_readme_has_python_examples() -> None:
    assert len(python_blocks(README)) >= 2


def test_readme_python_blocks_run_on_their_own_or_say_what_they_continue() -> None:
    """The core API block declares that it continues the flowing quick start (it used to
    continue it silently and failed alone with ``NameError: fetch_data``)."""
    spaces: dict[str, dict[str, Any]] = {}
    for block, namespace in run_blocks(README, "readme_example"):
        spaces[block.heading] = namespace
    quick = spaces["Quick start (flowing's API)"]
    assert isinstance(quick["flow"], flowplan.Flow)
    assert quick["total"] == 6
    report = spaces["Quick start (flowrun's async Engine)"]["report"]
    assert isinstance(report, dict)
    assert report["status"] == "SUCCESS"
    core = next(b for b in python_blocks(README) if b.heading == "The core API")
    assert core.continues == "Quick start (flowing's API)"
    again = spaces["The core API"]["again"]
    assert isinstance(again, flowplan.Snapshot)
    assert again["process"].succeeded


def _sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_demo_command_installs_the_package_alone_and_the_tests_the_dev_extra() -> None:
    demo = next(b.strip() for b in _sh_blocks() if "examples/demo.py" in b and "pip" in b)
    assert demo == (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python examples/demo.py"
    )
    test = next(b.strip() for b in _sh_blocks() if "pytest" in b)
    assert ".venv/bin/pip install -e '.[dev]'" in test
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test.split("&& ", 2)[2] in ci  # the test command itself, after its install
    assert 'bin/pip" install --quiet -e . && ' in ci  # the demo, with the package alone
    assert "examples/demo.py > /dev/null" in ci


_WITHOUT_EXTRAS = """
import runpy, sys

# As if not installed: `import x` raises ModuleNotFoundError, importlib.util.find_spec is None.
for name in ("rich", "beartype", "cloudpickle", "distributed", "dask", "hypothesis", "pytest",
             "opentelemetry", "mypy", "pyright", "ruff"):
    sys.modules[name] = None
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_every_example_runs_with_the_core_dependencies_only(tmp_path: Path) -> None:
    """What `pip install -e .` gives: no extra is importable, and every example still runs."""
    for example in sorted((ROOT / "examples").glob("*.py")):
        done = subprocess.run(
            [sys.executable, "-c", _WITHOUT_EXTRAS, str(example)],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "DEMO_FIXED": "0"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{example.name}: {done.stderr}"
