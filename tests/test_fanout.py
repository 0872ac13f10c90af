"""Tests for dynamic fan-out (``fan_out=``): element instances made at run time, fan-in, resume."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import flowplan
import flowplan.engine as flowrun
from flowplan import (
    DefinitionError,
    FanOutError,
    Flow,
    GraphValidationError,
    InlineExecutor,
    InvalidOptionError,
    MappedTaskSpec,
    RecordingHook,
    Registry,
    Snapshot,
    TaskGraph,
    TaskRetrying,
    TaskSpec,
    TaskStarted,
    TaskStatus,
    aexecute,
    execute,
    plan,
    task,
)
from flowplan.engine import SqliteStateStore
from flowplan.store import MemoryStore
from remote_helpers import pid_alive

SUCCEEDED = TaskStatus.SUCCEEDED
FAILED = TaskStatus.FAILED


def _graph(*specs: TaskSpec[..., Any]) -> TaskGraph:
    return TaskGraph.build(specs)


def _run(graph: TaskGraph, snapshot: Snapshot | None = None, **options: Any) -> Snapshot:
    options.setdefault("executor", InlineExecutor())
    return execute(plan(graph, snapshot), **options)


def _statuses(snap: Snapshot, prefix: str) -> dict[str, str]:
    return {n: r.status.value for n, r in snap.records.items() if n.startswith(prefix)}


def _pipeline(
    registry: Registry, items: object, fail: set[int] | None = None
) -> tuple[TaskGraph, collections.Counter[int]]:
    """numbers → square (fan-out) → total (fan-in); ``fail`` holds elements that raise."""
    calls: collections.Counter[int] = collections.Counter()
    failing = fail if fail is not None else set()

    @task
    def numbers() -> object:
        return items

    @task(depends_on=[numbers], fan_out=numbers)
    def square(numbers: int) -> int:
        calls[numbers] += 1
        if numbers in failing:
            raise ValueError(f"bad element {numbers}")
        return numbers * numbers

    @task(depends_on=[square])
    def total(square: list[int]) -> list[int]:
        return square

    return _graph(numbers, square, total), calls


# -- the basics ------------------------------------------------------------------------------
def test_fan_in_receives_element_values_in_order(registry: Registry) -> None:
    graph, calls = _pipeline(registry, [3, 1, 2])
    snap = _run(graph)
    assert snap.value("total") == [9, 1, 4]
    assert snap.value("square") == [9, 1, 4]
    assert [snap[f"square[{i}]"].value for i in range(3)] == [9, 1, 4]
    assert list(snap.records) == [
        "numbers",
        "square",
        "square[0]",
        "square[1]",
        "square[2]",
        "total",
    ]
    assert calls == {3: 1, 1: 1, 2: 1}


def test_order_holds_when_elements_finish_out_of_order(registry: Registry) -> None:
    release = threading.Event()

    @task
    def delays() -> list[float]:
        return [0.2, 0.0, 0.1]

    @task(depends_on=[delays], fan_out="delays")
    def wait(delays: float) -> float:
        if delays == 0.0:
            release.set()
        release.wait(5)
        threading.Event().wait(delays)
        return delays

    snap = _run(_graph(delays, wait), executor=ThreadPoolExecutor(4))
    assert snap.value("wait") == [0.2, 0.0, 0.1]
    finished = [snap[f"wait[{i}]"].finished_at for i in range(3)]
    assert finished[1] < finished[2] < finished[0]  # type: ignore[operator]


def test_other_dependencies_arrive_whole(registry: Registry) -> None:
    @task
    def factor() -> int:
        return 10

    @task
    def values() -> tuple[int, ...]:
        return (1, 2)

    @task(depends_on=[values, factor], fan_out=values)
    def scale(values: int, factor: int) -> int:
        return values * factor

    assert _run(_graph(factor, values, scale)).value("scale") == [10, 20]


def test_empty_input_succeeds_at_once_with_an_empty_list(registry: Registry) -> None:
    graph, calls = _pipeline(registry, [])
    hook = RecordingHook()
    snap = _run(graph, hooks=[hook])
    assert snap.value("square") == []
    assert snap.value("total") == []
    assert not calls
    assert _statuses(snap, "square[") == {}


@pytest.mark.parametrize(
    ("value", "found"),
    [(42, "int"), ("abc", "str"), ({1, 2}, "set"), ({"a": 1}, "dict"), (None, "NoneType")],
)
def test_a_value_that_cannot_be_mapped_fails_the_task_clearly(
    registry: Registry, value: object, found: str
) -> None:
    graph, calls = _pipeline(registry, value)
    snap = _run(graph)
    record = snap["square"]
    assert record.status is FAILED
    assert record.error is not None
    assert record.error.kind == "fan_out"
    exc = record.error.exception
    assert isinstance(exc, FanOutError)
    assert isinstance(exc, TypeError)
    assert (exc.task, exc.upstream, exc.value_type) == ("square", "numbers", found)
    message = str(exc)
    assert "'square'" in message
    assert f"({found})" in message
    assert "return a list" in message
    assert snap["total"].status is TaskStatus.SKIPPED
    assert not calls


# -- per element: retries, failure, gates ---------------------------------------------------
def test_each_element_has_its_own_retries(registry: Registry) -> None:
    calls: collections.Counter[str] = collections.Counter()

    @task
    def names() -> list[str]:
        return ["steady", "flaky"]

    @task(depends_on=[names], fan_out=names, retry=2, retry_backoff_base_ms=1)
    def fetch(names: str) -> str:
        calls[names] += 1
        if names == "flaky" and calls[names] < 3:
            raise ConnectionError("try again")
        return names.upper()

    hook = RecordingHook()
    snap = _run(_graph(names, fetch), hooks=[hook])
    assert snap.value("fetch") == ["STEADY", "FLAKY"]
    assert snap["fetch[0]"].attempts == 1
    assert snap["fetch[1]"].attempts == 3
    assert len(snap["fetch[1]"].retry_delays) == 2
    retried = [e.task for e in hook.events if isinstance(e, TaskRetrying)]
    assert retried == ["fetch[1]", "fetch[1]"]


def test_element_failure_fails_the_task_and_names_the_elements(registry: Registry) -> None:
    graph, _ = _pipeline(registry, [1, 2, 3, 4], fail={2, 4})
    snap = _run(graph, fail_fast=False)
    assert _statuses(snap, "square[") == {
        "square[0]": "succeeded",
        "square[1]": "failed",
        "square[2]": "succeeded",
        "square[3]": "failed",
    }
    record = snap["square"]
    assert record.status is FAILED
    assert record.error is not None
    assert "'square[1]', 'square[3]'" in record.error.message
    assert "2 of 4" in record.error.message
    assert record.error.type == "builtins.ValueError"  # the first failed element's error
    assert snap["total"].status is TaskStatus.SKIPPED
    assert snap["total"].root_cause == "square"


def test_fail_fast_cancels_elements_not_started(registry: Registry) -> None:
    graph, calls = _pipeline(registry, [1, 2, 3], fail={1})
    snap = _run(graph)  # inline: one element at a time, so the others have not started
    assert _statuses(snap, "square[") == {
        "square[0]": "failed",
        "square[1]": "cancelled",
        "square[2]": "cancelled",
    }
    assert snap["square"].status is FAILED
    assert snap["total"].status is TaskStatus.CANCELLED
    assert calls == {1: 1}


def test_a_when_gate_sees_the_element_and_skipped_elements_are_left_out(
    registry: Registry,
) -> None:
    @task
    def paths() -> list[str]:
        return ["a.csv", "b.txt", "c.csv"]

    @task(depends_on=[paths], fan_out=paths, when=lambda paths: paths.endswith(".csv"))
    def parse(paths: str) -> str:
        return paths.removesuffix(".csv")

    snap = _run(_graph(paths, parse))
    assert snap.value("parse") == ["a", "c"]
    assert snap["parse[1]"].status is TaskStatus.SKIPPED


def test_an_interrupt_in_an_element_stops_the_run_with_every_record_terminal(
    registry: Registry,
) -> None:
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task(depends_on=[numbers], fan_out=numbers)
    def square(numbers: int) -> int:
        if numbers == 2:
            raise KeyboardInterrupt
        return numbers

    with pytest.raises(KeyboardInterrupt) as info:
        _run(_graph(numbers, square))
    snap: Snapshot = info.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert _statuses(snap, "square") == {
        "square": "failed",
        "square[0]": "succeeded",
        "square[1]": "failed",
        "square[2]": "cancelled",
    }


def test_a_detached_fan_out_runs_after_the_main_tasks(registry: Registry) -> None:
    order: list[str] = []

    @task
    def numbers() -> list[int]:
        return [1, 2]

    @task(depends_on=[numbers], fan_out=numbers, detached=True)
    def notify(numbers: int) -> int:
        order.append(f"notify {numbers}")
        return numbers

    @task(depends_on=[numbers])
    def main(numbers: list[int]) -> int:
        order.append("main")
        return sum(numbers)

    snap = _run(_graph(numbers, notify, main))
    assert order == ["main", "notify 1", "notify 2"]
    assert snap.value("notify") == [1, 2]


# -- resume ----------------------------------------------------------------------------------
def test_resume_re_runs_only_the_failed_elements(registry: Registry) -> None:
    failing = {2, 4}
    graph, calls = _pipeline(registry, [1, 2, 3, 4, 5], fail=failing)
    first = _run(graph, fail_fast=False)
    assert first["square"].status is FAILED
    assert calls == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}

    failing.clear()  # the cause is fixed
    resumed_plan = plan(graph, first)
    assert "3 element(s) that succeeded earlier are reused" in resumed_plan.explain("square")
    second = execute(resumed_plan, executor=InlineExecutor())
    assert calls == {1: 1, 2: 2, 3: 1, 4: 2, 5: 1}  # only the failed elements ran again
    assert second.value("total") == [1, 4, 9, 16, 25]
    assert second["square[0]"] == first["square[0]"]  # carried over as it was
    assert second["numbers"] == first["numbers"]

    third = _run(graph, second)  # everything succeeded: nothing runs
    assert calls == {1: 1, 2: 2, 3: 1, 4: 2, 5: 1}
    assert third.value("total") == [1, 4, 9, 16, 25]


def test_resume_runs_cancelled_elements_too(registry: Registry) -> None:
    failing = {1}
    graph, calls = _pipeline(registry, [1, 2, 3], fail=failing)
    first = _run(graph)
    failing.clear()
    second = _run(graph, first)
    assert second.value("total") == [1, 4, 9]
    assert calls == {1: 2, 2: 1, 3: 1}


def test_rerun_and_a_changed_upstream_run_every_element_again(registry: Registry) -> None:
    failing = {2}
    graph, calls = _pipeline(registry, [1, 2], fail=failing)
    first = _run(graph, fail_fast=False)
    failing.clear()
    execute(plan(graph, first, rerun=["square"]), executor=InlineExecutor())
    assert calls == {1: 2, 2: 2}
    execute(plan(graph, first, rerun=["numbers"]), executor=InlineExecutor())
    assert calls == {1: 3, 2: 3}
    overridden = execute(
        plan(graph, first, overrides={"numbers": [1, 2]}), executor=InlineExecutor()
    )
    assert calls == {1: 4, 2: 4}  # an overridden upstream may differ: nothing is reused
    assert overridden.value("total") == [1, 4]


def test_override_of_the_fan_out_task_skips_its_elements(registry: Registry) -> None:
    graph, calls = _pipeline(registry, [1, 2])
    snap = execute(plan(graph, overrides={"square": [7]}), executor=InlineExecutor())
    assert snap.value("total") == [7]
    assert not calls


def test_targets_run_the_fan_out_task_without_its_downstream(registry: Registry) -> None:
    graph, _ = _pipeline(registry, [1, 2])
    snap = execute(plan(graph, targets=["square"]), executor=InlineExecutor())
    assert snap.value("square") == [1, 4]
    assert "total" not in snap


def test_retain_result_false_releases_elements_with_the_task(registry: Registry) -> None:
    @task
    def numbers() -> list[int]:
        return [1, 2]

    @task(depends_on=[numbers], fan_out=numbers, retain_result=False)
    def double(numbers: int) -> int:
        return 2 * numbers

    @task(depends_on=[double])
    def total(double: list[int]) -> int:
        return sum(double)

    snap = _run(_graph(numbers, double, total))
    assert snap.value(total) == 6
    assert snap["double"].released
    assert snap["double[0]"].released
    assert snap["double[1]"].released


def test_upstream_with_retain_result_false_is_kept_for_every_element(registry: Registry) -> None:
    @task(retain_result=False)
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task(depends_on=[numbers], fan_out=numbers)
    def double(numbers: int) -> int:
        return 2 * numbers

    snap = _run(_graph(numbers, double), executor=ThreadPoolExecutor(3))
    assert snap.value("double") == [2, 4, 6]
    assert snap["numbers"].released


# -- drivers ---------------------------------------------------------------------------------
def _shape(snap: Snapshot) -> dict[str, tuple[str, int, Any]]:
    return {n: (r.status.value, r.attempts, r.value) for n, r in snap.records.items()}


def test_threads_and_inline_give_the_same_snapshot(registry: Registry) -> None:
    graph, _ = _pipeline(registry, list(range(20)), fail={7})
    inline = _run(graph, fail_fast=False)
    threads = _run(graph, fail_fast=False, executor=ThreadPoolExecutor(4))
    assert _shape(inline) == _shape(threads)
    owned = execute(plan(graph), fail_fast=False)  # the driver's own pool, with chains
    assert _shape(inline) == _shape(owned)


def test_async_elements_are_awaited(registry: Registry) -> None:
    @task
    def words() -> list[str]:
        return ["a", "bb"]

    @task(depends_on=[words], fan_out=words)
    async def measure(words: str) -> int:
        await asyncio.sleep(0)
        return len(words)

    @task(depends_on=[measure])
    def total(measure: list[int]) -> int:
        return sum(measure)

    graph = _graph(words, measure, total)
    snap = asyncio.run(aexecute(plan(graph)))
    assert snap.value("measure") == [1, 2]
    assert snap.value(total) == 3
    assert _shape(snap) == _shape(_run(graph))


def test_hooks_and_a_store_see_every_element(registry: Registry) -> None:
    graph, _ = _pipeline(registry, [1, 2])
    hook = RecordingHook()
    store = MemoryStore()
    snap = _run(graph, hooks=[hook], store=store)
    started = [e.task for e in hook.events if isinstance(e, TaskStarted)]
    assert started == ["numbers", "square", "square[0]", "square[1]", "total"]
    assert store.load(snap.run_id) == snap


_REMOTE = Registry()  # module-level tasks: a remote executor imports them by name


@task(registry=_REMOTE)
def remote_numbers() -> list[int]:
    return [1, 2, 3]


@task(registry=_REMOTE, depends_on=[remote_numbers], fan_out=remote_numbers)
def remote_square(remote_numbers: int) -> int:
    return remote_numbers * remote_numbers


def test_elements_run_on_dask(registry: Registry) -> None:
    import distributed

    graph = _graph(remote_numbers, remote_square)
    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]  # distributed: untyped
            n_workers=1,
            processes=False,
            threads_per_worker=2,
            dashboard_address=":0",
            silence_logs=50,
        ) as cluster,
        distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        snap = execute(plan(graph), executor=flowplan.DaskExecutor(client))
    assert snap.value("remote_square") == [1, 4, 9]
    assert snap["remote_square[2]"].value == 9


# -- definitions -----------------------------------------------------------------------------
def test_fan_out_must_name_a_received_dependency(registry: Registry) -> None:
    @task
    def numbers() -> list[int]:
        return [1]

    @task(depends_on=[numbers], fan_out="numbrs")
    def square(numbers: list[int]) -> int:
        return len(numbers)

    with pytest.raises(GraphValidationError) as info:
        _graph(numbers, square)
    (problem,) = info.value.exceptions
    assert isinstance(problem, DefinitionError)
    assert problem.task == "square"
    assert "fan_out='numbrs'" in str(problem)
    assert "did you mean 'numbers'" in str(problem)


def test_a_task_named_like_an_element_is_rejected(registry: Registry) -> None:
    @task
    def numbers() -> list[int]:
        return [1]

    @task(depends_on=[numbers], fan_out=numbers)
    def square(numbers: int) -> int:
        return numbers

    @task(name="square[0]")
    def impostor() -> int:
        return 0

    with pytest.raises(GraphValidationError) as info:
        _graph(numbers, square, impostor)
    (problem,) = info.value.exceptions
    assert isinstance(problem, DefinitionError)
    assert problem.task == "square[0]"
    assert "named like element 0 of fan-out task 'square'" in str(problem)


def test_fan_out_option_is_checked(registry: Registry) -> None:
    with pytest.raises(InvalidOptionError, match="fan_out= must name one of its dependencies"):
        TaskSpec("t", lambda: 1, fan_out=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="needs fan_out=") as info:
        MappedTaskSpec("t", lambda x: 1)
    assert (info.value.option, info.value.task) == ("fan_out", "t")
    assert TaskSpec("t", lambda x: 1, fan_out="x", isolation="process").isolation == "process"


def test_engine_fan_out_needs_a_parameter_receiving_the_dependency() -> None:
    engine = flowrun.build_default_engine()

    @engine.task(name="numbers", dag="d")
    def numbers() -> list[int]:
        return [1]

    @engine.task(name="square", dag="d", deps=[numbers], fan_out=numbers)
    def square() -> int:
        return 1

    with pytest.raises(GraphValidationError) as info:
        engine.validate("d")
    (problem,) = info.value.exceptions
    assert isinstance(problem, DefinitionError)
    assert problem.task == "square"
    assert "fan_out='numbers' maps over a dependency no parameter receives" in str(problem)
    assert "add a parameter named 'numbers'" in str(problem)


# -- façades ---------------------------------------------------------------------------------
def test_flow_runs_fan_out_and_resumes_failed_elements(registry: Registry) -> None:
    failing = {2}
    graph, calls = _pipeline(registry, [1, 2, 3], fail=failing)
    flow = Flow(graph.specs["total"], fail_fast=False)
    results = flow.run()
    assert results["square[1]"].state.value == "failed"
    assert "square[1]" in flow.summary()
    failing.clear()
    flow.resume()
    assert flow.value("total") == [1, 4, 9]
    assert calls == {1: 1, 2: 2, 3: 1}


def test_engine_fan_out_report_and_resume() -> None:
    engine = flowrun.build_default_engine(max_parallel=3)
    calls: collections.Counter[int] = collections.Counter()

    @engine.task(name="numbers", dag="d")
    def numbers() -> list[int]:
        return [1, 2, 3]

    @engine.task(name="square", dag="d", deps=[numbers], fan_out="numbers")
    def square(numbers: int) -> int:
        calls[numbers] += 1
        if numbers == 2 and calls[numbers] == 1:
            raise ValueError("flaky element")
        return numbers * numbers

    @engine.task(name="total", dag="d", deps=[square])
    def total(square: list[int]) -> int:
        return sum(square)

    async def main() -> tuple[str, str]:
        async with engine:
            first = await engine.run_once("d")
            return first, await engine.resume(first)

    first, second = asyncio.run(main())
    failed = engine.get_run_report(first)
    assert failed["status"] == "FAILED"
    assert failed["tasks"]["square[1]"]["status"] == "FAILED"
    assert calls == {1: 1, 2: 2, 3: 1}
    report = engine.get_run_report(second)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["total"]["result"] == 14
    assert report["tasks"]["square[2]"]["result"] == 9


_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from flowplan import InlineExecutor, ProcessExecutor, Registry, TaskGraph, execute, plan, task
    from flowplan.store import SqliteStateStore

    log, fail = Path(os.environ["FANOUT_LOG"]), os.environ["FANOUT_MODE"] == "fail"
    reg = Registry()

    @task(registry=reg)
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task(registry=reg, depends_on=[numbers], fan_out=numbers)
    def square(numbers: int) -> int:
        with log.open("a") as out:
            out.write(f"{numbers}\\n")
        if fail and numbers == 2:
            raise ValueError("boom")
        return numbers * numbers

    if __name__ == "__main__":
        db, run_id = sys.argv[1], sys.argv[2]
        graph = TaskGraph.build([numbers, square])
        store = SqliteStateStore(db)
        earlier = store.load(run_id) if run_id != "-" else None
        executor = InlineExecutor() if fail else ProcessExecutor(2)  # resume in child processes
        snap = execute(plan(graph, earlier), executor=executor, store=store, fail_fast=False)
        executor.shutdown()
        print(json.dumps({"run_id": snap.run_id, "status": snap["square"].status.value,
                          "value": snap["square"].value}))
    """
)


