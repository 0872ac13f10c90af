"""Tests for snapshots, pure transitions and folding events into snapshots."""

from __future__ import annotations

import attrs
import pytest

from flowplan import (
    ErrorInfo,
    Event,
    InlineExecutor,
    RecordingHook,
    Registry,
    RunFinished,
    RunStarted,
    Snapshot,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskFailedError,
    TaskGraph,
    TaskRecord,
    TaskReleased,
    TaskRetrying,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskStatus,
    TaskSucceeded,
    TaskTimedOut,
    UnknownTaskError,
    advance,
    execute,
    fold,
    plan,
    task,
)
from flowplan.transitions import apply

BOOM = ErrorInfo("builtins.ValueError", "boom", kind="error")


def test_fold_of_the_recorded_events_is_the_returned_snapshot(registry: Registry) -> None:
    outcomes = iter([True, False])

    @task(retain_result=False)
    def source() -> list[int]:
        return [1, 2]

    @task(depends_on=[source], retry=1, retry_backoff_base_ms=0)
    def flaky(source: list[int]) -> int:
        if next(outcomes):
            raise ConnectionError("again")
        return sum(source)

    @task(depends_on=[flaky], when=lambda flaky: False)
    def gated(flaky: int) -> None:
        pass

    @task(depends_on=[gated])
    def below_gate(gated: None) -> None:
        pass

    @task(depends_on=[flaky])
    def bad(flaky: int) -> None:
        raise ValueError("boom")

    @task
    def independent() -> str:
        return "x"

    @task(depends_on=[flaky], detached=True)
    def side(flaky: int) -> str:
        return "side"

    graph = TaskGraph.build([source, flaky, gated, below_gate, bad, independent, side])
    recorder = RecordingHook()
    snap = execute(plan(graph), executor=InlineExecutor(), hooks=[recorder], fail_fast=False)
    folded = fold(recorder.events)
    assert folded == snap
    assert dict(folded.records) == dict(snap.records)
    assert folded.run_id == snap.run_id
    assert snap[source].released  # the release is an event too

    # Resume: reused records arrive as events, and the fold starts from nothing again.
    recorder2 = RecordingHook()
    resumed = execute(
        plan(graph, snap, overrides={"bad": None}), executor=InlineExecutor(), hooks=[recorder2]
    )
    assert fold(recorder2.events) == resumed
    # A fold may also continue from an earlier snapshot.
    expected = dict(snap.records)
    expected.update(resumed.records)
    assert fold(recorder2.events, snap).records == expected


def test_advance_walks_a_record_through_its_life() -> None:
    started = advance(None, TaskStarted("r", 1.0, "t", 1))
    assert (started.name, started.status, started.attempts, started.started_at) == (
        "t",
        TaskStatus.RUNNING,
        1,
        1.0,
    )
    retrying = advance(started, TaskRetrying("r", 2.0, "t", 1, BOOM, 0.5, 3.0))
    assert retrying.status is TaskStatus.RUNNING
    assert retrying.retry_delays == (0.5,)
    assert retrying.error == BOOM
    timed = advance(retrying, TaskTimedOut("r", 2.5, "t", 1, 0.1))
    assert timed == retrying  # informational
    again = advance(timed, TaskStarted("r", 3.0, "t", 2))
    assert again.started_at == 1.0  # the first attempt's start is kept
    assert again.attempts == 2
    done = advance(again, TaskSucceeded("r", 4.0, "t", 2, {"v": 1}, 7.0, "key"))
    assert (done.status, done.value, done.has_value, done.error) == (
        TaskStatus.SUCCEEDED,
        {"v": 1},
        True,
        None,
    )
    assert (done.finished_at, done.duration_ms, done.step_key) == (4.0, 7.0, "key")
    assert done.retry_delays == (0.5,)
    released = advance(done, TaskReleased("r", 5.0, "t"))
    assert (released.status, released.value, released.has_value, released.released) == (
        TaskStatus.SUCCEEDED,
        None,
        False,
        True,
    )


def test_advance_failures_skips_cancellations_and_reuse() -> None:
    failed = advance(None, TaskFailed("r", 1.0, "t", 2, BOOM, "raised", 3.0, 9, True))
    assert (failed.status, failed.root_cause, failed.reason, failed.value, failed.has_value) == (
        TaskStatus.FAILED,
        "t",
        "raised",
        9,
        True,
    )
    skipped = advance(None, TaskSkipped("r", 1.0, "u", "upstream 't' failed", "t"))
    assert (skipped.status, skipped.root_cause, skipped.finished_at) == (
        TaskStatus.SKIPPED,
        "t",
        1.0,
    )
    cancelled = advance(None, TaskCancelled("r", 1.0, "v", "fail-fast", "t"))
    assert (cancelled.status, cancelled.root_cause) == (TaskStatus.CANCELLED, "t")
    carried = TaskRecord("w", TaskStatus.SUCCEEDED, value=1, has_value=True)
    assert advance(None, TaskReused("r", 1.0, "w", carried)) is carried


