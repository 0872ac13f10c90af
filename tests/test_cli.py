"""The ``flowplan`` command, driven through its real entry point in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PIPELINE = """
import os
from pathlib import Path

from flowplan import task

HERE = Path(__file__).parent


def _count(name: str) -> None:
    with open(HERE / "calls.txt", "a") as f:
        f.write(name + "\\n")


@task
def extract() -> list[int]:
    _count("extract")
    return [1, 2, 3]


@task(depends_on=[extract])
def transform(extract: list[int]) -> int:
    _count("transform")
    if os.environ.get("BREAK_TRANSFORM") == "1" or (HERE / "broken.flag").exists():
        raise RuntimeError("transform is broken\\nsecond line of the message")
    return sum(extract)


@task(depends_on=[transform])
def load(transform: int) -> str:
    _count("load")
    return f"loaded {transform}"
"""

ENGINE = """
import flowplan.engine as flowrun

engine = flowrun.build_default_engine()


@engine.task(name="a", dag="etl")
def a() -> int:
    return 1


@engine.task(name="b", dag="etl", deps=[a])
def b(a: int) -> int:
    return a + 1


@engine.task(name="other", dag="reports")
def other() -> int:
    return 0
"""

FLOW = """
from flowplan import Flow, Registry, task

registry = Registry()


@task(registry=registry)
def one() -> int:
    return 1


@task(depends_on=[one], registry=registry)
def two(one: int) -> int:
    return one + 1


@task(depends_on=[two], detached=True, registry=registry)
def ping(two: int) -> str:
    return "sent"