def test_sqlite_resume_across_processes_re_runs_only_failed_elements(tmp_path: Path) -> None:
    """Run 1 fails an element (inline); run 2, another process, resumes from the SQLite file
    on a ProcessExecutor: only the failed element runs again."""
    import json

    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    db, log = tmp_path / "runs.db", tmp_path / "calls.log"

    def run(mode: str, run_id: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, str(script), str(db), run_id],
            env={**os.environ, "FANOUT_LOG": str(log), "FANOUT_MODE": mode},
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    first = run("fail", "-")
    assert first["status"] == "failed"
    second = run("ok", first["run_id"])
    assert second == {"run_id": second["run_id"], "status": "succeeded", "value": [1, 4, 9]}
    assert log.read_text().split() == ["1", "2", "3", "2"]


def test_public_names() -> None:
    assert "FanOutError" in flowplan.__all__


# -- issue #7 gaps: typed handle, isolation, effects, simulate, journal, retry budget ---------
def test_fan_out_tasks_are_mapped_specs_whose_elements_run_as_plain_specs(
    registry: Registry,
) -> None:
    from flowplan._fanout import element_spec

    graph, _ = _pipeline(registry, [1, 2])
    square, total = graph.specs["square"], graph.specs["total"]
    assert type(square) is MappedTaskSpec
    assert type(total) is TaskSpec  # no fan_out=: a plain spec
    assert square(numbers=3) == 9  # calling it calls the function on one element
    element = element_spec(square, "square[1]")
    assert type(element) is TaskSpec
    assert (element.name, element.fan_out, element.fn) == ("square[1]", None, square.fn)
    assert _run(graph).value(square) == [1, 4]

    engine = flowrun.build_default_engine()

    @engine.task(name="items", dag="d")
    def items() -> list[int]:
        return [1]

    @engine.task(name="each", dag="d", deps=["items"], fan_out="items")
    def each(items: int) -> int:
        return items

    @engine.task(name="plain", dag="d", deps=["items"])
    def plain(items: list[int]) -> int:
        return len(items)

    assert type(each) is MappedTaskSpec
    assert type(plain) is TaskSpec


