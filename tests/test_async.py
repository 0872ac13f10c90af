"""Tests for the asyncio driver (``aexecute``)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flowplan import (
    CallbackHook,
    Event,
    InlineExecutor,
    Plan,
    RecordingHook,
    Registry,
    RunFinished,
    Snapshot,
    StoreError,
    TaskFailed,
    TaskGraph,
    TaskRecord,
    TaskRetrying,
    TaskSpec,
    TaskStarted,
    TaskStatus,
    TaskSucceeded,
    aexecute,
    execute,
    fold,
    plan,
    task,
)
from flowplan.engine import SqliteStateStore, build_default_engine

T = TypeVar("T")
WAIT = 5.0


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def run_async(*specs: TaskSpec[..., Any], **options: Any) -> tuple[Snapshot, list[Event]]:
    recorder = RecordingHook()
    the_plan = plan(TaskGraph.build(specs), options.pop("snapshot", None))
    snap = await aexecute(the_plan, hooks=[recorder, *options.pop("hooks", ())], **options)
    assert snap.is_complete
    return snap, recorder.events


def test_async_tasks_run_on_the_loop_and_sync_tasks_off_it(registry: Registry) -> None:
    where: dict[str, Any] = {}

    @task
    async def fetch() -> int:
        where["fetch_loop"] = asyncio.get_running_loop()
        await asyncio.sleep(0)
        return 20

    @task(depends_on=[fetch])
    def double(fetch: int) -> int:
        where["double_thread"] = threading.get_ident()
        return fetch * 2

    @task(depends_on=[double])
    async def plus_two(double: int) -> int:
        return double + 2

    async def main() -> tuple[Snapshot, list[Event]]:
        where["loop"] = asyncio.get_running_loop()
        where["loop_thread"] = threading.get_ident()
        return await run_async(fetch, double, plus_two)

    snap, events = arun(main())
    assert snap.value(plus_two) == 42
    assert not asyncio.iscoroutine(snap.value(fetch))
    assert where["fetch_loop"] is where["loop"]
    assert where["double_thread"] != where["loop_thread"]
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "succeeded"


def test_sync_tasks_may_run_on_a_given_executor(registry: Registry) -> None:
    @task
    def one() -> int:
        return 1

    @task(depends_on=[one])
    async def two(one: int) -> int:
        return one + 1

    with ThreadPoolExecutor(1, thread_name_prefix="mine") as pool:
        snap, _ = arun(run_async(one, two, executor=pool))
    assert snap.value(two) == 2
    snap, _ = arun(run_async(one, two, executor=InlineExecutor()))
    assert snap.value(two) == 2


def test_gates_and_retries_behave_as_in_the_sync_driver(registry: Registry) -> None:
    outcomes = iter([False, True])

    @task
    async def fetch() -> dict[str, Any]:
        return {"go": True, "items": [1, 2]}

    @task(depends_on=[fetch], when=lambda fetch: fetch["go"])
    async def process(fetch: dict[str, Any]) -> int:
        return sum(fetch["items"])

    @task(depends_on=[fetch], when=lambda fetch: not fetch["go"])
    async def skipped(fetch: dict[str, Any]) -> int:
        raise AssertionError("must not run")

    def refuse(fetch: dict[str, Any]) -> None:
        raise ValueError("contract")

    @task(depends_on=[fetch], validate=refuse, retry=2)
    async def invalid(fetch: dict[str, Any]) -> int:
        raise AssertionError("must not run")

    @task(retry=2, retry_until=lambda v: v, retry_backoff_base_ms=1)
    async def converge() -> bool:
        await asyncio.sleep(0)
        return next(outcomes)

    snap, events = arun(run_async(fetch, process, skipped, invalid, converge, fail_fast=False))
    assert snap.value(process) == 3
    assert snap[skipped].status is TaskStatus.SKIPPED
    assert snap[skipped].root_cause == "skipped"
    assert snap[invalid].status is TaskStatus.FAILED
    assert snap[invalid].attempts == 0
    assert snap[converge].status is TaskStatus.SUCCEEDED
    assert snap[converge].attempts == 2
    assert snap[converge].retry_delays == (0.001,)
    assert [e.task for e in events if isinstance(e, TaskRetrying)] == ["converge"]


def test_fail_fast_cancels_what_has_not_started(registry: Registry) -> None:
    bad_failed = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFailed) and event.task == "bad":
            bad_failed.set()

    @task
    async def bad() -> None:
        raise RuntimeError("boom")

    @task
    async def slow() -> str:
        await asyncio.wait_for(bad_failed.wait(), WAIT)  # still running when 'bad' fails
        return "done"

    @task(depends_on=[slow])
    async def after_slow(slow: str) -> str:
        raise AssertionError("must not start after a fail-fast stop")

    @task(depends_on=[bad])
    async def after_bad(bad: None) -> None:
        raise AssertionError("must not run")

    @task(depends_on=[slow], detached=True)
    async def side(slow: str) -> str:
        return slow

    snap, events = arun(
        run_async(bad, slow, after_slow, after_bad, side, hooks=[CallbackHook(on_event)])
    )
    assert {n: r.status.value for n, r in snap.records.items()} == {
        "bad": "failed",
        "slow": "succeeded",
        "after_slow": "cancelled",
        "after_bad": "skipped",
        "side": "succeeded",
    }
    assert snap[after_slow].root_cause == "bad"
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "failed"


def test_a_ready_task_is_not_delayed_by_an_unrelated_slow_task(registry: Registry) -> None:
    async def main() -> Snapshot:
        downstream_ran = asyncio.Event()

        @task
        async def slow() -> bool:
            try:
                await asyncio.wait_for(downstream_ran.wait(), WAIT)
            except TimeoutError:
                return False
            return True

        @task
        async def fast() -> int:
            return 1

        @task(depends_on=[fast])
        async def after_fast(fast: int) -> int:
            downstream_ran.set()
            return fast + 1

        snap, _ = await run_async(slow, fast, after_fast)
        return snap

    snap = arun(main())
    assert snap.value("slow") is True
    assert snap.value("after_fast") == 2


def test_max_workers_caps_concurrency(registry: Registry) -> None:
    async def main() -> int:
        running = 0
        peak = 0
        barrier = asyncio.Barrier(2)

        async def body() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.wait_for(barrier.wait(), WAIT)  # two do run at once
            await asyncio.sleep(0.005)
            running -= 1

        specs = [TaskSpec(f"t{i}", body) for i in range(6)]
        await run_async(*specs, max_workers=2)
        return peak

    assert arun(main()) == 2


def test_detached_tasks_run_after_main_tasks(registry: Registry) -> None:
    @task
    async def a() -> int:
        return 1

    @task(depends_on=[a], detached=True)
    async def notify(a: int) -> None:
        raise OSError("smtp down")

    @task(depends_on=[a])
    async def b(a: int) -> int:
        await asyncio.sleep(0.005)
        return a + 1

    snap, events = arun(run_async(a, notify, b))
    started_notify = next(
        i for i, e in enumerate(events) if isinstance(e, TaskStarted) and e.task == "notify"
    )
    succeeded_b = next(
        i for i, e in enumerate(events) if isinstance(e, TaskSucceeded) and e.task == "b"
    )
    assert succeeded_b < started_notify
    assert snap[notify].status is TaskStatus.FAILED
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "succeeded"


def test_nothing_to_run_finishes_at_once(registry: Registry) -> None:
    @task
    async def a() -> int:
        return 1

    graph = TaskGraph.build([a])
    first = arun(aexecute(plan(graph)))
    again = arun(aexecute(plan(graph, first)))
    assert again.value(a) == 1
    assert again[a] == first[a]


def test_events_fold_to_the_snapshot(registry: Registry) -> None:
    @task
    async def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        raise ValueError("x")

    @task(depends_on=[b])
    async def c(b: int) -> int:
        return b

    snap, events = arun(run_async(a, b, c))
    assert fold(events) == snap


def test_a_sync_task_raising_keyboard_interrupt_stops_the_async_run(registry: Registry) -> None:
    @task
    def interrupted() -> None:
        raise KeyboardInterrupt

    @task(depends_on=[interrupted])
    async def after(interrupted: None) -> None:
        raise AssertionError("must not run")

    with pytest.raises(KeyboardInterrupt) as info:
        arun(aexecute(plan(TaskGraph.build([interrupted, after])), max_workers=1))
    snap = info.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert snap[interrupted].status is TaskStatus.FAILED
    assert snap[after].status is TaskStatus.SKIPPED
    assert snap.is_complete


def test_async_driver_and_sync_driver_agree(registry: Registry) -> None:
    @task
    async def a() -> int:
        return 2

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a * 10

    @task(depends_on=[a, b])
    async def c(a: int, b: int) -> int:
        return a + b

    graph = TaskGraph.build([a, b, c])
    sync = execute(plan(graph), executor=InlineExecutor())
    async_ = arun(aexecute(plan(graph)))
    assert {n: r.value for n, r in sync.records.items()} == {
        n: r.value for n, r in async_.records.items()
    }


def test_a_store_that_cannot_write_ends_the_async_run_with_its_error(registry: Registry) -> None:
    class DiskFull:
        def begin_run(self, plan: Plan) -> None:
            pass

        def save_record(self, run_id: str, record: TaskRecord) -> None:
            if record.status.is_terminal:
                raise StoreError("disk full")

        def finish_run(self, snapshot: Snapshot, status: str) -> None:
            raise AssertionError("the run ended with an error")

    body_cancelled = asyncio.Event()

    @task
    async def a() -> int:
        return 1

    @task
    async def slow() -> int:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            body_cancelled.set()
            raise
        return 2

    async def main() -> None:
        the_plan = plan(TaskGraph.build([a, slow]))
        with pytest.raises(StoreError, match="disk full"):
            await asyncio.wait_for(aexecute(the_plan, store=DiskFull()), WAIT)
        # The run ended: its other tasks are stopped, not left running on the loop.
        await asyncio.wait_for(body_cancelled.wait(), WAIT)

    arun(main())


def test_cancelling_aexecute_cancels_its_tasks(registry: Registry) -> None:
    started = asyncio.Event()
    body_cancelled = asyncio.Event()
    recorder = RecordingHook()

    @task
    async def slow() -> int:
        started.set()
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            body_cancelled.set()
            raise
        return 1

    async def main() -> None:
        run_task = asyncio.ensure_future(aexecute(plan(TaskGraph.build([slow])), hooks=[recorder]))
        await asyncio.wait_for(started.wait(), WAIT)
        run_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run_task
        await asyncio.wait_for(body_cancelled.wait(), WAIT)
        await asyncio.sleep(0)

    arun(main())
    assert isinstance(recorder.events[-1], RunFinished)  # the run was recorded as it ended


# -- cancellation records the run -----------------------------------------------------------


def _interrupted(record: TaskRecord) -> None:
    assert record.status is TaskStatus.FAILED, record
    assert record.error is not None
    assert record.error.kind == "interrupted", record.error


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
def test_a_cancelled_aexecute_records_the_run_as_interrupted_and_resume_works(
    registry: Registry, how: str, tmp_path: Path
) -> None:
    release, sync_started, sync_returned = threading.Event(), threading.Event(), threading.Event()
    recorder = RecordingHook()

    @task
    async def quick() -> int:
        return 1

    @task
    def slow_sync() -> int:
        sync_started.set()
        release.wait(WAIT)
        sync_returned.set()
        return 2

    @task
    async def slow_async() -> int:
        while not release.is_set():
            await asyncio.sleep(0.01)
        return 3

    @task(depends_on=[quick, slow_sync, slow_async])
    def total(quick: int, slow_sync: int, slow_async: int) -> int:
        return quick + slow_sync + slow_async

    graph = TaskGraph.build([quick, slow_sync, slow_async, total])
    db = tmp_path / "runs.db"

    async def main() -> BaseException:
        with SqliteStateStore(db) as store:
            running = aexecute(plan(graph, run_id="r1"), store=store, hooks=[recorder])
            if how == "wait_for":
                with pytest.raises(TimeoutError) as timed_out:
                    await asyncio.wait_for(running, 3.0)
                assert timed_out.value.__cause__ is not None
                return timed_out.value.__cause__
            run_task = asyncio.ensure_future(running)
            assert await asyncio.to_thread(sync_started.wait, WAIT)
            while not any(isinstance(e, TaskSucceeded) for e in recorder.events):
                await asyncio.sleep(0.01)
            run_task.cancel()
            with pytest.raises(asyncio.CancelledError) as cancelled:
                await run_task
            return cancelled.value

    error = arun(main())
    assert isinstance(error, asyncio.CancelledError)
    partial: Snapshot = error.flowplan_snapshot  # type: ignore[attr-defined]
    assert isinstance(recorder.events[-1], RunFinished)
    release.set()
    assert sync_returned.wait(WAIT)  # the abandoned sync attempt went on to finish ...
    time.sleep(0.2)
    with SqliteStateStore(db) as store:
        stored = store.load("r1")  # ... and changed nothing the run recorded
        info = store.get_run("r1")
        assert info.status == "failed"
        assert info.finished_at is not None
        for snap in (partial, stored):
            assert snap["quick"].status is TaskStatus.SUCCEEDED
            _interrupted(snap["slow_sync"])
            _interrupted(snap["slow_async"])
            assert snap["total"].status is TaskStatus.CANCELLED
        resumed = execute(plan(graph, stored, run_id="r2"), store=store)
    assert resumed.value(total) == 6
    assert resumed["quick"].attempts == 1  # reused, not re-run


def test_a_cancelled_engine_run_is_recorded_and_resumes(tmp_path: Path) -> None:
    release, started = threading.Event(), threading.Event()
    store = SqliteStateStore(tmp_path / "runs.db")  # an engine never closes a store passed in
    engine = build_default_engine(state_store=store)

    @engine.task(dag="etl")
    def extract() -> int:
        return 1

    @engine.task(dag="etl", deps=[extract])
    def load(extract: int) -> int:
        started.set()
        release.wait(WAIT)
        return extract + 1

    async def main() -> str:
        run_task = asyncio.ensure_future(engine.run_once("etl"))
        assert await asyncio.to_thread(started.wait, WAIT)
        run_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run_task
        (info,) = engine.state_store.list_runs("etl")
        assert info.status == "failed"  # not "running" for good
        snap = engine.state_store.load(info.run_id)
        assert snap["extract"].status is TaskStatus.SUCCEEDED
        _interrupted(snap["load"])
        release.set()
        return await engine.resume(info.run_id)

    try:
        resumed = arun(main())
        snap = engine.state_store.load(resumed)
        assert snap.value("load") == 2
        assert snap["extract"].attempts == 1  # reused
    finally:
        release.set()
        engine.close()
        store.close()


_CTRL_C = """
import asyncio, sys, time
from pathlib import Path
from flowplan import Registry, TaskGraph, aexecute, plan, task
from flowplan.engine import SqliteStateStore, build_default_engine