flow = Flow(two, registry=registry)
"""


def flowplan(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flowplan ARGS`` in ``cwd``."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("FLOWPLAN_STORE",)}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flowplan", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_id(out: str) -> str:
    found = re.search(r"^run ([0-9a-f]{32}) ", out, re.M)
    assert found, out
    return found.group(1)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls.txt").read_text().split()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    return tmp_path


def test_run_succeeds_with_exit_0(project: Path) -> None:
    done = flowplan(project, "run", "pipeline.py")
    assert done.returncode == 0, done.stderr
    assert re.match(r"run [0-9a-f]{32} succeeded in \S+: 3 succeeded\n", done.stdout)
    assert "TASK" in done.stdout
    assert done.stderr == ""  # not a terminal: no progress, no logs
    assert calls(project) == ["extract", "transform", "load"]
    assert (project / ".flowplan" / "runs.db").exists()


def test_failed_run_exits_1_and_resume_reuses_what_succeeded(project: Path) -> None:
    failed = flowplan(project, "run", "pipeline.py", env={"BREAK_TRANSFORM": "1"})
    assert failed.returncode == 1, failed.stderr
    first = run_id(failed.stdout)
    assert "1 succeeded, 1 failed, 1 skipped" in failed.stdout
    assert "RuntimeError: transform is broken" in failed.stdout
    assert "second line" not in failed.stdout
    assert f"flowplan resume {first[:12]}" in failed.stdout

    still = flowplan(project, "resume", first[:8], env={"BREAK_TRANSFORM": "1"})
    assert still.returncode == 1
    resumed = flowplan(project, "resume", "last")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "1 reused" in resumed.stdout
    assert calls(project) == ["extract", "transform", "transform", "transform", "load"]

    runs = flowplan(project, "runs")
    assert runs.returncode == 0
    lines = runs.stdout.splitlines()
    assert lines[0].split() == ["RUN", "DAG", "STATUS", "STARTED", "DURATION", "TASKS"]
    assert len(lines) == 4
    assert " succeeded " in lines[1]
    assert "2 succeeded, 1 reused" in lines[1]
    assert "(resumes " in lines[1]
    assert lines[3].startswith(first[:12])
    assert "pipeline" in lines[3]
    assert "1 succeeded, 1 failed, 1 skipped" in lines[3]


def test_resume_after_fixing_a_flag_file(project: Path) -> None:
    (project / "broken.flag").write_text("")
    first = run_id(flowplan(project, "run", "pipeline.py").stdout)
    (project / "broken.flag").unlink()
    done = flowplan(project, "resume", first)
    assert done.returncode == 0
    assert calls(project).count("extract") == 1
    assert calls(project).count("load") == 1


def test_show_lists_tasks_with_error_and_root_cause(project: Path) -> None:
    failed = flowplan(project, "run", "pipeline.py", env={"BREAK_TRANSFORM": "1"})
    shown = flowplan(project, "show", run_id(failed.stdout)[:6])
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "status    failed" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("e", "t", "l"))}
    assert rows["extract"].split()[1:3] == ["succeeded", "1"]
    assert rows["transform"].split()[1:3] == ["failed", "1"]
    assert rows["transform"].endswith("RuntimeError: transform is broken")
    assert rows["load"].split()[1] == "skipped"
    assert "upstream 'transform' failed" in rows["load"]
    causes = out.splitlines()[out.splitlines().index("root causes:") :]
    assert causes == [
        "root causes:",
        "  transform failed (RuntimeError: transform is broken) -> skipped 1: load",
    ]


def test_graph_formats_and_coloring_by_a_run(project: Path) -> None:
    mermaid = flowplan(project, "graph", "pipeline.py")
    assert mermaid.returncode == 0
    assert mermaid.stdout.splitlines()[:4] == [
        "flowchart LR",
        '    n0["extract"]',
        '    n1["transform"]',
        '    n2["load"]',
    ]
    dot = flowplan(project, "graph", "pipeline.py", "--format", "dot")
    assert '"extract" -> "transform";' in dot.stdout
    ascii_tree = flowplan(project, "graph", "pipeline.py", "--format", "ascii")
    assert ascii_tree.stdout == "extract\n└── transform\n    └── load\n"

    failed = flowplan(project, "run", "pipeline.py", env={"BREAK_TRANSFORM": "1"})
    rid = run_id(failed.stdout)
    colored = flowplan(project, "graph", "pipeline.py", "--run", rid)
    assert "    class n1 failed" in colored.stdout
    assert "    class n2 skipped" in colored.stdout
    tree = flowplan(project, "graph", "pipeline.py", "--format", "ascii", "--run", "last")
    assert "transform [failed]" in tree.stdout


def test_explain_is_a_dry_run(project: Path) -> None:
    fresh = flowplan(project, "explain", "pipeline.py")
    assert fresh.returncode == 0
    assert fresh.stdout.splitlines() == [
        "3 to run, 0 to reuse, 0 not needed",
        "run extract: no earlier record",
        "run transform: no earlier record",
        "run load: no earlier record",
    ]
    assert not (project / "calls.txt").exists()
    only = flowplan(project, "explain", "pipeline.py", "--only", "extract")
    assert "not needed load: not upstream of any target" in only.stdout

    failed = flowplan(project, "run", "pipeline.py", env={"BREAK_TRANSFORM": "1"})
    resume = flowplan(project, "explain", "pipeline.py", "--run", run_id(failed.stdout))
    assert "reuse extract: succeeded in an earlier run" in resume.stdout
    assert "run transform: failed earlier (RuntimeError: transform is broken" in resume.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run"], "the following arguments are required: TARGET"),
        (["run", "missing.py"], "no such file: 'missing.py'"),
        (["run", "pipeline.py:nope"], "pipeline.py has no attribute 'nope'"),
        (["run", "no_such_module_xyz"], "no module named 'no_such_module_xyz'"),
        (["run", "pipeline.py:HERE"], "pipeline.py:HERE is PosixPath, not something"),
        (["show", "abc"], "no run store at"),
        (["runs"], "no run store at"),
        (["graph", "pipeline.py", "--format", "png"], "invalid choice: 'png'"),
        (["explain", "pipeline.py", "--only", "lod"], "did you mean 'load'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(project: Path, args: list[str], message: str) -> None:
    if sys.platform == "win32" and "PosixPath" in message:  # pragma: no cover
        pytest.skip("path class name differs")
    done = flowplan(project, *args)
    assert done.returncode == 2, done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("flowplan: error: ")
    assert message in done.stderr


def test_definition_errors_exit_2_and_verbose_adds_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        textwrap.dedent(
            """
            from flowplan import task

            @task(depends_on=["missing"])
            def a(missing: int) -> int:
                return missing
            """
        )
    )
    (tmp_path / "broken.py").write_text("def oops(:\n")
    done = flowplan(tmp_path, "run", "bad.py")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "invalid task graph" in done.stderr
    assert "'missing'" in done.stderr
    syntax = flowplan(tmp_path, "graph", "broken.py")
    assert syntax.returncode == 2
    assert "cannot import 'broken.py': SyntaxError" in syntax.stderr
    verbose = flowplan(tmp_path, "run", "bad.py", "--verbose")
    assert verbose.returncode == 2
    assert "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.splitlines()[-1].startswith("flowplan: error: ")


def test_resume_of_an_unknown_or_foreign_run(project: Path, tmp_path: Path) -> None:
    flowplan(project, "run", "pipeline.py")
    unknown = flowplan(project, "resume", "zzzz")
    assert unknown.returncode == 2
    assert "no run 'zzzz'" in unknown.stderr

    # a run recorded by library code has no target: --target supplies it
    script = (
        "from flowplan import TaskGraph, execute, plan\n"
        "from flowplan.store import SqliteStateStore\n"
        "import pipeline\n"
        "with SqliteStateStore('.flowplan/runs.db') as s:\n"
        "    g = TaskGraph.build([pipeline.extract, pipeline.transform, pipeline.load])\n"
        "    print(execute(plan(g), store=s).run_id)\n"
    )
    made = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BREAK_TRANSFORM": "1"},
    )
    foreign = made.stdout.strip()
    refused = flowplan(project, "resume", foreign)
    assert refused.returncode == 2
    assert "pass them with --target" in refused.stderr
    done = flowplan(project, "resume", foreign, "--target", "pipeline.py")
    assert done.returncode == 0, done.stderr


def test_progress_flag_and_json_logs(project: Path) -> None:
    done = flowplan(project, "run", "pipeline.py", "--progress")
    assert done.returncode == 0
    assert "3/3" in done.stderr  # rich draws once at the end when stderr is not a terminal
    logged = flowplan(project, "run", "pipeline.py", "--no-progress", "--log-format", "json")
    events = [json.loads(line) for line in logged.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_started"
    assert names[-1] == "run_finished"
    assert {"task": "load", "event": "task_succeeded", "level": "info"}.items() <= next(
        e for e in events if e["event"] == "task_succeeded" and e["task"] == "load"
    ).items()
    console = flowplan(project, "run", "pipeline.py", "--log-format", "console")
    assert "task_succeeded" in console.stderr
    assert "{" not in console.stderr.splitlines()[0]


def test_flow_and_engine_targets_and_modules(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOW)
    (tmp_path / "engines.py").write_text(ENGINE)
    flow = flowplan(tmp_path, "run", "flows.py")  # the one Flow is found by itself
    assert flow.returncode == 0, flow.stderr
    assert "ping" in flow.stdout  # the detached task came from the module's Registry
    by_module = flowplan(tmp_path, "run", "flows:two")  # a module and a task
    assert by_module.returncode == 0, by_module.stderr

    ambiguous = flowplan(tmp_path, "run", "engines.py:engine")
    assert ambiguous.returncode == 2
    assert "choose one with --dag" in ambiguous.stderr
    engine = flowplan(tmp_path, "run", "engines.py:engine", "--dag", "etl")
    assert engine.returncode == 0, engine.stderr
    runs = flowplan(tmp_path, "runs").stdout.splitlines()
    assert runs[1].split()[1] == "etl"
    assert runs[2].split()[1] == "two"
    assert runs[3].split()[1] == "flow"


def test_store_option_and_env(project: Path) -> None:
    done = flowplan(project, "run", "pipeline.py", "--store", "elsewhere/r.db")
    assert done.returncode == 0
    assert (project / "elsewhere" / "r.db").exists()
    listed = flowplan(project, "runs", env={"FLOWPLAN_STORE": "elsewhere/r.db"})
    assert len(listed.stdout.splitlines()) == 2


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("flowplan")
    if not script.exists():  # pragma: no cover - not installed in this environment
        pytest.skip("the flowplan console script is not installed")
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0
    for command in ("run", "resume", "runs", "show", "graph", "explain"):
        assert command in done.stdout


def test_the_readme_walk_through(tmp_path: Path) -> None:
    """The README's "Command line" commands, as a new user would type them (in a copy of the
    project: ``resume`` imports recorded files from inside the current directory only)."""
    source = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "demo.py").write_text(source.read_text(encoding="utf-8"))
    demo = "examples/demo.py"
    first = flowplan(tmp_path, "run", demo, env={"DEMO_FIXED": "0"})
    assert first.returncode == 1
    assert "RuntimeError: scoring service returned 500" in first.stdout
    assert flowplan(tmp_path, "runs").returncode == 0
    assert "score" in flowplan(tmp_path, "show", "last").stdout
    resumed = flowplan(tmp_path, "resume", "last", env={"DEMO_FIXED": "1"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "3 succeeded, 3 reused" in resumed.stdout
    drawn = flowplan(tmp_path, "graph", demo, "--run", "last")
    assert "class n0,n1,n2,n3,n4,n5 succeeded" in drawn.stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    plain = flowplan(tmp_path, "graph", demo).stdout
    assert f"```mermaid\n{plain}```" in readme


def test_the_store_directory_keeps_itself_out_of_git(project: Path) -> None:
    """``.flowplan/`` holds local state: created with a ``.gitignore`` of ``*`` (as pytest's
    cache is), so ``git status`` in the user's project never shows it."""
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=30)
    assert flowplan(project, "run", "pipeline.py").returncode == 0
    assert (project / ".flowplan" / "runs.db").exists()
    assert (project / ".flowplan" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert ".flowplan" not in status
    assert "pipeline.py" in status  # the user's own files still show
    # A store directory the user made is theirs: nothing is written into it.
    (project / "state").mkdir()
    assert flowplan(project, "run", "pipeline.py", "--store", "state/r.db").returncode == 0
    assert not (project / "state" / ".gitignore").exists()
    # One the command creates elsewhere is flowplan's own, and ignored the same way.
    assert flowplan(project, "run", "pipeline.py", "--store", "new/deep/r.db").returncode == 0
    assert (project / "new" / ".gitignore").read_text().splitlines()[-1] == "*"


GATED = """
import os

from flowplan import Registry, task

registry = Registry()


@task(registry=registry)
def fetch() -> int:
    if os.environ.get("BREAK_FETCH") == "1":
        raise RuntimeError("fetch is down")
    return 3


@task(depends_on=[fetch], when=lambda fetch: fetch > 0, registry=registry)
def report(fetch: int) -> str:
    return f"report {fetch}"


@task(depends_on=[fetch], detached=True, registry=registry)
def ping(fetch: int) -> str:
    return "sent"
"""


def test_explain_prints_the_library_explanation_word_for_word(tmp_path: Path) -> None:
    """``flowplan explain`` and ``Plan.explain()`` are one text: the header, then each task
    with its notes (a ``when=`` gate, a detached task), fresh and resuming."""
    from flowplan import plan
    from flowplan._cli_target import load_target
    from flowplan.store import SqliteStateStore

    (tmp_path / "gated.py").write_text(GATED)
    target = load_target("gated.py", workdir=str(tmp_path))
    library = plan(target.graph).explain()
    fresh = flowplan(tmp_path, "explain", "gated.py")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout == library + "\n"
    assert library.splitlines() == [
        "3 to run, 0 to reuse, 0 not needed",
        "run fetch: no earlier record",
        "run report: no earlier record (skipped at run time if its when= gate is false)",
        "run ping: no earlier record (detached: its failure never fails the run)",
    ]

    failed = flowplan(tmp_path, "run", "gated.py", env={"BREAK_FETCH": "1"})
    assert failed.returncode == 1
    first = run_id(failed.stdout)
    with SqliteStateStore(tmp_path / ".flowplan" / "runs.db") as store:
        snapshot = store.load(first)
    library = plan(target.graph, snapshot).explain()
    resuming = flowplan(tmp_path, "explain", "gated.py", "--run", first[:8])
    assert resuming.returncode == 0, resuming.stderr
    assert resuming.stdout == library + "\n"
    assert library.splitlines()[0] == f"3 to run, 0 to reuse, 0 not needed (resuming {first[:12]})"


HANGING = """
import time
from pathlib import Path

from flowplan import task

HERE = Path(__file__).parent


@task
def first() -> int:
    with open(HERE / "calls.txt", "a") as f:
        f.write("first\\n")
    return 1


@task(depends_on=[first])
def slow(first: int) -> int:
    if (HERE / "hang.flag").exists():
        (HERE / "started").touch()
        time.sleep(600)
    return first + 1
"""


def test_ctrl_c_records_the_run_and_exits_at_once_with_130(tmp_path: Path) -> None:
    from flowplan import TaskStatus
    from flowplan.engine import SqliteStateStore

    (tmp_path / "pipeline.py").write_text(HANGING)
    (tmp_path / "hang.flag").touch()
    env = {k: v for k, v in os.environ.items() if k != "FLOWPLAN_STORE"}
    child = subprocess.Popen(
        [sys.executable, "-m", "flowplan", "run", "pipeline.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)  # a real Ctrl-C, while the sync task sleeps
        _, err = child.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130, err
    assert took < 15  # never waited for the 600 s task
    assert "interrupted" in err
    assert "Traceback" not in err  # no "Exception ignored in threading._shutdown"
    with SqliteStateStore(tmp_path / ".flowplan" / "runs.db") as store:
        (info,) = store.list_runs()
        assert info.status == "failed"
        snap = store.load(info.run_id)
    assert snap["first"].status is TaskStatus.SUCCEEDED
    assert snap["slow"].status is TaskStatus.FAILED
    assert snap["slow"].error is not None
    assert snap["slow"].error.kind == "interrupted"
    (tmp_path / "hang.flag").unlink()
    resumed = flowplan(tmp_path, "resume", "last")
    assert resumed.returncode == 0, resumed.stderr
    assert calls(tmp_path) == ["first"]  # reused, not run again


FAN_OUT = """
from pathlib import Path

from flowplan import Flow, Registry, task

HERE = Path(__file__).parent
registry = Registry()


@task(registry=registry)
def list_files() -> list[str]:
    return ["a.csv", "b.csv", "c.csv"]


@task(depends_on=[list_files], fan_out=list_files, registry=registry)
def count_rows(list_files: str) -> int:
    if list_files == "b.csv" and (HERE / "broken.flag").exists():
        raise OSError(f"cannot read {list_files}")
    return len(list_files)


@task(depends_on=[count_rows], registry=registry)
def total(count_rows: list[int]) -> int:
    return sum(count_rows)


flow = Flow(total, registry=registry, fail_fast=False, log=False)
"""

FAN_OUT_ORDER = ["list_files", "count_rows", *(f"count_rows[{i}]" for i in range(3)), "total"]


def _table(out: str) -> list[list[str]]:
    """The rows of the TASK table in ``out``, split into cells."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("TASK "))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("fix the cause"):
            break
        rows.append(line.split())
    return rows


def test_a_fan_out_resume_has_one_count_and_one_order_everywhere(tmp_path: Path) -> None:
    """After a fan-out resume, ``resume``, ``runs``, ``show``, ``run_finished``,
    ``Flow.summary()`` and the snapshot agree: reused elements count as reused, and every
    surface lists the tasks in graph order with the elements right after their task."""
    import importlib.util

    (tmp_path / "fan.py").write_text(FAN_OUT)
    (tmp_path / "broken.flag").touch()
    first = flowplan(tmp_path, "run", "fan.py")
    assert first.returncode == 1, first.stdout + first.stderr
    assert [row[0] for row in _table(first.stdout)] == FAN_OUT_ORDER
    (tmp_path / "broken.flag").unlink()

    resumed = flowplan(tmp_path, "resume", "last", "--log-format", "json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.splitlines()[0].endswith(": 3 succeeded, 3 reused")
    resume_rows = _table(resumed.stdout)
    assert [row[0] for row in resume_rows] == FAN_OUT_ORDER
    reused = [row[0] for row in resume_rows if "reused" in row]
    assert reused == ["list_files", "count_rows[0]", "count_rows[2]"]
    logs = [json.loads(line) for line in resumed.stderr.splitlines() if line.startswith("{")]
    (finished,) = [entry for entry in logs if entry["event"] == "run_finished"]
    assert (finished["succeeded"], finished["reused"]) == (3, 3)
    assert "failed" not in finished

    runs = flowplan(tmp_path, "runs").stdout.splitlines()
    assert "3 succeeded, 3 reused (resumes" in runs[1]  # newest first
    assert "3 succeeded, 2 failed, 1 skipped" in runs[2]  # list_files, 2 elements; b, its task
    shown = flowplan(tmp_path, "show", "last").stdout
    assert _table(shown) == resume_rows  # same rows, same order, same details

    spec = importlib.util.spec_from_file_location("fan_in_process", tmp_path / "fan.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "broken.flag").touch()
    module.flow.run()
    (tmp_path / "broken.flag").unlink()
    module.flow.resume()
    summary = module.flow.summary().splitlines()
    assert [line.split()[1] for line in summary] == FAN_OUT_ORDER
    assert list(module.flow.snapshot.records) == FAN_OUT_ORDER
    assert list(module.flow.results) == FAN_OUT_ORDER


def _redirect_recorded(db: Path, column: str, table: str, value: str) -> None:
    """Rewrite what the run book records, as a crafted store file would."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.execute(f"UPDATE {table} SET {column} = ?", (value,))
        conn.commit()
    finally:
        conn.close()


def test_resume_refuses_to_import_a_recorded_file_outside_the_project(tmp_path: Path) -> None:
    """A store is trusted like code: ``resume`` shows which outside file it would import and
    refuses it unless --trust-path is given (--target, the user's own choice, is not asked)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pipeline.py").write_text(PIPELINE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = elsewhere / "planted.py"
    planted.write_text(
        PIPELINE + "\n(HERE / 'planted-ran.txt').write_text('code ran')\n", encoding="utf-8"
    )
    failed = flowplan(project, "run", "pipeline.py", env={"BREAK_TRANSFORM": "1"})
    assert failed.returncode == 1
    db = project / ".flowplan" / "runs.db"
    _redirect_recorded(db, "target", "flowplan_cli_targets", str(planted))
    refused = flowplan(project, "resume", "last")
    assert refused.returncode == 2
    assert str(planted) in refused.stderr  # shown before anything is imported
    assert "outside the current directory" in refused.stderr
    assert "--trust-path" in refused.stderr
    assert not (elsewhere / "planted-ran.txt").exists()  # nothing was imported
    # --target: the user names the code, the recorded path is not used
    own = flowplan(project, "resume", "last", "--target", "pipeline.py")
    assert own.returncode == 0, own.stderr
    assert not (elsewhere / "planted-ran.txt").exists()
    # --trust-path: imported, and the file was named on stderr first
    failed = flowplan(project, "run", "pipeline.py", env={"BREAK_TRANSFORM": "1"})
    _redirect_recorded(db, "target", "flowplan_cli_targets", str(planted))
    trusted = flowplan(project, "resume", "last", "--trust-path")
    assert trusted.returncode == 0, trusted.stderr
    assert f"importing {planted}" in trusted.stderr
    assert (elsewhere / "planted-ran.txt").read_text() == "code ran"


def test_resume_imports_a_recorded_file_inside_the_project_without_asking(
    project: Path,
) -> None:
    (project / "jobs").mkdir()
    (project / "jobs" / "etl.py").write_text(PIPELINE)
    failed = flowplan(project, "run", "jobs/etl.py", env={"BREAK_TRANSFORM": "1"})
    assert failed.returncode == 1
    done = flowplan(project, "resume", "last")
    assert done.returncode == 0, done.stderr
    assert "importing" not in done.stderr


def test_the_help_says_a_store_is_trusted_like_code(project: Path) -> None:
    shown = flowplan(project, "resume", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "trusted like code" in text
    assert "--trust-path" in text


HOLDING = """
import time
from pathlib import Path

from flowplan import task

HERE = Path(__file__).parent


@task
def first() -> int:
    if (HERE / "broken.flag").exists():
        raise RuntimeError("broken")
    return 1


@task(depends_on=[first])
def hold(first: int) -> int:
    (HERE / "holding").touch()
    while (HERE / "hold.flag").exists():
        time.sleep(0.05)
    with open(HERE / "calls.txt", "a") as f:
        f.write("hold\\n")
    return first
"""


def test_a_second_resume_of_a_live_run_is_refused_with_its_owner(tmp_path: Path) -> None:
    """Two terminals resume the same failed run: the second is refused (exit 2) naming the
    live owner, and the held task runs once."""
    (tmp_path / "holding.py").write_text(HOLDING)
    (tmp_path / "broken.flag").touch()
    assert flowplan(tmp_path, "run", "holding.py").returncode == 1
    (tmp_path / "broken.flag").unlink()
    (tmp_path / "hold.flag").touch()
    env = {k: v for k, v in os.environ.items() if k != "FLOWPLAN_STORE"}
    first = subprocess.Popen(
        [sys.executable, "-m", "flowplan", "resume", "last"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "holding").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first resume never started its task"
            time.sleep(0.02)
        second = flowplan(tmp_path, "resume", "last")
        assert second.returncode == 2
        assert second.stderr.startswith("flowplan: error: run ")
        assert f"is live in live process {first.pid} on this host" in second.stderr
        assert f"kill {first.pid}" in second.stderr
    finally:
        (tmp_path / "hold.flag").unlink()
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert calls(tmp_path) == ["hold"]
