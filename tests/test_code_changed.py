"""A reused task whose code changed since it succeeded is reported, and rerun on request.

Durable stores (the SQLite store, the journal) record each task's step key; ``plan()`` compares
a reused record's key with the one the task's code gives now and says so — in the decision's
reason, in ``Plan.code_changed``, in ``explain()``, in the run's ``TaskReused`` event (logged at
warning) and in the CLI — and ``rerun_changed=True`` (``Flow.resume``, ``flowplan resume
--rerun-changed``) runs such tasks and their dependants again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog

from flowplan import (
    Action,
    Flow,
    RecordingHook,
    StructlogHook,
    TaskGraph,
    TaskReused,
    TaskStatus,
    execute,
    plan,
    task,
)
from flowplan.errors import InvalidOptionError
from flowplan.store import SqliteStateStore


def _graph(factor: int, calls: list[str], *, fail_c: bool = False) -> TaskGraph:
    """a → b → c and b → d; ``factor`` is b's code (a closure cell counted by value)."""

    @task(name="a")
    def a() -> int:
        calls.append("a")
        return 1

    @task(name="b", depends_on=[a])
    def b(a: int) -> int:
        calls.append("b")
        return a * factor

    @task(name="c", depends_on=[b])
    def c(b: int) -> int:
        calls.append("c")
        if fail_c:
            raise RuntimeError("c fails")
        return b + 1

    @task(name="d", depends_on=[b])
    def d(b: int) -> int:
        calls.append("d")
        return b + 2

    return TaskGraph.from_terminals(c, d)


def test_the_sqlite_store_records_step_keys(tmp_path: Path) -> None:
    graph = _graph(2, [])
    with SqliteStateStore(tmp_path / "runs.db") as store:
        run = execute(plan(graph), store=store)
        stored = store.load(run.run_id)
    keys = graph.step_keys()
    assert {n: stored[n].step_key for n in "abcd"} == {n: keys[n] for n in "abcd"}


def test_a_run_without_a_durable_store_computes_no_step_keys() -> None:
    graph = _graph(2, [])
    execute(plan(graph))
    assert "step_keys" not in graph._cache  # the fingerprints stay off the hot path


def _failed_run(tmp_path: Path) -> tuple[SqliteStateStore, str]:
    store = SqliteStateStore(tmp_path / "runs.db")
    run = execute(plan(_graph(2, [], fail_c=True)), store=store)
    assert run["c"].status is TaskStatus.FAILED
    return store, run.run_id


def test_plan_reports_a_reused_task_whose_code_changed(tmp_path: Path) -> None:
    store, run_id = _failed_run(tmp_path)
    calls: list[str] = []
    edited = _graph(3, calls)  # b's code changed; a's did not
    planned = plan(edited, store.load(run_id))
    assert dict(planned.code_changed) == {"b": "its code changed", "d": "upstream 'b' changed"}
    assert planned.action("a") is Action.REUSE
    assert planned.action("b") is Action.REUSE  # reused by default: the change is reported
    assert planned.action("c") is Action.RUN
    reason = planned.decisions["b"].reason
    assert "its code changed" in reason
    assert "rerun_changed=True" in reason
    text = planned.explain()
    assert "2 reused tasks changed since" in text.splitlines()[0]
    assert "reuse d: succeeded in an earlier run, but upstream 'b' changed since" in text

    hook = RecordingHook()
    run = execute(planned, store=store, hooks=[hook])
    reused = {e.task: e.code_changed for e in hook.events if isinstance(e, TaskReused)}
    assert reused == {"a": None, "b": "its code changed", "d": "upstream 'b' changed"}
    assert calls == ["c"]
    assert run["c"].value == 3  # from b's old value, 2: reused as planned
    store.close()


def test_rerun_changed_runs_them_and_their_dependants_again(tmp_path: Path) -> None:
    store, run_id = _failed_run(tmp_path)
    calls: list[str] = []
    planned = plan(_graph(3, calls), store.load(run_id), rerun_changed=True)
    assert planned.action("a") is Action.REUSE
    assert [planned.action(n) for n in "bcd"] == [Action.RUN] * 3
    assert (
        planned.decisions["b"].reason == "its code changed since it succeeded (rerun_changed=True)"
    )
    run = execute(planned, store=store)
    assert sorted(calls) == ["b", "c", "d"]
    assert run["c"].value == 4
    again = plan(_graph(3, []), store.load(run.run_id))
    assert again.code_changed == {}  # the new keys were recorded
    store.close()


def test_unchanged_code_reports_nothing(tmp_path: Path) -> None:
    store, run_id = _failed_run(tmp_path)
    planned = plan(_graph(2, []), store.load(run_id))
    assert planned.code_changed == {}
    assert "changed" not in planned.explain()
    store.close()


def test_explicit_step_keys_keep_rerunning_a_stale_record(tmp_path: Path) -> None:
    store, run_id = _failed_run(tmp_path)
    edited = _graph(3, [])
    planned = plan(edited, store.load(run_id), step_keys=edited.step_keys())
    assert planned.action("b") is Action.RUN
    assert planned.code_changed == {}
    store.close()


def test_rerun_changed_must_be_a_bool() -> None:
    with pytest.raises(InvalidOptionError, match="rerun_changed"):
        plan(_graph(2, []), rerun_changed="yes")  # type: ignore[arg-type]