here, mode = Path(sys.argv[1]), sys.argv[2]


def slow_sync() -> int:
    (here / "started").touch()
    time.sleep(600)
    return 2


async def slow_async() -> int:
    await asyncio.sleep(600)
    return 3


def quick() -> int:
    return 1


store = SqliteStateStore(here / "runs.db")
if mode == "engine":
    engine = build_default_engine(state_store=store)
    for fn in (quick, slow_sync, slow_async):
        engine.task(dag="etl")(fn)
    asyncio.run(engine.run_once("etl"))
else:
    registry = Registry()
    specs = [task(registry=registry)(fn) for fn in (quick, slow_sync, slow_async)]
    asyncio.run(aexecute(plan(TaskGraph.build(specs), run_id="r1"), store=store))
"""


@pytest.mark.parametrize("mode", ["aexecute", "engine"])
def test_ctrl_c_under_asyncio_run_records_the_run_and_exits_at_once(
    tmp_path: Path, mode: str
) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(_CTRL_C, encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), mode],
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
        time.sleep(0.2)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert took < 15  # never waited for the 600 s sync task
    assert "KeyboardInterrupt" in err
    assert "Exception ignored" not in err
    with SqliteStateStore(tmp_path / "runs.db") as store:
        (info,) = store.list_runs()
        assert info.status == "failed"
        snap = store.load(info.run_id)
    assert snap["quick"].status is TaskStatus.SUCCEEDED
    _interrupted(snap["slow_sync"])
    _interrupted(snap["slow_async"])