def test_advance_is_pure() -> None:
    record = TaskRecord("t", TaskStatus.RUNNING, attempts=1, started_at=1.0)
    copy = attrs.evolve(record)
    events: list[TaskEvent] = [
        TaskStarted("r", 2.0, "t", 2),
        TaskSucceeded("r", 2.0, "t", 1, 5),
        TaskRetrying("r", 2.0, "t", 1, BOOM, 1.0),
        TaskFailed("r", 2.0, "t", 1, BOOM, "x"),
        TaskSkipped("r", 2.0, "t", "x", "u"),
        TaskCancelled("r", 2.0, "t", "x", None),
        TaskReleased("r", 2.0, "t"),
    ]
    results = [advance(record, event) for event in events]
    assert record == copy
    assert [advance(record, event) for event in events] == results  # same in, same out


def test_apply_and_fold_are_pure() -> None:
    snap = Snapshot("r", {"a": TaskRecord("a", TaskStatus.PENDING)})
    after = apply(snap, TaskStarted("r", 1.0, "a", 1))
    assert snap["a"].status is TaskStatus.PENDING
    assert after["a"].status is TaskStatus.RUNNING
    events: list[Event] = [
        RunStarted("r2", 0.0, ("a", "b")),
        TaskStarted("r2", 1.0, "a", 1),
        TaskSucceeded("r2", 2.0, "a", 1, 3),
        RunFinished("r2", 3.0, "failed"),
    ]
    folded = fold(events)
    assert folded.run_id == "r2"
    assert folded["b"].status is TaskStatus.PENDING
    assert folded.value("a") == 3
    assert fold(events) == folded


def test_snapshot_is_immutable() -> None:
    records = {"a": TaskRecord("a", TaskStatus.SUCCEEDED, value=1, has_value=True)}
    snap = Snapshot("r", records)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap.run_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.records["b"] = TaskRecord("b", TaskStatus.PENDING)  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap["a"].value = 2  # type: ignore[misc]
    records["b"] = TaskRecord("b", TaskStatus.PENDING)  # the snapshot holds its own copy
    assert "b" not in snap
    bigger = snap.with_record(TaskRecord("c", TaskStatus.FAILED))
    assert "c" in bigger
    assert "c" not in snap


def test_snapshot_reading(registry: Registry) -> None:
    @task
    def a() -> int:
        return 1

    records = {
        "a": TaskRecord("a", TaskStatus.SUCCEEDED, value=1, has_value=True),
        "b": TaskRecord("b", TaskStatus.FAILED, error=BOOM, root_cause="b"),
        "c": TaskRecord("c", TaskStatus.SKIPPED, root_cause="b"),
        "d": TaskRecord("d", TaskStatus.CANCELLED, root_cause="b"),
        "e": TaskRecord("e", TaskStatus.RUNNING),
    }
    snap = Snapshot("r", records)
    assert snap.value(a) == 1
    assert snap[a] is records["a"]
    assert snap.get("zzz") is None
    assert snap.get(a) is records["a"]
    assert a in snap
    assert "b" in snap
    assert list(snap) == ["a", "b", "c", "d", "e"]
    assert len(snap) == 5
    assert snap.by_status(TaskStatus.FAILED) == ("b",)
    assert not snap.is_complete
    assert snap.root_causes() == {"b": ("c", "d")}
    assert snap["a"].succeeded
    assert not snap["b"].succeeded


def test_value_errors_are_typed_and_teach() -> None:
    released = TaskRecord("big", TaskStatus.SUCCEEDED, released=True)
    snap = Snapshot(
        "run-7",
        {
            "load": TaskRecord("load", TaskStatus.FAILED, error=BOOM, root_cause="load"),
            "report": TaskRecord("report", TaskStatus.SKIPPED, root_cause="load"),
            "big": released,
        },
    )
    with pytest.raises(UnknownTaskError, match="did you mean 'load'") as unknown:
        snap.value("laod")
    assert unknown.value.suggestion == "load"
    assert unknown.value.known == ("big", "load", "report")
    assert "run-7" in str(unknown.value)

    with pytest.raises(TaskFailedError) as failed:
        snap.value("load")
    assert (failed.value.task, failed.value.status) == ("load", "failed")
    assert "status=failed: ValueError: boom" in str(failed.value)
    assert "root cause: 'load'" in str(failed.value)

    with pytest.raises(TaskFailedError) as skipped:
        snap.value("report")
    assert skipped.value.status == "skipped"
    assert "root cause: 'load'" in str(skipped.value)

    with pytest.raises(TaskFailedError, match="released because retain_result=False") as gone:
        snap.value("big")
    assert gone.value.status == "succeeded"


def test_error_info_captures_exceptions() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        info = ErrorInfo.from_exception(exc, kind="validate")
    assert info.type == "builtins.KeyError"
    assert info.message == "'missing'"
    assert info.kind == "validate"
    assert "Traceback (most recent call last)" in info.traceback
    assert isinstance(info.exception, KeyError)
    assert str(info) == "KeyError: 'missing'"
    # The live exception does not take part in equality (it never survives a store).
    assert info == attrs.evolve(info, exception=None)
    assert str(ErrorInfo("mod.Custom", "")) == "Custom"


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (TaskStatus.PENDING, False),
        (TaskStatus.RUNNING, False),
        (TaskStatus.SUCCEEDED, True),
        (TaskStatus.FAILED, True),
        (TaskStatus.SKIPPED, True),
        (TaskStatus.CANCELLED, True),
    ],
)
def test_terminal_statuses(status: TaskStatus, terminal: bool) -> None:
    assert status.is_terminal is terminal