def test_task_reused_is_logged_at_warning_when_the_code_changed(tmp_path: Path) -> None:
    store, run_id = _failed_run(tmp_path)
    logger = structlog.testing.CapturingLogger()
    execute(plan(_graph(3, []), store.load(run_id)), store=store, hooks=[StructlogHook(logger)])
    reused = {c.kwargs["task"]: c for c in logger.calls if c.args == ("task_reused",)}
    assert reused["b"].method_name == "warning"
    assert reused["b"].kwargs["code_changed"] == "its code changed"
    assert reused["a"].method_name == "info"
    assert "code_changed" not in reused["a"].kwargs
    store.close()


def test_flow_resume_rerun_changed(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    calls: list[str] = []
    factor = 2

    @task
    def base() -> int:
        calls.append("base")
        return factor

    @task(depends_on=[base])
    def top(base: int) -> int:
        calls.append("top")
        if len(calls) == 2:
            raise RuntimeError("top fails once")
        return base

    def edit(value: int) -> None:  # "edit" base's code: a closure cell counted by value
        fn: Any = base.fn
        fn.__closure__[fn.__code__.co_freevars.index("factor")].cell_contents = value

    store = SqliteStateStore(tmp_path / "runs.db")
    request.addfinalizer(store.close)
    flow = Flow(top, store=store, log=False)
    flow.run()
    edit(5)
    assert flow.resume()["top"].value == 2  # reused, though changed
    assert calls == ["base", "top", "top"]
    flow.run()  # a fresh run under the new code (so the next resume has something to reuse)
    edit(7)
    assert flow.resume(rerun_changed=True)["top"].value == 7
    assert calls == ["base", "top", "top", "base", "top", "base", "top"]


PIPELINE = """
from pathlib import Path
from flowplan import task

HERE = Path(__file__).parent


def log(name: str) -> None:
    with open(HERE / "calls.txt", "a") as f:
        f.write(name + "\\n")


@task
def extract() -> int:
    log("extract")
    return 1


@task(depends_on=[extract])
def transform(extract: int) -> int:
    log("transform")
    return extract * FACTOR


@task(depends_on=[transform])
def load(transform: int) -> int:
    log("load")
    if (HERE / "broken.flag").exists():
        raise RuntimeError("load is broken")
    return transform


FACTOR = 2
"""


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWPLAN_STORE"}
    return subprocess.run(
        [sys.executable, "-m", "flowplan", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_cli_resume_says_what_changed_and_rerun_changed_runs_it(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    (tmp_path / "broken.flag").write_text("")
    assert _cli(tmp_path, "run", "pipeline.py").returncode == 1
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE).replace("= 2", "= 3"))
    still: Any = _cli(tmp_path, "resume", "last")
    assert still.returncode == 1, still.stderr
    assert "transform (its code changed)" in still.stdout
    assert "--rerun-changed runs them again" in still.stdout
    (tmp_path / "broken.flag").unlink()
    done = _cli(tmp_path, "resume", "last", "--rerun-changed")
    assert done.returncode == 0, done.stdout + done.stderr
    calls = (tmp_path / "calls.txt").read_text().split()
    assert calls == ["extract", "transform", "load", "load", "transform", "load"]


def test_engine_resume_rerun_changed(tmp_path: Path) -> None:
    """Each engine stands for one process: the second one's ``base`` is the edited code."""
    import asyncio

    from flowplan.engine import Engine, build_default_engine

    calls: list[str] = []

    hook = RecordingHook()

    def define(factor: int) -> Engine:
        store = SqliteStateStore(tmp_path / "runs.db")
        engine = build_default_engine(state_store=store, hooks=[hook])

        @engine.task(name="base", dag="d")
        def base() -> int:
            calls.append("base")
            return factor

        @engine.task(name="top", dag="d", deps=[base])
        def top(base: int) -> int:
            calls.append("top")
            if len(calls) == 2:
                raise RuntimeError("top fails once")
            return base

        return engine

    old, new = define(2), define(5)
    try:
        first = asyncio.run(old.run_once("d"))
        del hook.events[:]
        second = asyncio.run(new.resume(first))  # reused although changed, and said so
        assert new.get_run_report(second)["tasks"]["top"]["result"] == 2
        assert calls == ["base", "top", "top"]
        changed = [e.code_changed for e in hook.events if isinstance(e, TaskReused)]
        assert changed == ["its code changed"]
        third = asyncio.run(new.resume(second, rerun_changed=True))
        assert new.get_run_report(third)["tasks"]["top"]["result"] == 5
        assert calls == ["base", "top", "top", "base", "top"]
    finally:
        for engine in (old, new):
            engine.close()
            assert isinstance(engine.state_store, SqliteStateStore)
            engine.state_store.close()  # an engine never closes a store passed in


def test_a_graph_whose_keys_cannot_be_computed_still_runs_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, run_id = _failed_run(tmp_path)  # recorded with keys

    def unkeyable(self: TaskGraph) -> Any:
        raise RuntimeError("a callable that cannot be fingerprinted")

    monkeypatch.setattr(TaskGraph, "step_keys", unkeyable)
    calls: list[str] = []
    planned = plan(_graph(3, calls), store.load(run_id))
    assert planned.code_changed == {}  # nothing to compare with: reused as before
    run = execute(planned, store=store)
    assert calls == ["c"]
    assert run["c"].status is TaskStatus.SUCCEEDED
    assert store.load(run.run_id)["c"].step_key is None  # recorded without a key
    store.close()
