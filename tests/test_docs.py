"""The guide in docs/ and the examples: every ```python block runs; every example runs."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import flowplan
from doc_blocks import python_blocks, run_blocks

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


def test_the_guide_has_every_page() -> None:
    assert {p.name for p in PAGES} >= REQUIRED
    assert sum(len(python_blocks(p)) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run_on_their_own_or_say_what_they_continue(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every block runs as a reader copies it: alone, or after the block its first line names
    (``# continues the example above`` / ``# continues the "Heading" example``)."""
    monkeypatch.chdir(tmp_path)
    registry = flowplan.Registry()
    token = registry.activate()
    try:
        ran = [block for block, _ in run_blocks(page, f"docs_{page.stem.replace('-', '_')}")]
    finally:
        registry.deactivate(token)
    assert len(ran) == len(python_blocks(page))


def test_a_block_that_silently_continues_another_fails(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n```python\nx = 1\n```\n\n## Next\n\n```python\nprint(x)\n```\n"
        "\n```python\n# continues the example above\ny = 2\n```\n"
        '\n```python\n# continues the "Page" example\nassert x == 1\n```\n'
    )
    with pytest.raises(NameError, match="'x' is not defined"):
        list(run_blocks(page, "silent"))
    page.write_text(page.read_text().replace("print(x)", "# continues the example above\nprint(x)"))
    blocks = [block.continues for block, _ in run_blocks(page, "declared")]
    assert blocks == [None, "", "", "Page"]


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=lambda p: p.name)
def test_every_markdown_file_named_exists(page: Path) -> None:
    """A page that names a ``.md`` file (linked or not) names one the repository has: the
    migration guide once cited a DESIGN.md that is no part of it."""
    text = page.read_text(encoding="utf-8")
    for name in set(re.findall(r"[\w./-]+\.md\b", text)):
        places = (page.parent / name, ROOT / name, DOCS / name)
        assert any(p.exists() for p in places), f"{page.name} names {name}, which is not here"


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


# -- every example through the real command line, as documented --------------------------------
def _cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWPLAN_", "ETL_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flowplan", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_examples(project: Path) -> str:
    """The examples copied into ``project`` (a user's checkout); their relative directory."""
    (project / "examples").mkdir(exist_ok=True)
    for example in (ROOT / "examples").glob("*.py"):
        (project / "examples" / example.name).write_text(example.read_text(encoding="utf-8"))
    return "examples"


def test_every_example_is_documented_with_its_command_line() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for example in sorted((ROOT / "examples").glob("*.py")):
        assert f"flowplan run examples/{example.name}" in readme, example.name


def test_the_etl_example_runs_and_resumes_through_the_command_line(tmp_path: Path) -> None:
    """``flowplan run examples/etl_sqlite.py`` fails in load (the injected fault), and
    ``ETL_FIXED=1 flowplan resume last`` finishes it; importing it creates no directory."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {"TMPDIR": str(private_tmp)}
    example = _copy_examples(tmp_path) + "/etl_sqlite.py"
    explained = _cli(tmp_path, "explain", example, env=env)
    assert explained.returncode == 0, explained.stderr
    assert not (tmp_path / ".flowplan").exists()  # importing creates nothing
    first = _cli(tmp_path, "run", example, env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "OperationalError: disk I/O error (injected)" in first.stdout
    assert "no such table" not in first.stdout
    resumed = _cli(tmp_path, "resume", "last", env={**env, "ETL_FIXED": "1"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert ": 1 succeeded, 2 reused" in resumed.stdout
    with closing(sqlite3.connect(tmp_path / ".flowplan" / "etl-example" / "warehouse.db")) as db:
        rows = db.execute("SELECT customer, euros FROM spend ORDER BY customer").fetchall()
    assert rows == [("ada", 19.75), ("bob", 40.01), ("cy", 0.99)]
    assert list(private_tmp.iterdir()) == []  # no temporary directory leaked per import


def test_the_demo_and_tool_call_examples_run_through_the_command_line(tmp_path: Path) -> None:
    examples = _copy_examples(tmp_path)
    demo = _cli(tmp_path, "run", f"{examples}/demo.py")
    assert demo.returncode == 1, demo.stdout + demo.stderr  # score fails, as documented
    assert "RuntimeError: scoring service returned 500" in demo.stdout
    fixed = _cli(tmp_path, "resume", "last", env={"DEMO_FIXED": "1"})
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    tools = _cli(tmp_path, "run", f"{examples}/tool_calls.py")
    assert tools.returncode == 0, tools.stdout + tools.stderr
    assert re.search(r"^answer\s+succeeded", tools.stdout, re.M)
    assert re.search(r"^notify\s+succeeded", tools.stdout, re.M)


def test_an_example_run_as_a_module_is_listed_under_its_own_name(tmp_path: Path) -> None:
    """``flowplan run examples.demo`` (a module, from the project directory) is the DAG
    ``demo``, not ``examples``."""
    _copy_examples(tmp_path)
    done = _cli(tmp_path, "run", "examples.demo", env={"DEMO_FIXED": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    runs = _cli(tmp_path, "runs").stdout.splitlines()
    assert runs[1].split()[1] == "demo", runs
