"""Tests for timeouts: honest, abandoning, cooperative, and never blocking process exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flowplan import (
    AttemptContext,
    Event,
    InlineExecutor,
    Plan,
    RecordingHook,
    Registry,
    Snapshot,
    TaskFailed,
    TaskGraph,
    TaskRecord,
    TaskRetrying,
    TaskSpec,
    TaskStatus,
    TaskTimedOut,
    TaskTimeoutError,
    aexecute,
    current_attempt,
    execute,
    plan,
    task,
)

GENEROUS = 2.0  # "finishes in about the timeout": an upper bound, not a benchmark
HANG = 30.0  # how long a hanging body would wait if nothing released it


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown, so abandoned attempts end instead of outliving the test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture(params=["inline", "threads"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    if request.param == "inline":
        yield InlineExecutor()
        return
    with ThreadPoolExecutor(2) as pool:
        yield pool


def run(
    *specs: TaskSpec[..., Any], executor: Executor | None, **options: Any
) -> tuple[Snapshot, list[Event], float]:
    recorder = RecordingHook()
    began = time.monotonic()
    snap = execute(plan(TaskGraph.build(specs)), executor=executor, hooks=[recorder], **options)
    return snap, recorder.events, time.monotonic() - began


def test_a_hanging_sync_task_times_out(
    registry: Registry, executor: Executor, release: threading.Event
) -> None:
    @task(timeout_s=0.1)
    def hang() -> None:
        release.wait(HANG)

    snap, events, elapsed = run(hang, executor=executor)
    assert elapsed < GENEROUS
    record = snap[hang]
    assert record.status is TaskStatus.FAILED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.kind == "timeout"
    assert record.error.type == "flowplan.errors.TaskTimeoutError"
    assert isinstance(record.error.exception, TaskTimeoutError)
    assert record.reason == "timed out after 0.1s on attempt 1/1"
    timed_out = [e for e in events if isinstance(e, TaskTimedOut)]
    assert [(e.task, e.attempt, e.timeout_s) for e in timed_out] == [("hang", 1, 0.1)]


def test_timeouts_are_retryable_and_consume_the_budget(
    registry: Registry, executor: Executor, release: threading.Event
) -> None:
    @task(timeout_s=0.05, retry=2, retry_backoff_base_ms=0, idempotent=True)
    def hang() -> None:
        release.wait(HANG)

    snap, events, elapsed = run(hang, executor=executor)
    assert elapsed < 3 * GENEROUS
    assert snap[hang].status is TaskStatus.FAILED
    assert snap[hang].attempts == 3
    assert [e.attempt for e in events if isinstance(e, TaskTimedOut)] == [1, 2, 3]
    assert [e.attempt for e in events if isinstance(e, TaskRetrying)] == [1, 2]
    assert all(e.error.kind == "timeout" for e in events if isinstance(e, TaskRetrying))


def test_a_retry_after_a_timeout_can_succeed(
    registry: Registry, executor: Executor, release: threading.Event
) -> None:
    @task(timeout_s=0.1, retry=1, retry_backoff_base_ms=0, idempotent=True)
    def sometimes_hangs() -> str:
        attempt = current_attempt()
        assert attempt is not None
        if attempt.attempt == 1:
            release.wait(HANG)
        return f"attempt {attempt.attempt}"

    snap, _, _ = run(sometimes_hangs, executor=executor)
    assert snap.value(sometimes_hangs) == "attempt 2"
    assert snap[sometimes_hangs].attempts == 2


def test_the_abandoned_attempt_runs_on_a_named_daemon_thread(
    registry: Registry, release: threading.Event
) -> None:
    started = threading.Event()

    @task(timeout_s=0.1)
    def stuck_task() -> None:
        started.set()
        release.wait(HANG)

    snap, _, _ = run(stuck_task, executor=InlineExecutor())
    assert started.wait(GENEROUS)
    assert snap[stuck_task].status is TaskStatus.FAILED
    threads = [t for t in threading.enumerate() if t.name == "flowplan:stuck_task:attempt-1"]
    assert len(threads) == 1
    assert threads[0].daemon
    assert threads[0].is_alive()  # abandoned, not killed
    release.set()
    threads[0].join(GENEROUS)
    assert not threads[0].is_alive()


def test_the_body_sees_the_cooperative_cancel_signal(registry: Registry) -> None:
    seen: list[AttemptContext] = []
    observed: dict[str, Any] = {}
    done = threading.Event()

    @task(timeout_s=0.1)
    def cooperative() -> None:
        attempt = current_attempt()
        assert attempt is not None
        seen.append(attempt)
        observed["remaining"] = attempt.remaining_s()
        observed["woke_cancelled"] = attempt.wait(HANG)  # returns early once cancelled
        observed["after"] = attempt.cancelled
        try:
            attempt.raise_if_cancelled()
        except TaskTimeoutError as exc:
            observed["raised"] = exc
        done.set()

    snap, _, elapsed = run(cooperative, executor=InlineExecutor())
    assert elapsed < GENEROUS
    assert snap[cooperative].status is TaskStatus.FAILED
    assert done.wait(GENEROUS)
    (attempt,) = seen
    assert (attempt.task, attempt.attempt, attempt.timeout_s) == ("cooperative", 1, 0.1)
    assert attempt.run_id == snap.run_id
    assert 0 <= observed["remaining"] <= 0.1
    assert observed["woke_cancelled"] is True
    assert observed["after"] is True
    assert isinstance(observed["raised"], TaskTimeoutError)
    assert attempt.remaining_s() == 0.0
    assert current_attempt() is None  # nothing leaks into the caller


def test_current_attempt_without_a_timeout(registry: Registry) -> None:
    seen: list[AttemptContext | None] = []

    @task
    def plain() -> None:
        seen.append(current_attempt())

    run(plain, executor=InlineExecutor())
    (attempt,) = seen
    assert attempt is not None
    assert attempt.deadline is None
    assert attempt.remaining_s() is None
    assert not attempt.cancelled


def test_a_tasks_own_timeout_error_is_not_a_framework_timeout(
    registry: Registry, executor: Executor
) -> None:
    @task(timeout_s=5)
    def own() -> None:
        raise TimeoutError("the upstream API timed out")

    @task
    def own_without_limit() -> None:
        raise TimeoutError("also mine")

    snap, events, _ = run(own, own_without_limit, executor=executor, fail_fast=False)
    for name in ("own", "own_without_limit"):
        record = snap[name]
        assert record.status is TaskStatus.FAILED
        assert record.error is not None
        assert record.error.type == "builtins.TimeoutError"
        assert record.error.kind == "error"
    assert not any(isinstance(e, TaskTimedOut) for e in events)
    failed = {e.task: e.reason for e in events if isinstance(e, TaskFailed)}
    assert failed["own"] == "raised TimeoutError on attempt 1/1"


def test_queue_time_does_not_count_against_the_timeout(registry: Registry) -> None:
    @task
    def first_and_long() -> str:
        time.sleep(0.6)  # far longer than the next task's timeout
        return "long"

    @task(timeout_s=0.25)
    def second_and_fast() -> str:
        return "fast"

    snap, _, _ = run(first_and_long, second_and_fast, executor=None, max_workers=1)
    assert snap.value(second_and_fast) == "fast"
    assert snap.value(first_and_long) == "long"


def test_queue_time_does_not_count_in_the_async_driver(registry: Registry) -> None:
    @task
    async def first_and_long() -> str:
        await asyncio.sleep(0.6)  # far longer than the next tasks' timeouts
        return "long"

    @task(timeout_s=0.25)
    async def second_and_fast() -> str:
        return "fast"

    @task(timeout_s=0.25)
    def third_sync_and_fast() -> str:
        return "fast too"

    the_plan = plan(TaskGraph.build([first_and_long, second_and_fast, third_sync_and_fast]))
    snap = asyncio.run(aexecute(the_plan, max_workers=1))
    assert snap.value(second_and_fast) == "fast"
    assert snap.value(third_sync_and_fast) == "fast too"


def test_async_tasks_are_cancelled_on_timeout_in_the_sync_driver(
    registry: Registry, executor: Executor
) -> None:
    cancelled = threading.Event()

    @task(timeout_s=0.1)
    async def slow() -> None:
        try:
            await asyncio.sleep(HANG)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    snap, events, elapsed = run(slow, executor=executor)
    assert elapsed < GENEROUS
    assert cancelled.is_set()  # cancelled, not abandoned
    error = snap[slow].error
    assert error is not None
    assert error.kind == "timeout"
    assert any(isinstance(e, TaskTimedOut) for e in events)


def test_async_tasks_are_cancelled_on_timeout_in_the_async_driver(
    registry: Registry, release: threading.Event
) -> None:
    cancelled: list[bool] = []

    @task(timeout_s=0.1, retry=1, retry_backoff_base_ms=0)
    async def slow() -> None:
        try:
            await asyncio.sleep(HANG)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    @task(timeout_s=0.1)
    def slow_sync() -> None:
        release.wait(HANG)

    recorder = RecordingHook()
    the_plan = plan(TaskGraph.build([slow, slow_sync]))
    began = time.monotonic()
    snap = asyncio.run(aexecute(the_plan, hooks=[recorder], fail_fast=False))
    assert time.monotonic() - began < 2 * GENEROUS
    assert cancelled == [True, True]
    assert snap[slow].attempts == 2
    for name in ("slow", "slow_sync"):
        record = snap[name]
        assert record.status is TaskStatus.FAILED
        assert record.error is not None
        assert record.error.kind == "timeout"
    timed_out = sorted((e.task, e.attempt) for e in recorder.events if isinstance(e, TaskTimedOut))
    assert timed_out == [("slow", 1), ("slow", 2), ("slow_sync", 1)]


def test_an_abandoned_attempt_does_not_block_process_exit(tmp_path: Path) -> None:
    script = tmp_path / "abandon.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from flowplan import InlineExecutor, Registry, TaskGraph, execute, plan, task

            registry = Registry()

            @task(timeout_s=0.2, registry=registry)
            def sleeps_forever() -> None:
                time.sleep(600)

            graph = TaskGraph.build([sleeps_forever])
            for executor in (None, InlineExecutor()):
                snap = execute(plan(graph), executor=executor)
                record = snap["sleeps_forever"]
                print(record.status.value, record.error.kind, flush=True)
            """
        ),
        encoding="utf-8",
    )
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["failed timeout", "failed timeout"]
    assert elapsed < 30  # interpreter start-up included; a blocked exit would take 600 s


