"""Per-task process isolation: ``isolation="process"`` on runs whose executor shares memory."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import flowplan
from flowplan import (
    Fail,
    Flow,
    InlineExecutor,
    InvalidOptionError,
    ProcessExecutor,
    RecordingHook,
    SerializationError,
    TaskGraph,
    TaskStatus,
    Value,
    aexecute,
    execute,
    plan,
    simulate,
    task,
)
from remote_helpers import EXPECTED, dag, pid_alive, sleepy, summary


def _wait_dead(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def _wait_for(path: Path, seconds: float = 20.0) -> int:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return int(path.read_text())


@pytest.mark.parametrize(
    "executor",
    [None, InlineExecutor(), "asyncio"],
    ids=["threads", "inline", "asyncio"],
)
def test_isolated_tasks_give_the_same_snapshot_as_an_inline_run(
    executor: object, registry: flowplan.Registry
) -> None:
    graph, _ = dag()
    inline = execute(plan(graph), executor=InlineExecutor(), fail_fast=False)
    isolated_graph, _ = dag(isolation="process")
    the_plan = plan(isolated_graph)
    if executor == "asyncio":
        snapshot = asyncio.run(aexecute(the_plan, fail_fast=False))
    else:
        assert executor is None or isinstance(executor, InlineExecutor)
        snapshot = execute(the_plan, executor=executor, fail_fast=False)
    assert summary(snapshot) == summary(inline) == EXPECTED


def test_only_the_isolated_task_leaves_the_process_and_the_pool_ends_with_the_run(
    registry: flowplan.Registry,
) -> None:
    @task(isolation="process")
    def isolated() -> int:
        return os.getpid()

    @task(depends_on=[isolated])
    def local(isolated: int) -> tuple[int, int]:
        return isolated, os.getpid()

    snapshot = execute(plan(TaskGraph.build([isolated, local])))
    child, here = snapshot.value(local)
    assert here == os.getpid()
    assert child != os.getpid()
    assert not pid_alive(child)  # the run shut its pool down (and waited) before returning


def test_a_hard_timeout_kills_the_child_and_the_retry_runs_in_a_fresh_process(
    registry: flowplan.Registry, tmp_path: Path
) -> None:
    pid_file, side_effect = tmp_path / "pid", tmp_path / "side-effect"

    @task(timeout_s=0.5, retry=1, retry_backoff_base_ms=0, isolation="process")
    def slow() -> int:
        return sleepy(str(pid_file), str(side_effect))

    hook = RecordingHook()
    with ThreadPoolExecutor(2) as threads:
        snapshot = execute(plan(TaskGraph.build([slow])), executor=threads, hooks=[hook])
    record = snapshot.records["slow"]
    assert record.status is TaskStatus.SUCCEEDED
    assert record.attempts == 2
    assert [type(e).__name__ for e in hook.events].count("TaskTimedOut") == 1
    first = int(Path(f"{pid_file}.1").read_text())
    assert snapshot.value(slow) not in (first, os.getpid())  # a fresh process for the retry
    assert _wait_dead(first)
    time.sleep(1.2)  # the killed body would have left its side effect by now
    assert not side_effect.exists()


def test_a_timeout_without_retry_fails_the_task_as_timed_out(
    registry: flowplan.Registry, tmp_path: Path
) -> None:
    pid_file, side_effect = tmp_path / "pid", tmp_path / "side-effect"

    @task(timeout_s=0.3, isolation="process")
    def slow() -> int:
        return sleepy(str(pid_file), str(side_effect))

    snapshot = execute(plan(TaskGraph.build([slow])), executor=InlineExecutor())
    record = snapshot.records["slow"]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "timeout"
    assert _wait_dead(int(Path(f"{pid_file}.1").read_text()))


def test_the_async_driver_kills_a_timed_out_child_and_retries(
    registry: flowplan.Registry, tmp_path: Path
) -> None:
    pid_file, side_effect = tmp_path / "pid", tmp_path / "side-effect"

    @task(timeout_s=0.5, retry=1, retry_backoff_base_ms=0, isolation="process")
    def slow() -> int:
        return sleepy(str(pid_file), str(side_effect))

    @task(isolation="process")
    async def coroutine() -> int:  # isolated async bodies leave the loop too
        await asyncio.sleep(0)
        return os.getpid()

    snapshot = asyncio.run(aexecute(plan(TaskGraph.build([slow, coroutine]))))
    assert snapshot.records["slow"].attempts == 2
    first = int(Path(f"{pid_file}.1").read_text())
    assert snapshot.value(slow) not in (first, os.getpid())
    assert snapshot.value(coroutine) != os.getpid()
    assert _wait_dead(first)


def test_an_unpicklable_isolated_task_is_a_clear_error_before_anything_runs(
    registry: flowplan.Registry,
) -> None:
    lock = threading.Lock()

    @task
    def local_lock_is_fine() -> bool:  # not isolated: never pickled
        return lock.locked()

    @task(isolation="process")
    def holds_a_lock() -> bool:
        return lock.locked()

    graph = TaskGraph.build([local_lock_is_fine, holds_a_lock])
    hook = RecordingHook()
    with pytest.raises(SerializationError) as info:
        execute(plan(graph), hooks=[hook])
    message = str(info.value)
    assert "'holds_a_lock'" in message
    assert "local_lock_is_fine" not in message
    assert "isolation='process'" in message
    assert "drop isolation='process'" in message
    assert hook.events == []  # nothing started
    with pytest.raises(SerializationError, match="holds_a_lock"):
        asyncio.run(aexecute(plan(graph)))
    # without the isolated task, the same closure runs in this process
    assert execute(plan(graph, targets=[local_lock_is_fine])).value(local_lock_is_fine) is False


def test_process_workers_is_validated(registry: flowplan.Registry) -> None:
    @task(isolation="process")
    def one() -> int:
        return 1

    graph = TaskGraph.build([one])
    with pytest.raises(InvalidOptionError, match=r"process_workers must be a whole number >= 1"):
        execute(plan(graph), process_workers=0)
    with pytest.raises(InvalidOptionError, match="process_workers"):
        asyncio.run(aexecute(plan(graph), process_workers=-1))
    with pytest.raises(InvalidOptionError, match="process_workers"):
        Flow(one, process_workers=0)


def test_the_pool_is_created_only_when_an_isolated_attempt_runs(
    registry: flowplan.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowplan._isolation as isolation_module

    created: list[int] = []

    class CountingPool(ProcessExecutor):
        def __init__(self, max_workers: int | None = None) -> None:
            created.append(max_workers or 0)
            super().__init__(max_workers)

    monkeypatch.setattr(isolation_module, "ProcessExecutor", CountingPool)

    @task
    def source() -> int:
        return 0

    @task(depends_on=[source], isolation="process", when=lambda source: source > 0)
    def skipped(source: int) -> int:
        return source

    snapshot = execute(plan(TaskGraph.build([source, skipped])))
    assert snapshot.records["skipped"].status is TaskStatus.SKIPPED
    assert created == []  # planned, but no attempt ran: no process started

    @task(isolation="process")
    def a() -> int:
        return 1

    @task(isolation="process")
    def b() -> int:
        return 2

    graph = TaskGraph.build([a, b])
    assert execute(plan(graph)).value(b) == 2
    assert created == [min(os.cpu_count() or 1, 2)]  # default: one per isolated task, capped
    execute(plan(graph), process_workers=1)
    assert created[-1] == 1


def test_a_remote_executor_already_isolates_every_attempt(
    registry: flowplan.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowplan._isolation as isolation_module

    def refuse(*args: object, **kwargs: object) -> ProcessExecutor:
        raise AssertionError("a remote run must not start a second pool")

    monkeypatch.setattr(isolation_module, "ProcessExecutor", refuse)

    @task(isolation="process")
    def where() -> int:
        return os.getpid()

    with ProcessExecutor(1) as processes:
        snapshot = execute(plan(TaskGraph.build([where])), executor=processes)
    assert snapshot.value(where) != os.getpid()


def test_an_interrupted_run_kills_its_isolated_attempts(
    registry: flowplan.Registry, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"

    @task(isolation="process")
    def long() -> int:
        Path(pid_file).write_text(str(os.getpid()))
        time.sleep(30)
        return 1

    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        _wait_for(pid_file)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as info:
        execute(plan(TaskGraph.build([long])))
    assert time.monotonic() - started < 20
    snapshot = info.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert snapshot.records["long"].status is TaskStatus.FAILED
    assert _wait_dead(int(pid_file.read_text()))


def test_flow_runs_isolated_tasks_in_a_child_process(registry: flowplan.Registry) -> None:
    @task(isolation="process")
    def where() -> int:
        return os.getpid()

    flow = Flow(where, process_workers=1)
    assert flow.run()["where"].value != os.getpid()


def test_the_engine_task_decorator_takes_isolation(registry: flowplan.Registry) -> None:
    from flowplan import engine

    eng = engine.build_default_engine(process_workers=1)
    try:

        @eng.task(dag="d", isolation="process")
        def where() -> int:
            return os.getpid()

        @eng.task(dag="d", deps=[where])
        def here(where: int) -> tuple[int, int]:
            return where, os.getpid()

        assert where.isolation == "process"
        run_id = asyncio.run(eng.run_once("d"))
        child, local = eng.state_store.load(run_id).value(here)
        assert local == os.getpid()
        assert child != os.getpid()
    finally:
        eng.close()


def test_simulate_ignores_isolation(registry: flowplan.Registry) -> None:
    @task(isolation="process", retry=1)
    def flaky() -> int:
        return 1

    sim = simulate(plan(TaskGraph.build([flaky])), {flaky: [Fail(ValueError), Value(7)]})
    assert sim.snapshot[flaky].attempts == 2
    assert sim.snapshot.value(flaky) == 7
