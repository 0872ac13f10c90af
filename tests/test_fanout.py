"""Tests for dynamic fan-out (``fan_out=``): element instances made at run time, fan-in, resume."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import textwrap
import threading
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
from flowplan.store import MemoryStore

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
    with pytest.raises(InvalidOptionError, match="ProcessExecutor") as info:
        TaskSpec("t", lambda x: 1, fan_out="x", isolation="process")
    assert (info.value.option, info.value.task) == ("isolation", "t")


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