# -- timeouts that bound the run ------------------------------------------------------------

BOUND = 20.0  # "the run ended": timeout + cancellation grace, with room for a loaded machine


def _within(fn: Callable[[], Any], limit: float = BOUND) -> Any:
    """Call ``fn`` on a daemon thread; fail (instead of hanging the suite) if it runs on."""
    box: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    if not box:
        pytest.fail(f"the run was still going after {limit:g}s: its timeout does not bound it")
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _drive(driver: str, the_plan: Plan, **options: Any) -> Snapshot:
    if driver == "async":
        return asyncio.run(aexecute(the_plan, **options))
    executor = InlineExecutor() if driver == "inline" else None
    return execute(the_plan, executor=executor, **options)


def _timeout_error(record: TaskRecord) -> TaskTimeoutError:
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "timeout"
    assert isinstance(record.error.exception, TaskTimeoutError)
    return record.error.exception


@pytest.mark.parametrize("driver", ["threads", "inline", "async"])
def test_an_async_task_that_swallows_its_cancellation_is_abandoned_after_the_grace(
    registry: Registry, driver: str, release: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    swallowed = threading.Event()

    @task(timeout_s=0.5)
    async def stubborn() -> int:
        try:
            await asyncio.sleep(HANG)
        except asyncio.CancelledError:
            swallowed.set()  # ... and goes on as if nothing happened
        while not release.is_set():
            await asyncio.sleep(0.05)
        return 1

    @task
    def sibling() -> int:
        return 2

    @task(depends_on=[stubborn])
    def after(stubborn: int) -> int:
        return stubborn

    recorder = RecordingHook()
    the_plan = plan(TaskGraph.build([stubborn, sibling, after]))
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="flowplan"):
        snap = _within(lambda: _drive(driver, the_plan, fail_fast=False, hooks=[recorder]))
    assert time.monotonic() - began < BOUND
    assert swallowed.is_set()
    error = _timeout_error(snap[stubborn])
    assert error.task == "stubborn"
    assert "CancelledError" in str(error)  # says what went wrong ...
    assert "abandoned" in str(error)  # ... and what became of the attempt
    assert snap.value(sibling) == 2  # the run went on
    assert snap[after].status is TaskStatus.SKIPPED
    assert [e.task for e in recorder.events if isinstance(e, TaskTimedOut)] == ["stubborn"]
    assert not [r for r in caplog.records if "blocked" in r.getMessage()]  # the loop ran


