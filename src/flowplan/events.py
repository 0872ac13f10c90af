"""Events: the one typed stream a run produces, as frozen values.

Place in the data flow: the interpreter emits events; ``transitions.py`` folds them into a
:class:`~flowplan.snapshot.Snapshot`; hooks (``hooks.py``) and stores observe them. Every event
carries ``run_id`` and wall-clock ``time``; task events also carry ``task``.
"""

from __future__ import annotations

from typing import Any

import attrs

from flowplan.snapshot import ErrorInfo, TaskRecord

__all__ = [
    "Event",
    "RunFinished",
    "RunStarted",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskInDoubt",
    "TaskReleased",
    "TaskRetrying",
    "TaskReused",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
    "TaskTimedOut",
]


@attrs.frozen
class RunStarted:
    """A run began: ``pending`` tasks will run, ``reused`` come from an earlier snapshot."""

    run_id: str
    time: float
    pending: tuple[str, ...]
    reused: tuple[str, ...] = ()


@attrs.frozen
class RunFinished:
    """A run ended; ``status`` is ``"succeeded"`` or ``"failed"`` (detached failures excluded)."""

    run_id: str
    time: float
    status: str
    counts: tuple[tuple[str, int], ...] = ()
    duration_ms: float = 0.0


@attrs.frozen
class TaskReused:
    """A task's record was carried over (succeeded earlier, journal hit, or override), or an
    in-doubt task's ``reconcile`` callback reported that its lost attempt took effect."""

    run_id: str
    time: float
    task: str
    record: TaskRecord = attrs.field(repr=False)


@attrs.frozen
class TaskStarted:
    """An attempt of a task started (``attempt`` is 1-based)."""

    run_id: str
    time: float
    task: str
    attempt: int


@attrs.frozen
class TaskSucceeded:
    """A task succeeded with ``value``."""

    run_id: str
    time: float
    task: str
    attempt: int
    value: Any = attrs.field(repr=False)
    duration_ms: float = 0.0
    step_key: str | None = None


@attrs.frozen
class TaskTimedOut:
    """An attempt exceeded ``timeout_s`` and was abandoned (a retry or failure follows)."""

    run_id: str
    time: float
    task: str
    attempt: int
    timeout_s: float


@attrs.frozen
class TaskRetrying:
    """An attempt failed and another follows after ``delay_s``."""

    run_id: str
    time: float
    task: str
    attempt: int
    error: ErrorInfo
    delay_s: float
    duration_ms: float = 0.0


@attrs.frozen
class TaskFailed:
    """A task failed for good. ``has_value`` holds for an exhausted ``retry_until``."""

    run_id: str
    time: float
    task: str
    attempt: int
    error: ErrorInfo
    reason: str
    duration_ms: float = 0.0
    value: Any = attrs.field(default=None, repr=False)
    has_value: bool = False
    fatal: bool = False


@attrs.frozen
class TaskInDoubt:
    """An ``effect="at_most_once"`` task's attempt may or may not have taken effect.

    Its outcome was lost (a crash or interruption, seen on resume) or its attempt timed out
    and may still run; the task is not run again until ``override``, ``rerun=`` or its
    ``reconcile`` callback settles it. ``attempt`` is the attempt in doubt.
    """

    run_id: str
    time: float
    task: str
    attempt: int
    reason: str


@attrs.frozen
class TaskSkipped:
    """A task will not run: its ``when=`` gate was falsy or an upstream did not succeed."""

    run_id: str
    time: float
    task: str
    reason: str
    root_cause: str


@attrs.frozen
class TaskCancelled:
    """A task never started because the run stopped early (fail-fast or interruption)."""

    run_id: str
    time: float
    task: str
    reason: str
    root_cause: str | None


@attrs.frozen
class TaskReleased:
    """A task's value was freed (``retain_result=False``): every consumer has succeeded."""

    run_id: str
    time: float
    task: str


TaskEvent = (
    TaskReused
    | TaskStarted
    | TaskSucceeded
    | TaskTimedOut
    | TaskRetrying
    | TaskFailed
    | TaskInDoubt
    | TaskSkipped
    | TaskCancelled
    | TaskReleased
)
Event = RunStarted | RunFinished | TaskEvent
