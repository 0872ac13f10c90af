"""The thread driver's own pool (``execute`` without ``executor=``) and the hooked fast paths."""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
import pytest

from flowplan import (
    Event,
    InlineExecutor,
    RecordingHook,
    Registry,
    RunFinished,
    Snapshot,
    TaskGraph,
    TaskStatus,
    execute,
    plan,
    task,
)
from flowplan._workers import Workers
from flowplan.events import TaskStarted, TaskSucceeded, _make_started, _make_succeeded
from flowplan.transitions import fold

WAIT = 5.0


def _flowplan_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("flowplan_")}


def _settle() -> set[str]:
    """The run's worker threads still alive once they had time to end."""
    deadline = time.monotonic() + WAIT
    while _flowplan_threads() and time.monotonic() < deadline:
        time.sleep(0.005)
    return _flowplan_threads()


def test_an_owned_pool_starts_threads_lazily_and_never_more_than_max_workers(
    registry: Registry,
) -> None:
    assert _settle() == set()
    seen: set[str] = set()
    lock = threading.Lock()

    @task
    def root() -> int:
        return 1

    specs: list[Any] = [root]
    for i in range(40):

        @task(name=f"leaf{i}", depends_on=[root])
        def leaf(root: int) -> int:
            with lock:
                seen.add(threading.current_thread().name)
            time.sleep(0.001)
            return root

        specs.append(leaf)
    snap = execute(plan(TaskGraph.build(specs)), max_workers=3)
    assert all(record.status is TaskStatus.SUCCEEDED for record in snap.records.values())
    assert seen <= {"flowplan_0", "flowplan_1", "flowplan_2"}
    assert len(seen) >= 2  # forty ready leaves: more than one worker took them
    assert _settle() == set()  # every worker ends with the run

    @task
    def alone() -> str:
        return threading.current_thread().name

    one = execute(plan(TaskGraph.build([alone])), max_workers=8)
    assert one.value(alone) == "flowplan_0"  # one task: one thread started, not eight


def test_an_interrupt_drops_queued_tasks_unstarted(registry: Registry) -> None:
    started: list[str] = []

    @task
    def root() -> int:
        return 1

    specs: list[Any] = [root]
    for i in range(6):

        @task(name=f"leaf{i}", depends_on=[root])
        def leaf(root: int) -> int:
            started.append(threading.current_thread().name)
            time.sleep(0.02)
            return root

        specs.append(leaf)

    class Interrupt:
        def on_event(self, event: Event) -> None:
            if isinstance(event, TaskSucceeded) and event.task != "root":
                raise KeyboardInterrupt  # in the scheduling thread, as Ctrl-C

    with pytest.raises(KeyboardInterrupt) as info:
        execute(plan(TaskGraph.build(specs)), max_workers=1, hooks=[Interrupt()])
    snap = info.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert isinstance(snap, Snapshot)
    assert snap.is_complete
    assert _settle() == set()
    assert len(started) <= 2  # the interrupted one, and at most one the worker had taken
    statuses = [snap[f"leaf{i}"].status for i in range(6)]
    assert statuses.count(TaskStatus.CANCELLED) >= 4


def test_an_owned_pool_keeps_fail_fast_and_chains(registry: Registry) -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a + 1

    @task(depends_on=[b])
    def c(b: int) -> int:
        return b + 1

    @task
    def boom() -> None:
        time.sleep(0.05)
        raise ValueError("no")

    @task(depends_on=[boom])
    def after(boom: None) -> None:
        raise AssertionError("must not run")

    recorder = RecordingHook()
    snap = execute(plan(TaskGraph.build([a, b, c, boom, after])), hooks=[recorder])
    assert snap.value(c) == 3
    assert snap[boom].status is TaskStatus.FAILED
    assert snap[after].status is TaskStatus.SKIPPED
    assert isinstance(recorder.events[-1], RunFinished)
    assert recorder.events[-1].status == "failed"
    quiet = execute(plan(TaskGraph.build([a, b, c])), max_workers=2)
    assert quiet.value(c) == 3
    assert _settle() == set()


def test_the_pool_refuses_nothing_and_ends_idle_workers_on_shutdown() -> None:
    ran: list[str] = []
    done = threading.Event()

    def job(run: object, name: str, emit: Any) -> None:
        ran.append(name)
        emit(name)
        if len(ran) == 3:
            done.set()

    emitted: list[Any] = []
    workers = Workers(None, emitted.append, (frozenset({"a"}), job, job), 2)
    workers.submit(["a", "b", "c"])
    assert done.wait(WAIT)
    workers.shutdown()
    assert sorted(ran) == ["a", "b", "c"]
    assert sorted(emitted) == ["a", "b", "c"]
    assert _settle() == set()


@pytest.mark.parametrize("executor", [InlineExecutor(), None], ids=["inline", "threads"])
def test_hooked_runs_see_the_events_their_snapshot_folds_from(
    registry: Registry, executor: InlineExecutor | None
) -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a + 1

    @task(depends_on=[a])
    def bad(a: int) -> int:
        raise ValueError("no")

    recorder = RecordingHook()
    the_plan = plan(TaskGraph.build([a, b, bad]))
    snap = execute(the_plan, executor=executor, hooks=[recorder], fail_fast=False)
    replayed = fold(recorder.events)
    assert dict(replayed.records) == dict(snap.records)
    assert snap[bad].started_at is not None  # its TaskStarted is in the record
    kinds = [(type(e).__name__, getattr(e, "task", None)) for e in recorder.events]
    assert kinds.index(("TaskStarted", "a")) < kinds.index(("TaskSucceeded", "a"))
    assert ("TaskFailed", "bad") in kinds


def test_fast_events_equal_attrs_built_ones_and_stay_frozen() -> None:
    started = _make_started("r", 1.0, "a", 1)
    assert type(started) is TaskStarted
    assert started == TaskStarted("r", 1.0, "a", 1)
    assert repr(started) == repr(TaskStarted("r", 1.0, "a", 1))
    succeeded = _make_succeeded("r", 2.0, "a", 1, [5], 3.0, "key")
    assert succeeded == TaskSucceeded("r", 2.0, "a", 1, [5], 3.0, "key")
    assert attrs.asdict(succeeded) == attrs.asdict(TaskSucceeded("r", 2.0, "a", 1, [5], 3.0, "key"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        started.task = "b"  # type: ignore[misc]


def test_a_first_start_builds_the_record_the_pending_one_would() -> None:
    from flowplan.transitions import _pending, advance

    event = TaskStarted("r", 1.0, "a", 2)
    assert advance(None, event) == advance(_pending("a"), event)
    assert repr(advance(None, event)) == repr(advance(_pending("a"), event))


def test_a_thread_that_cannot_start_leaves_the_queue_to_the_running_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_start = threading.Thread.start
    starts: list[str] = []

    def start(self: threading.Thread) -> None:
        if self.name.startswith("flowplan_") and starts:
            raise RuntimeError("can't start new thread")
        starts.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    ran: list[str] = []
    done = threading.Event()

    def job(run: object, name: str, emit: Any) -> None:
        ran.append(threading.current_thread().name)
        if len(ran) == 4:
            done.set()

    workers = Workers(None, lambda item: None, (frozenset(), job, job), 4)
    workers.submit(["a", "b", "c", "d"])
    assert done.wait(WAIT)
    workers.shutdown()
    assert set(ran) == {"flowplan_0"}  # one thread took all four
    assert starts == ["flowplan_0"]

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start"):
        Workers(None, lambda item: None, (frozenset(), job, job), 4).submit(["x"])