@pytest.mark.parametrize("driver", ["threads", "inline", "async"])
def test_retries_apply_to_an_abandoned_async_attempt(
    registry: Registry, driver: str, release: threading.Event
) -> None:
    @task(timeout_s=0.3, retry=1, retry_backoff_base_ms=0, idempotent=True)
    async def stubborn() -> str:
        attempt = current_attempt()
        assert attempt is not None
        if attempt.attempt == 1:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(HANG)
            while not release.is_set():  # goes on after its cancellation
                await asyncio.sleep(0.05)
        return f"attempt {attempt.attempt}"

    the_plan = plan(TaskGraph.build([stubborn]))
    snap = _within(lambda: _drive(driver, the_plan))
    assert snap.value(stubborn) == "attempt 2"
    assert snap[stubborn].attempts == 2


@pytest.mark.parametrize("driver", ["threads", "inline"])
def test_an_async_task_that_blocks_its_loop_is_abandoned_by_execute(
    registry: Registry, driver: str, release: threading.Event
) -> None:
    @task(timeout_s=0.5)
    async def blocking() -> int:
        release.wait(HANG)  # a blocking call: its event loop never runs again
        return 1

    @task
    def sibling() -> int:
        return 2

    the_plan = plan(TaskGraph.build([blocking, sibling]))
    snap = _within(lambda: _drive(driver, the_plan, fail_fast=False))
    error = _timeout_error(snap[blocking])
    assert "blocking call" in str(error)
    assert "abandoned" in str(error)
    assert snap.value(sibling) == 2


