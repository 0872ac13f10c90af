"""Tests for timeouts: honest, abandoning, cooperative, and never blocking process exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flowplan import (
    AttemptContext,
    Event,
    InlineExecutor,
    RecordingHook,
    Registry,
    Snapshot,
    TaskFailed,
    TaskGraph,
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
