"""``flowplan run/resume --deps``: tasks taking ``RunContext[Deps]`` get the application's deps
from the command line, and a run that needs them refuses to start without them — through the
real entry point in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowplan.store import SqliteStateStore

README = Path(__file__).resolve().parent.parent / "README.md"

PIPELINE = """
from dataclasses import dataclass
from pathlib import Path

import flowplan.engine as flowrun

HERE = Path(__file__).parent
with open(HERE / "imports.txt", "a") as f:  # how many times this file was imported
    f.write("pipeline\\n")


@dataclass(frozen=True)
class Deps:
    source_path: str


def make_deps() -> Deps:
    return Deps(source_path=str(HERE / "input.txt"))


def needs_args(path: str) -> Deps:
    return Deps(path)


def broken() -> Deps:
    raise OSError("settings file missing")


READY = flowrun.RunContext(Deps("ready-made"))
engine = flowrun.build_default_engine()


@engine.task(name="extract", dag="etl")
def extract(context: flowrun.RunContext[Deps]) -> str:
    return context.source_path


@engine.task(name="load", dag="etl", deps=[extract])
def load(extract: str, context: flowrun.RunContext[Deps]) -> str:
    if (HERE / "broken.flag").exists():
        raise RuntimeError("load is broken")
    return f"loaded {extract} from {context.deps.source_path}"
"""

SETTINGS = """
import os

from pipeline import Deps


def from_env() -> Deps:
    return Deps(source_path=os.environ["SOURCE_PATH"])
"""


def flowplan(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flowplan ARGS`` in ``cwd``."""
    full_env = {k: v for k, v in os.environ.items() if k != "FLOWPLAN_STORE"}
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


def results(project: Path, run_id: str | None = None) -> dict[str, object]:
    with SqliteStateStore(project / ".flowplan" / "runs.db") as store:
        runs = store.list_runs()
        info = runs[-1] if run_id is None else store.get_run(run_id)
        snapshot = store.load(info.run_id)
    return {name: r.value for name, r in snapshot.records.items() if r.succeeded}


def run_count(project: Path) -> int:
    db = project / ".flowplan" / "runs.db"
    if not db.exists():
        return 0
    with SqliteStateStore(db) as store:
        return len(store.list_runs())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    (tmp_path / "settings.py").write_text(SETTINGS)
    return tmp_path


def test_the_readme_engine_program_runs_through_the_cli(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (program,) = [b for b in blocks if "build_default_engine" in b and "daily_etl" in b]
    (tmp_path / "etl.py").write_text(program)

    refused = flowplan(tmp_path, "run", "etl.py")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "task 'extract' (parameter 'context') takes a RunContext" in refused.stderr
    assert "--deps etl.py:make_deps" in refused.stderr
    assert run_count(tmp_path) == 0  # refused before anything was recorded

    done = flowplan(tmp_path, "run", "etl.py", "--deps", "make_deps")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^run [0-9a-f]{32} succeeded in \S+: 2 succeeded$", done.stdout, re.M)
    assert results(tmp_path) == {"extract": [{"id": 1, "amount": 10}, {"id": 2, "amount": 15}],
                                 "transform": 25}  # fmt: skip


def test_the_deps_reach_the_tasks_and_resume_gives_them_again(project: Path) -> None:
    (project / "broken.flag").touch()
    failed = flowplan(project, "run", "pipeline.py", "--deps", "pipeline.py:make_deps")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    expected = str(project / "input.txt")
    assert results(project) == {"extract": expected}
    assert (project / "imports.txt").read_text().split() == ["pipeline"]  # imported once

    (project / "broken.flag").unlink()
    resumed = flowplan(project, "resume", "last")  # the run's own --deps, given again
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert results(project) == {"extract": expected, "load": f"loaded {expected} from {expected}"}


def test_deps_from_another_module_a_class_or_a_ready_context(project: Path) -> None:
    other = flowplan(
        project, "run", "pipeline.py", "--deps", "settings:from_env", env={"SOURCE_PATH": "s3://x"}
    )
    assert other.returncode == 0, other.stdout + other.stderr
    assert results(project)["load"] == "loaded s3://x from s3://x"

    ready = flowplan(project, "run", "pipeline.py", "--deps", "READY")
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert results(project)["extract"] == "ready-made"
    assert (project / "imports.txt").read_text().split() == ["pipeline", "pipeline"]


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        ("nowhere", "pipeline.py has no attribute 'nowhere'"),
        ("needs_args", "needs_args takes arguments (path)"),
        ("broken", "broken() raised OSError: settings file missing"),
        ("not a name", "'not a name' is not a Python name"),
        ("missing_module:make", "no module named 'missing_module'"),
    ],
)
def test_bad_deps_are_usage_errors_before_anything_runs(
    project: Path, deps: str, message: str
) -> None:
    done = flowplan(project, "run", "pipeline.py", "--deps", deps)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert done.stderr.startswith("flowplan: error:")
    assert run_count(project) == 0


def test_a_context_with_a_default_runs_without_deps(tmp_path: Path) -> None:
    (tmp_path / "optional.py").write_text(
        "import flowplan.engine as flowrun\n"
        "engine = flowrun.build_default_engine()\n\n\n"
        '@engine.task(name="one", dag="d")\n'
        "def one(context: flowrun.RunContext[int] | None = None) -> str:\n"
        "    return 'none' if context is None else 'some'\n"
    )
    done = flowplan(tmp_path, "run", "optional.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert results(tmp_path) == {"one": "none"}