def test_a_task_blocking_the_event_loop_is_named_at_once_and_recorded_as_timed_out(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    returned: list[float] = []

    @task(timeout_s=0.5)
    async def hog() -> int:
        time.sleep(5)  # blocks aexecute's (the host's) event loop: no timeout can fire
        returned.append(time.time())
        return 1

    @task
    async def neighbour() -> int:
        await asyncio.sleep(0)
        return 2

    the_plan = plan(TaskGraph.build([hog, neighbour]))
    with caplog.at_level(logging.WARNING, logger="flowplan"):
        snap = _within(lambda: asyncio.run(aexecute(the_plan, fail_fast=False)))
    warned = [r for r in caplog.records if "blocked" in r.getMessage()]
    assert warned, caplog.text
    assert "'hog'" in warned[0].getMessage()
    assert warned[0].created < returned[0]  # said while the loop was still blocked
    error = _timeout_error(snap[hog])
    assert "blocked the event loop" in str(error)
    assert snap.value(neighbour) == 2


def test_the_watchdog_names_a_task_without_timeout_that_blocks_the_loop(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    @task
    async def hog() -> int:  # no timeout of its own: only the watchdog can tell
        await asyncio.sleep(0.1)  # the watched task is waiting by now
        time.sleep(4)
        return 1

    @task(timeout_s=0.5)
    async def patient() -> int:
        await asyncio.sleep(HANG)
        return 2

    the_plan = plan(TaskGraph.build([hog, patient]))
    with caplog.at_level(logging.WARNING, logger="flowplan"):
        snap = _within(lambda: asyncio.run(aexecute(the_plan, fail_fast=False)))
    warned = [r.getMessage() for r in caplog.records if "blocking" in r.getMessage()]
    assert warned, caplog.text
    assert "'patient'" in warned[0]  # whose timeout cannot fire ...
    assert "'flowplan:hog:attempt-1'" in warned[0]  # ... and what holds the loop
    assert snap.value(hog) == 1  # no timeout: it may take as long as it takes
    assert _timeout_error(snap[patient]).detail == ""  # timed out as soon as the loop ran


def test_watching_many_async_attempts_keeps_no_finished_ones(registry: Registry) -> None:
    from flowplan import _watchdog

    specs = []
    for i in range(3000):

        @task(name=f"t{i}", timeout_s=3600)
        async def quick() -> int:
            return 1

        specs.append(quick)
    snap = asyncio.run(aexecute(plan(TaskGraph.build(specs))))
    assert snap.value("t2999") == 1
    with _watchdog._cond:
        assert len(_watchdog._heap) <= 2 * 1024 + 1  # compacted, not one entry per attempt
        assert all(entry.body is None for _, _, entry in _watchdog._heap)  # no values kept


def test_a_cancelled_run_stops_waiting_for_an_abandoned_attempt(
    registry: Registry, release: threading.Event
) -> None:
    @task(timeout_s=0.3, retry=1, retry_backoff_base_ms=0)
    def hang() -> None:  # not idempotent: its retry waits for the abandoned attempt
        release.wait(HANG)

    async def main() -> Snapshot:
        with pytest.raises(TimeoutError) as timed_out:
            await asyncio.wait_for(aexecute(plan(TaskGraph.build([hang]))), 2.0)
        assert timed_out.value.__cause__ is not None
        snapshot: Snapshot = timed_out.value.__cause__.flowplan_snapshot  # type: ignore[attr-defined]
        return snapshot

    snap = _within(lambda: asyncio.run(main()))  # asyncio.run waits for no thread of ours
    assert snap[hang].status is TaskStatus.FAILED
    assert snap[hang].error is not None
    assert snap[hang].error.kind == "interrupted"  # cancelled while its retry waited
