"""Events: the one typed stream a run produces, as frozen values.

Place in the data flow: the interpreter emits events; ``transitions.py`` folds them into a
:class:`~flowplan.snapshot.Snapshot`; hooks (``hooks.py``) and stores observe them. Every event
carries ``run_id`` and wall-clock ``time``; task events also carry ``task``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

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
    """A run began: ``pending`` tasks will run, ``reused`` come from an earlier snapshot;
    ``resumed_from`` is the run id of that snapshot (``None`` for a fresh run)."""

    run_id: str
    time: float
    pending: tuple[str, ...]
    reused: tuple[str, ...] = ()
    resumed_from: str | None = None


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
    in-doubt task's ``reconcile`` callback reported that its lost attempt took effect.

    ``code_changed`` says why, when the record was made under another step key than the
    task's code gives now (``"its code changed"``, ``"upstream 'load' changed"``; see
    :attr:`flowplan.Plan.code_changed`): the value is reused although the code that made it
    changed. ``None`` otherwise.
    """

    run_id: str
    time: float
    task: str
    record: TaskRecord = attrs.field(repr=False)
    code_changed: str | None = None


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


_E = TypeVar("_E")


def _event_maker(cls: type[_E]) -> Callable[..., _E]:
    """A private ``cls(*every_field)`` for the drivers' hot path (the events of a plain task).

    The same value as ``cls(...)`` with every field given positionally, built by setting each
    slot through its member descriptor instead of attrs' ``object.__setattr__`` per field (the
    trick of ``snapshot._make_record``). Generated from ``attrs.fields(cls)``, so it follows the
    class; the class's own ``__setattr__`` still refuses every change. Falls back to the class
    if a field ever gains a validator or converter.
    """
    fields = attrs.fields(cls)  # type: ignore[arg-type]  # any attrs class
    if any(f.validator is not None or f.converter is not None for f in fields):
        return cls  # pragma: no cover - attrs' __init__ must run them
    names = [f.name for f in fields]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{n}": cls.__dict__[n].__set__ for n in names})
    body = "".join(f"    _set_{n}(self, {n})\n" for n in names)
    source = f"def make({', '.join(names)}):\n    self = _new(_cls)\n{body}    return self\n"
    exec(source, scope)  # a fixed source built from the class's own field names
    maker: Callable[..., _E] = scope["make"]
    return maker


_make_started: Callable[[str, float, str, int], TaskStarted] = _event_maker(TaskStarted)
"""``TaskStarted(run_id, time, task, attempt)``, built faster."""
_make_succeeded: Callable[[str, float, str, int, Any, float, str | None], TaskSucceeded] = (
    _event_maker(TaskSucceeded)
)
"""``TaskSucceeded(run_id, time, task, attempt, value, duration_ms, step_key)``, built faster."""