def _isolated_pipeline(tmp_path: Path) -> TaskGraph:
    """numbers → pid (isolated fan-out, 2 s timeout: a child's start-up fits in it even on a
    loaded machine); element 1's first attempt hangs."""

    @task
    def numbers() -> list[int]:
        return [0, 1, 2]

    @task(
        depends_on=[numbers],
        fan_out=numbers,
        isolation="process",
        timeout_s=2.0,
        retry=1,
        retry_backoff_base_ms=0,
    )
    def pid(numbers: int) -> tuple[int, int]:
        attempt = flowplan.current_attempt()
        assert attempt is not None
        (tmp_path / f"pid-{numbers}-{attempt.attempt}").write_text(str(os.getpid()))
        if numbers == 1 and attempt.attempt == 1:
            time.sleep(8)
            (tmp_path / "side-effect").write_text("the killed attempt kept running")
        return numbers * 10, os.getpid()

    return _graph(numbers, pid)


@pytest.mark.parametrize("driver", ["inline", "threads", "asyncio"])
def test_an_isolated_fan_out_kills_only_the_timed_out_element_child(
    registry: Registry, tmp_path: Path, driver: str
) -> None:
    the_plan = plan(_isolated_pipeline(tmp_path))
    hook = RecordingHook()
    if driver == "asyncio":
        snap = asyncio.run(aexecute(the_plan, hooks=[hook]))
    elif driver == "threads":
        with ThreadPoolExecutor(3) as threads:
            snap = execute(the_plan, executor=threads, hooks=[hook])
    else:
        snap = execute(the_plan, executor=InlineExecutor(), hooks=[hook])
    values = snap.value("pid")
    assert [v for v, _ in values] == [0, 10, 20]  # in element order
    assert all(child != os.getpid() for _, child in values)  # each ran in a child process
    timed_out = [e.task for e in hook.events if isinstance(e, flowplan.TaskTimedOut)]
    assert timed_out == ["pid[1]"]  # only that element's attempt timed out
    assert [snap[f"pid[{i}]"].attempts for i in range(3)] == [1, 2, 1]
    killed = int((tmp_path / "pid-1-1").read_text())
    assert killed not in {child for _, child in values}  # the retry ran in a fresh process
    deadline = time.monotonic() + 5
    while pid_alive(killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(killed)
    assert not (tmp_path / "side-effect").exists()  # killed, not abandoned


def _charges(
    registry: Registry,
    calls: list[int],
    *,
    reconcile: Any = None,
    failing: frozenset[int] = frozenset(),
) -> tuple[TaskGraph, Snapshot]:
    """numbers → charge (at_most_once fan-out) → total, and a snapshot of a run that crashed
    while charge[1] ran (its RUNNING record is all that is left): charge[0] had succeeded."""

    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task(depends_on=[numbers], fan_out=numbers, effect="at_most_once", reconcile=reconcile)
    def charge(numbers: int) -> int:
        calls.append(numbers)
        if numbers in failing:
            raise ValueError(f"declined {numbers}")
        return numbers * 10

    @task(depends_on=[charge])
    def total(charge: list[int]) -> int:
        return sum(charge)

    graph = _graph(numbers, charge, total)
    records = {
        "numbers": flowplan.TaskRecord("numbers", SUCCEEDED, 1, value=[1, 2, 3], has_value=True),
        "charge": flowplan.TaskRecord("charge", TaskStatus.RUNNING, 1, started_at=1.0),
        "charge[0]": flowplan.TaskRecord("charge[0]", SUCCEEDED, 1, value=10, has_value=True),
        "charge[1]": flowplan.TaskRecord("charge[1]", TaskStatus.RUNNING, 1, started_at=2.0),
        "total": flowplan.TaskRecord("total", TaskStatus.PENDING),
    }
    return graph, Snapshot("crashed", records)


def test_an_at_most_once_element_left_running_by_a_crash_is_in_doubt(registry: Registry) -> None:
    calls: list[int] = []
    graph, crashed = _charges(registry, calls)
    resumed = plan(graph, crashed)
    assert set(resumed.in_doubt) == {"charge[1]"}
    assert set(resumed.elements) == {"charge[0]"}
    assert "1 element(s) are in doubt" in resumed.explain("charge")
    hook = RecordingHook()
    snap = execute(resumed, executor=InlineExecutor(), hooks=[hook])
    assert calls == [3]  # charge[1] is never run again silently; charge[0] is reused
    assert snap["charge[1]"].status is TaskStatus.IN_DOUBT
    assert "settle it with override()" in (snap["charge[1]"].reason or "")
    record = snap["charge"]
    assert record.status is TaskStatus.IN_DOUBT
    assert "1 of 3 element(s) of fan-out task 'charge' are in doubt: 'charge[1]'" in (
        record.reason or ""
    )
    assert snap["total"].status is TaskStatus.SKIPPED
    assert [e.task for e in hook.events if isinstance(e, flowplan.TaskInDoubt)] == [
        "charge[1]",
        "charge",
    ]
    # still in doubt on the next resume; rerun= of the fan-out task settles every element
    again = plan(graph, snap)
    assert set(again.in_doubt) == {"charge[1]"}
    assert "still in doubt" in (flowplan.simulate(again).snapshot["charge[1]"].reason or "")
    rerun = execute(plan(graph, snap, rerun=["charge"]), executor=InlineExecutor())
    assert rerun.value("total") == 60
    assert calls == [3, 1, 2, 3]


def test_an_in_doubt_element_cancelled_by_fail_fast_stays_in_doubt(registry: Registry) -> None:
    calls: list[int] = []
    graph, crashed = _charges(registry, calls, failing=frozenset({1}))
    declined = flowplan.TaskRecord("charge[0]", FAILED, 1)  # an ordinary failure: runs again
    snap = execute(
        plan(graph, Snapshot("crashed", {**crashed.records, "charge[0]": declined})),
        executor=InlineExecutor(),
    )
    assert calls == [1]  # charge[0] failed again; fail-fast stopped the rest
    assert snap["charge[0]"].status is FAILED
    assert snap["charge[1]"].status is TaskStatus.IN_DOUBT  # not CANCELLED: still unsettled
    assert "not settled in this run" in (snap["charge[1]"].reason or "")
    assert snap["charge[2]"].status is TaskStatus.CANCELLED
    assert snap["charge"].status is FAILED
    assert set(plan(graph, snap).in_doubt) == {"charge[1]"}


@pytest.mark.parametrize(("verdict", "ran"), [(200, False), ("not_done", True)])
def test_reconcile_settles_an_in_doubt_element(
    registry: Registry, verdict: object, ran: bool
) -> None:
    seen: list[dict[str, Any]] = []

    def reconcile(**given: Any) -> object:
        seen.append(given)
        return flowplan.NotDone if verdict == "not_done" else verdict

    calls: list[int] = []
    graph, crashed = _charges(registry, calls, reconcile=reconcile)
    snap = execute(plan(graph, crashed), executor=InlineExecutor())
    assert seen == [{"numbers": 2}]  # called with the element, not the whole list
    assert snap.value("charge") == ([10, 20, 30] if ran else [10, 200, 30])
    assert calls == ([2, 3] if ran else [3])


def test_at_most_once_elements_commit_their_start_to_a_sqlite_file(
    registry: Registry, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    seen: list[tuple[str, int]] = []
    calls: list[int] = []

    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task(depends_on=[numbers], fan_out=numbers, effect="at_most_once")
    def charge(numbers: int) -> int:
        calls.append(numbers)
        # another connection sees this element's start before its body has done anything
        with SqliteStateStore(db) as peek:
            record = peek.load(first.run_id)[f"charge[{numbers - 1}]"]
        seen.append((record.status.value, record.attempts))
        if numbers == 2:
            raise KeyboardInterrupt  # the process "dies" while charge[1] runs
        return numbers * 10

    graph = _graph(numbers, charge)
    first = plan(graph)
    with SqliteStateStore(db) as dying, pytest.raises(KeyboardInterrupt):
        execute(first, executor=InlineExecutor(), store=dying)
    assert seen == [("running", 1), ("running", 1)]
    store = SqliteStateStore(db)
    earlier = store.load(first.run_id)
    resumed = plan(graph, earlier)
    assert set(resumed.in_doubt) == {"charge[1]"}
    snap = execute(resumed, executor=InlineExecutor(), store=store)
    assert calls == [1, 2, 3]  # charge[1] did not run again, charge[2] ran
    assert snap["charge[1]"].status is TaskStatus.IN_DOUBT
    assert store.load(resumed.run_id)["charge"].status is TaskStatus.IN_DOUBT
    store.close()


def test_idempotent_elements_get_distinct_keys_kept_across_resume(registry: Registry) -> None:
    keys: dict[int, list[str]] = collections.defaultdict(list)
    failing = {2}

    @task
    def numbers() -> list[int]:
        return [1, 2, 2]  # equal elements still get their own key (their names differ)

    @task(depends_on=[numbers], fan_out=numbers, effect="idempotent")
    def send(numbers: int) -> int:
        attempt = flowplan.current_attempt()
        assert attempt is not None
        assert attempt.idempotency_key is not None
        keys[numbers].append(attempt.idempotency_key)
        if numbers in failing:
            raise ConnectionError("try later")
        return numbers

    graph = _graph(numbers, send)
    snap = _run(graph, fail_fast=False)
    assert snap["send"].status is FAILED
    first = {n: list(k) for n, k in keys.items()}
    assert len({first[1][0], *first[2]}) == 3  # one key per element
    failing.clear()
    again = _run(graph, snap)
    assert again.value("send") == [1, 2, 2]
    assert keys[2][2:] == first[2]  # the resumed elements keep their keys (same lineage)
    assert keys[1] == first[1]  # send[0] was reused, not run


def test_simulate_scripts_elements_by_name_and_matches_an_inline_run(registry: Registry) -> None:
    outcomes: dict[int, list[Exception]] = {1: [ValueError("once")], 2: [KeyError("a")] * 3}

    @task
    def numbers() -> list[int]:
        return [0, 1, 2, 3]

    @task(depends_on=[numbers], fan_out=numbers, retry=2, retry_backoff_base_ms=0)
    def square(numbers: int) -> int:
        if outcomes.get(numbers):
            raise outcomes[numbers].pop(0)
        return numbers * numbers

    @task(depends_on=[square], trigger="all_done")
    def report(square: list[int] | None) -> str:
        return "partial" if square is None else "all"

    graph = _graph(numbers, square, report)
    the_plan = plan(graph)
    sim = flowplan.simulate(
        the_plan,
        {
            numbers: flowplan.Value([0, 1, 2, 3]),
            square: flowplan.Value(-1),  # the default of every element not named
            "square[0]": flowplan.Value(0),
            "square[1]": [flowplan.Fail(ValueError("once")), flowplan.Value(1)],
            "square[2]": flowplan.Fail(KeyError("a")),
            "square[3]": flowplan.Value(9),
            "report": flowplan.Value("partial"),
        },
        fail_fast=False,
    )
    real = execute(the_plan, executor=InlineExecutor(), fail_fast=False)

    def shape(snap: Snapshot) -> dict[str, tuple[str, int, Any, str | None]]:
        return {
            n: (r.status.value, r.attempts, r.value, r.error.type if r.error else None)
            for n, r in snap.records.items()
        }

    assert shape(sim.snapshot) == shape(real)
    assert sim.snapshot["square[2]"].attempts == 3
    default = flowplan.simulate(
        the_plan, {numbers: flowplan.Value([5, 6]), square: flowplan.Value(7)}
    )
    assert default.snapshot.value(square) == [7, 7]
    with pytest.raises(flowplan.UnknownTaskError, match="'numbers\\[0\\]'"):
        flowplan.simulate(the_plan, {"numbers[0]": flowplan.Value(1)})  # not a fan-out task
    with pytest.raises(flowplan.UnknownTaskError):
        flowplan.simulate(the_plan, {"square[01]": flowplan.Value(1)})
    with pytest.raises(InvalidOptionError, match="has no timeout_s"):
        flowplan.simulate(the_plan, {"square[1]": flowplan.Timeout()})


def _journal_flow(
    calls: list[str], broken: set[str], journal: Path
) -> tuple[Flow, TaskSpec[..., Any]]:
    """files → upper (fan-out) journalled to ``journal``; the ``broken`` files fail (marked
    on disk; ``version=`` keeps the step key stable while the closure's ``calls`` grows)."""
    registry = Registry()
    marks = journal.parent
    for name in "abc":
        (marks / f"broken-{name}").unlink(missing_ok=True)
    for name in broken:
        (marks / f"broken-{name}").write_text("")

    @task(registry=registry)
    def files() -> list[str]:
        return ["a", "b", "c"]

    @task(registry=registry, depends_on=[files], fan_out=files, version="1")  # closure: calls
    def upper(files: str) -> str:
        calls.append(files)
        if (marks / f"broken-{files}").exists():
            raise OSError(f"cannot read {files}")
        return files.upper()

    return Flow(upper, registry=registry, journal_path=journal, fail_fast=False), upper


def test_a_journal_lets_a_new_process_reuse_succeeded_elements(tmp_path: Path) -> None:
    journal = tmp_path / "flow.jsonl"
    calls: list[str] = []
    first, _ = _journal_flow(calls, {"b"}, journal)
    assert first.run()["upper"].state.value == "failed"
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert {line["format"] for line in lines} == {1}  # the format journals already have
    assert sorted(line["task"] for line in lines) == ["files", "upper[0]", "upper[2]"]
    # a new Flow (as a new process would) replays the journalled elements
    fresh, upper = _journal_flow(calls, set(), journal)
    results = fresh.run()
    assert fresh.value(upper) == ["A", "B", "C"]
    assert sorted(calls[:3]) == ["a", "b", "c"]  # the first run (elements in any order)
    assert calls[3:] == ["b"]  # only the failed element ran again
    assert results["upper[0]"].cached
    # a journal written before (same lines, by hand) is read the same way; another fan-out
    # index or another parent key is not reused
    journal.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    calls.clear()
    again, upper = _journal_flow(calls, set(), journal)
    again.run()
    assert again.value(upper) == ["A", "B", "C"]
    assert calls == ["b"]
    stray = {**lines[1], "task": "upper[7]"}
    journal.write_text(json.dumps(stray) + "\n")
    assert list(flowplan.store.JournalStore(journal).load({"upper": "k"}).records) == []


def test_a_ratio_retry_budget_counts_elements_as_they_are_created(registry: Registry) -> None:
    attempts: collections.Counter[int] = collections.Counter()

    @task
    def numbers() -> list[int]:
        return list(range(20))

    @task(depends_on=[numbers], fan_out=numbers, retry=1, retry_backoff_base_ms=0)
    def flaky(numbers: int) -> int:
        attempts[numbers] += 1
        if attempts[numbers] == 1:
            raise ConnectionError("blip")
        return numbers

    graph = _graph(numbers, flaky)
    # 2 planned tasks would allow 0 retries at ratio 0.25; 21 executed tasks allow 5
    budget = flowplan.RetryBudget(ratio=0.25)
    snap = execute(plan(graph), executor=InlineExecutor(), fail_fast=False, retry_budget=budget)
    retried = [n for n in range(20) if snap[f"flaky[{n}]"].attempts == 2]
    assert len(retried) == 5
    exhausted = snap["flaky[19]"]
    assert exhausted.status is FAILED
    assert "retry budget is exhausted" in (exhausted.reason or "")
    assert "5/5 retries used" in (exhausted.reason or "")
    sim = flowplan.simulate(
        plan(graph),
        {numbers: flowplan.Value(list(range(20))), flaky: [flowplan.Fail(ConnectionError())]},
        fail_fast=False,
        retry_budget=budget,
    )
    assert sum(r.attempts == 2 for r in sim.snapshot.records.values()) == 5
