"""Pure transitions: ``(record, event) -> record`` and ``(snapshot, event) -> snapshot``.

Place in the data flow: between the interpreter's events and the :class:`Snapshot`. The
interpreter applies :func:`advance` per event (O(1)); :func:`fold` replays a whole event list
into a snapshot, so a snapshot is always a fold over its run's events and the same events give
the same snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskInDoubt,
    TaskReleased,
    TaskRetrying,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
)
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus, _make_record

__all__ = ["advance", "apply", "fold"]


_PENDING = TaskStatus.PENDING
_RUNNING = TaskStatus.RUNNING
_SUCCEEDED = TaskStatus.SUCCEEDED


def _pending(name: str) -> TaskRecord:
    """``TaskRecord(name, TaskStatus.PENDING)``, built faster (the hot path's first record)."""
    return _make_record(
        name,
        _PENDING,
        0,
        None,
        False,
        None,
        None,
        None,
        0.0,
        None,
        None,
        False,
        None,
        (),
        False,
        False,
    )


def advance(record: TaskRecord | None, event: TaskEvent) -> TaskRecord:
    """The record of ``event.task`` after ``event`` (pure; ``record`` is not changed).

    The interpreter calls this for every event, so the two hot cases (a start and a success)
    build the new record with one constructor call instead of ``attrs.evolve``.

    >>> from flowplan.events import TaskStarted
    >>> advance(None, TaskStarted("r", 1.0, "a", attempt=1)).status
    <TaskStatus.RUNNING: 'running'>
    """
    cls = type(event)
    if record is None:
        if cls is TaskStarted:  # == advance(_pending(task), event), one record instead of two
            assert isinstance(event, TaskStarted)
            return _make_record(
                event.task,
                _RUNNING,
                event.attempt,
                None,
                False,
                None,
                event.time,
                None,
                0.0,
                None,
                None,
                False,
                None,
                (),
                False,
                False,
            )
        if isinstance(event, TaskReused):
            return event.record
        record = _pending(event.task)
    if cls is TaskStarted:
        assert isinstance(event, TaskStarted)
        return _make_record(  # == TaskRecord(...) with every field, built faster
            record.name,
            _RUNNING,
            event.attempt,
            record.value,
            record.has_value,
            record.error,
            record.started_at if record.started_at is not None else event.time,
            None,
            record.duration_ms,
            record.reason,
            record.root_cause,
            record.cached,
            record.step_key,
            record.retry_delays,
            record.released,
            record.overridden,
        )
    if cls is TaskSucceeded:
        assert isinstance(event, TaskSucceeded)
        return _make_record(
            record.name,
            _SUCCEEDED,
            event.attempt,
            event.value,
            True,
            None,
            record.started_at,
            event.time,
            event.duration_ms,
            record.reason,
            record.root_cause,
            record.cached,
            event.step_key,
            record.retry_delays,
            False,
            record.overridden,
        )
    if isinstance(event, TaskReused):
        return event.record
    if isinstance(event, TaskRetrying):
        return attrs.evolve(
            record,
            error=event.error,
            duration_ms=event.duration_ms,
            retry_delays=(*record.retry_delays, event.delay_s),
        )
    if isinstance(event, TaskFailed):
        return attrs.evolve(
            record,
            status=TaskStatus.FAILED,
            attempts=event.attempt,
            error=event.error,
            value=event.value,
            has_value=event.has_value,
            finished_at=event.time,
            duration_ms=event.duration_ms,
            reason=event.reason,
            root_cause=event.task,
        )
    if isinstance(event, TaskInDoubt):
        return attrs.evolve(
            record,
            status=TaskStatus.IN_DOUBT,
            attempts=max(record.attempts, event.attempt),
            finished_at=event.time,
            reason=event.reason,
            root_cause=event.task,
        )
    if isinstance(event, TaskSkipped):
        return attrs.evolve(
            record,
            status=TaskStatus.SKIPPED,
            finished_at=event.time,
            reason=event.reason,
            root_cause=event.root_cause,
        )
    if isinstance(event, TaskCancelled):
        return attrs.evolve(
            record,
            status=TaskStatus.CANCELLED,
            finished_at=event.time,
            reason=event.reason,
            root_cause=event.root_cause,
        )
    if isinstance(event, TaskReleased):
        return attrs.evolve(record, value=None, has_value=False, released=True)
    if isinstance(event, TaskTimedOut):
        return record  # informational: a TaskRetrying or TaskFailed follows
    raise TypeError(f"not a task event: {event!r}")  # pragma: no cover - exhaustive above


def apply(snapshot: Snapshot, event: Event) -> Snapshot:
    """The snapshot after ``event`` (pure; copies the mapping, so O(n) — use :func:`fold`)."""
    return fold((event,), snapshot)


def fold(events: Iterable[Event], initial: Snapshot | None = None) -> Snapshot:
    """Replay ``events`` over ``initial`` (default: empty) into a new snapshot in O(events).

    >>> from flowplan.events import RunStarted, TaskStarted, TaskSucceeded
    >>> snap = fold([RunStarted("r", 0.0, pending=("a",)),
    ...              TaskStarted("r", 1.0, "a", 1), TaskSucceeded("r", 2.0, "a", 1, value=7)])
    >>> snap.value("a")
    7
    """
    run_id = initial.run_id if initial is not None else ""
    records: dict[str, TaskRecord] = dict(initial.records) if initial is not None else {}
    for event in events:
        if isinstance(event, RunStarted):
            run_id = event.run_id
            for name in event.pending:
                records[name] = TaskRecord(name, TaskStatus.PENDING)
        elif isinstance(event, RunFinished):
            run_id = event.run_id
        else:
            records[event.task] = advance(records.get(event.task), event)
    return Snapshot(run_id, records)
