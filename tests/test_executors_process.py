"""Process isolation: attempts in killable child processes; the same snapshots as threads."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

import flowplan
from flowplan import (
    Flow,
    InlineExecutor,
    ProcessExecutor,
    RecordingHook,
    SerializationError,
    TaskGraph,
    TaskStatus,
    aexecute,
    execute,
    plan,
    task,
)
from flowplan.executors import RemoteExecutor
from reliability_helpers import within
from remote_helpers import EXPECTED, dag, pid_alive, sleepy, summary


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    """Two warm child processes shared by the module's tests (spawning costs ~0.5 s each)."""
    with ProcessExecutor(2) as executor:
        yield executor


EXECUTORS: dict[str, Callable[[ProcessExecutor], Executor]] = {
    "inline": lambda _: InlineExecutor(),
    "thread": lambda _: ThreadPoolExecutor(2),
    "process": lambda pool: pool,
}


@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_the_same_dag_gives_the_same_snapshot_on_every_executor(
    kind: str, pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    graph, _ = dag()
    snapshot = execute(plan(graph), executor=EXECUTORS[kind](pool), fail_fast=False)
    assert summary(snapshot) == EXPECTED


def test_fail_fast_cancels_the_same_tasks_on_processes(
    pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    graph, _ = dag()
    inline = execute(plan(graph), executor=InlineExecutor())
    remote = execute(plan(graph), executor=pool)
    assert summary(remote)["boom"] == summary(inline)["boom"] == EXPECTED["boom"]
    assert summary(remote)["after_boom"][0] == summary(inline)["after_boom"][0]
    assert all(r.status.is_terminal for r in remote.records.values())


def test_the_same_dag_on_processes_under_asyncio(
    pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    graph, _ = dag()
    snapshot = asyncio.run(aexecute(plan(graph), executor=pool, fail_fast=False))
    assert summary(snapshot) == EXPECTED


def test_a_stdlib_process_pool_is_recognised(registry: flowplan.Registry) -> None:
    graph, _ = dag()
    with ProcessPoolExecutor(1) as stdlib:
        snapshot = execute(plan(graph), executor=stdlib, fail_fast=False)
    assert summary(snapshot) == EXPECTED


def test_the_executor_is_a_remote_executor(pool: ProcessExecutor) -> None:
    assert isinstance(pool, RemoteExecutor)
    assert pool.submit(pow, 2, 10).result() == 1024


def test_attempts_run_in_another_process_and_lambdas_travel(
    pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    offset = 5

    @task
    def where() -> int:
        return os.getpid()

    @task(depends_on=[where])
    def closure(where: int) -> int:
        return where + offset

    snapshot = execute(plan(TaskGraph.build([where, closure])), executor=pool)
    assert snapshot.value(where) != os.getpid()
    assert snapshot.value(closure) == snapshot.value(where) + 5


def test_a_timed_out_attempt_is_killed_and_the_retry_runs_in_a_fresh_process(
    pool: ProcessExecutor, registry: flowplan.Registry, tmp_path: Path
) -> None:
    pid_file, side_effect = tmp_path / "pid", tmp_path / "side-effect"

    @task(timeout_s=0.5, retry=1, retry_backoff_base_ms=0)
    def slow() -> int:
        return sleepy(str(pid_file), str(side_effect))

    started = time.perf_counter()
    snapshot = execute(plan(TaskGraph.build([slow])), executor=pool)
    assert time.perf_counter() - started < 10
    record = snapshot.records["slow"]
    assert record.status is TaskStatus.SUCCEEDED
    assert record.attempts == 2
    first = int(Path(f"{pid_file}.1").read_text())
    assert snapshot.value(slow) != first  # the retry ran in a fresh process
    deadline = time.monotonic() + 5
    while pid_alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(first)
    time.sleep(1.5)  # the body would have written its side effect by now
    assert not side_effect.exists()


def test_a_timeout_without_retry_is_recorded_timed_out(
    pool: ProcessExecutor, registry: flowplan.Registry, tmp_path: Path
) -> None:
    pid_file, side_effect = tmp_path / "pid", tmp_path / "side-effect"

    @task(timeout_s=0.3)
    def slow() -> int:
        return sleepy(str(pid_file), str(side_effect))

    hook = RecordingHook()
    snapshot = execute(plan(TaskGraph.build([slow])), executor=pool, hooks=[hook])
    record = snapshot.records["slow"]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "timeout"
    assert any(type(e).__name__ == "TaskTimedOut" for e in hook.events)


def test_an_unpicklable_task_is_a_clear_error_before_anything_runs(
    pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    lock = threading.Lock()

    @task
    def fine() -> int:
        return 1

    @task
    def holds_a_lock() -> bool:
        return lock.locked()

    hook = RecordingHook()
    with pytest.raises(SerializationError, match=r"must pickle(?s:.*)holds_a_lock.*_thread.lock"):
        execute(plan(TaskGraph.build([fine, holds_a_lock])), executor=pool, hooks=[hook])
    assert hook.events == []  # nothing started
    with pytest.raises(SerializationError, match="holds_a_lock"):
        asyncio.run(aexecute(plan(TaskGraph.build([fine, holds_a_lock])), executor=pool))


def test_an_unpicklable_value_fails_the_task_clearly(
    pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    @task
    def makes_a_lock() -> object:
        return threading.Lock()

    snapshot = execute(plan(TaskGraph.build([makes_a_lock])), executor=pool)
    error = snapshot.records["makes_a_lock"].error
    assert error is not None
    assert "cannot be pickled back" in error.message


def test_remote_errors_keep_their_type_and_traceback(
    pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    @task
    def fails() -> int:
        raise KeyError("missing")

    snapshot = execute(plan(TaskGraph.build([fails])), executor=pool)
    error = snapshot.records["fails"].error
    assert error is not None
    assert error.type == "builtins.KeyError"
    assert "in process" in error.traceback
    assert ", in fails" in error.traceback  # the remote frame


def test_a_worker_that_dies_fails_the_attempt_and_the_retry_runs(
    pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    @task(retry=1, retry_backoff_base_ms=0)
    def dies() -> str:
        attempt = flowplan.current_attempt()
        assert attempt is not None
        if attempt.attempt == 1:
            os._exit(3)
        return "survived"

    snapshot = execute(plan(TaskGraph.build([dies])), executor=pool)
    assert snapshot.value(dies) == "survived"
    assert snapshot.records["dies"].attempts == 2


def test_flow_passes_the_executor_through(
    pool: ProcessExecutor, registry: flowplan.Registry
) -> None:
    @task
    def where() -> int:
        return os.getpid()

    flow = Flow(where, executor=pool)
    results = flow.run()
    assert results["where"].value != os.getpid()


def test_the_engine_passes_the_executor_through(pool: ProcessExecutor) -> None:
    from flowplan import engine

    eng = engine.Engine(executor=pool)
    try:

        @eng.task(dag="d")
        def where() -> int:
            return os.getpid()

        run_id = asyncio.run(eng.run_once("d"))
        state = eng.state_store.get_run(run_id)
        assert state is not None
    finally:
        eng.close()


def test_shutdown_refuses_new_work() -> None:
    executor = ProcessExecutor(1)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(pow, 2, 2)


def test_waiting_for_a_slot_or_a_start_up_does_not_count_against_a_timeout(
    registry: flowplan.Registry,
) -> None:
    @task(timeout_s=0.4)
    def first() -> int:
        time.sleep(0.25)
        return 1

    @task(timeout_s=0.4)
    def second() -> int:
        time.sleep(0.25)
        return 2

    # One cold slot: the child's start-up (~0.5 s) and then ``first`` both come before
    # ``second`` starts, yet neither is counted against a 0.4 s timeout.
    with ProcessExecutor(1) as cold:
        snapshot = execute(plan(TaskGraph.build([first, second])), executor=cold)
    assert snapshot.value(first) == 1
    assert snapshot.value(second) == 2
    with ProcessExecutor(1) as cold:
        snapshot = asyncio.run(aexecute(plan(TaskGraph.build([first, second])), executor=cold))
    assert snapshot.value(second) == 2


def test_a_child_ends_when_its_lifeline_closes_even_mid_call() -> None:
    """The portable half of "children die with their parent": the lifeline's end of file (the
    parent's write end closed, as when it dies) ends a child that is running a call."""
    import multiprocessing
    import pickle

    from flowplan._process import ORPHANED_EXIT, _child

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    lifeline, keep = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child, lifeline, os.getpid(), -1), daemon=True)
    process.start()
    child.close()
    lifeline.close()
    try:
        assert parent.recv_bytes() == b"ready"
        parent.send_bytes(pickle.dumps((time.sleep, (60,), {})))  # a long call is running
        time.sleep(0.2)
        assert process.is_alive()
        keep.close()  # what the parent's death does to the pipe
        process.join(30)
        assert process.exitcode == ORPHANED_EXIT
    finally:
        if process.is_alive():
            process.kill()
        parent.close()


def test_an_interrupt_from_a_task_ends_a_process_run_at_once(registry: flowplan.Registry) -> None:
    @task
    def hanging() -> int:
        time.sleep(120)
        return 1

    @task
    def interrupter() -> int:
        time.sleep(0.5)  # the sibling is running by now
        raise KeyboardInterrupt

    graph = TaskGraph.build([hanging, interrupter])
    with ProcessExecutor(2) as executor:
        began = time.monotonic()
        with pytest.raises(KeyboardInterrupt) as caught:
            within(lambda: execute(plan(graph), executor=executor), 60)
        assert time.monotonic() - began < 60  # never waited for the 120 s sibling
    snap = caught.value.flowplan_snapshot  # type: ignore[attr-defined]
    for name in ("hanging", "interrupter"):
        assert snap[name].status is TaskStatus.FAILED
        assert snap[name].error.kind == "interrupted"
