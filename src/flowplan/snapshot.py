"""Snapshots: the immutable record of every task of a run.

Place in the data flow: spec → graph → plan → interpreter → **snapshot** → store/hooks, and back
into ``plan`` for resume. A :class:`Snapshot` maps task names to :class:`TaskRecord` values. It is
produced by folding events through the pure functions of ``transitions.py``; nothing mutates it.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar, overload

import attrs

from flowplan._suggest import did_you_mean
from flowplan.errors import TaskFailedError, UnknownTaskError
from flowplan.spec import MappedTaskSpec, TaskSpec

__all__ = ["TERMINAL", "ErrorInfo", "Snapshot", "TaskRecord", "TaskStatus"]

T = TypeVar("T")


class TaskStatus(enum.Enum):
    """Where a task is in its life. The last five are terminal.

    ``IN_DOUBT``: an ``effect="at_most_once"`` attempt started and its outcome was lost (a
    crash, an interruption, a timeout): it may or may not have taken effect, so it is not run
    again until ``override``, ``rerun=`` or its ``reconcile`` callback settles it.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    IN_DOUBT = "in_doubt"

    @property
    def is_terminal(self) -> bool:
        """Whether the task can no longer change in this run."""
        return self in TERMINAL


TERMINAL = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.SKIPPED,
        TaskStatus.CANCELLED,
        TaskStatus.IN_DOUBT,
    }
)
"""The statuses a task cannot leave within a run."""


@attrs.frozen
class ErrorInfo:
    """A failure, as plain data that survives serialization.

    Attributes:
        type: the exception's qualified type name, e.g. ``"builtins.ValueError"``.
        message: ``str(exception)``.
        traceback: the formatted traceback text ("" when not available).
        kind: what failed: ``"error"`` (the body raised), ``"timeout"``, ``"validate"``,
            ``"when"``, ``"retry_until"``, ``"serialization"``, ``"interrupted"``, ``"crashed"``,
            ``"reconcile"`` (an in-doubt task's ``reconcile`` callback raised), ``"fan_out"`` (a
            fan-out task's upstream value cannot be mapped over, or an element failed).
        exception: the live exception object, when this process saw it (never serialized).
    """

    type: str
    message: str
    traceback: str = attrs.field(default="", repr=False)
    kind: str = "error"
    exception: BaseException | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException, *, kind: str = "error") -> ErrorInfo:
        """Capture ``exc`` with its traceback text."""
        exc_type = type(exc)
        return cls(
            type=f"{exc_type.__module__}.{exc_type.__qualname__}",
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            kind=kind,
            exception=exc,
        )

    def __str__(self) -> str:
        short = self.type.rsplit(".", 1)[-1]
        return f"{short}: {self.message}" if self.message else short


@attrs.frozen
class TaskRecord:
    """Everything known about one task in one snapshot.

    Attributes:
        name: the task's name.
        status: its :class:`TaskStatus`.
        attempts: attempts started (0 when gates stopped it or it never ran).
        value: the returned value (``has_value`` says whether there is one).
        has_value: ``True`` when ``value`` holds a result (also for a FAILED ``retry_until``).
        error: the failure, for FAILED records.
        started_at: wall-clock time of the first attempt (epoch seconds).
        finished_at: wall-clock time the task became terminal.
        duration_ms: duration of the last attempt.
        reason: why it was skipped, cancelled or failed, in words.
        root_cause: the task whose failure or gate caused this outcome (itself when it failed).
        cached: reused from a journal or cache rather than run in this process.
        step_key: the step key the value was produced under, when keys are in use.
        retry_delays: the backoff delays (seconds) waited before each retry.
        released: the value was freed (``retain_result=False``) once no consumer needed it.
        overridden: the value was supplied by ``override`` rather than computed.
    """

    name: str
    status: TaskStatus
    attempts: int = 0
    value: Any = attrs.field(default=None, repr=False)
    has_value: bool = False
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float = 0.0
    reason: str | None = None
    root_cause: str | None = None
    cached: bool = False
    step_key: str | None = None
    retry_delays: tuple[float, ...] = ()
    released: bool = False
    overridden: bool = False

    @property
    def succeeded(self) -> bool:
        """Whether the task succeeded."""
        return self.status is TaskStatus.SUCCEEDED


def _record_maker() -> Callable[..., TaskRecord]:
    """A private ``TaskRecord(*every_field)`` for the interpreter's hot path.

    The same value as ``TaskRecord(...)`` with every field given positionally, built by setting
    each slot through its member descriptor instead of attrs' ``object.__setattr__`` per field
    (about 25 % cheaper: ~0.6 µs per task on a no-op workload). Generated from
    ``attrs.fields(TaskRecord)``, so it follows the class; immutability is unchanged (the
    class's own ``__setattr__`` still refuses every change). Falls back to the class if a
    field ever gains a validator or converter.
    """
    fields = attrs.fields(TaskRecord)
    if any(f.validator is not None or f.converter is not None for f in fields):
        return TaskRecord  # pragma: no cover - attrs' __init__ must run them
    names = [f.name for f in fields]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": TaskRecord}
    scope.update({f"_set_{n}": TaskRecord.__dict__[n].__set__ for n in names})
    body = "".join(f"    _set_{n}(self, {n})\n" for n in names)
    source = f"def make({', '.join(names)}):\n    self = _new(_cls)\n{body}    return self\n"
    exec(source, scope)  # a fixed source built from the class's own field names
    maker: Callable[..., TaskRecord] = scope["make"]
    return maker


_make_record = _record_maker()


_Ok: TypeAlias = tuple[Any, float, float, float, str | None]
"""A plain task's success as the inline driver keeps it: value, started_at, finished_at,
duration_ms, step_key. Its :class:`TaskRecord` (SUCCEEDED, one attempt, every other field at
its default) is built only when someone reads it: an exact tuple of plain values is one the
garbage collector stops tracking, so a 100,000-task run adds no tracked object per task."""


def ok_record(name: str, ok: _Ok) -> TaskRecord:
    """The :class:`TaskRecord` an ``_Ok`` tuple stands for."""
    value, started_at, finished_at, duration_ms, step_key = ok
    return _make_record(
        name,
        TaskStatus.SUCCEEDED,
        1,
        value,
        True,
        None,
        started_at,
        finished_at,
        duration_ms,
        None,
        None,
        False,
        step_key,
        (),
        False,
        False,
    )


class _Records(Mapping[str, TaskRecord]):
    """A snapshot's records as a run left them: name → record or ``_Ok`` tuple, in run order;
    each tuple becomes its :class:`TaskRecord` on first read (kept: later reads get the same
    object). Read-only from outside; the run that owns ``raw`` stops writing before it hands
    the snapshot out."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, TaskRecord | _Ok]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> TaskRecord:
        record = self._raw[name]
        if type(record) is tuple:
            record = self._raw[name] = ok_record(name, record)
        assert not isinstance(record, tuple)
        return record

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{name!r}: {self[name]!r}' for name in self._raw)}}}"

    def built(self) -> Iterator[tuple[str, TaskRecord | None]]:
        """Each name with its record, or ``None`` for a plain success of this run whose record
        is not built yet (SUCCEEDED, one attempt, nothing else set), building no record."""
        for name, record in self._raw.items():
            yield name, (None if isinstance(record, tuple) else record)

    def statuses(self) -> Iterator[tuple[str, TaskStatus]]:
        """Each name with its record's status, building no record."""
        succeeded = TaskStatus.SUCCEEDED
        for name, record in self._raw.items():
            yield name, (succeeded if isinstance(record, tuple) else record.status)


def _freeze_records(records: Mapping[str, TaskRecord]) -> Mapping[str, TaskRecord]:
    if type(records) is _Records:  # read-only already (a run hands over a dict of its own)
        return records
    return MappingProxyType(dict(records))


@attrs.frozen
class Snapshot:
    """An immutable map of task name → :class:`TaskRecord` for one run.

    ``lineage_id`` is the id of the first run of a chain of resumes (``None``: this run
    started the chain); idempotency keys are derived from it, so they survive a resume.

    >>> done = TaskRecord("a", TaskStatus.SUCCEEDED, value=1, has_value=True)
    >>> snap = Snapshot("run-1", {"a": done})
    >>> snap["a"].status
    <TaskStatus.SUCCEEDED: 'succeeded'>
    >>> snap.value("a")
    1
    """

    run_id: str
    records: Mapping[str, TaskRecord] = attrs.field(
        factory=dict, converter=_freeze_records, hash=False
    )
    lineage_id: str | None = attrs.field(default=None, kw_only=True, eq=False)

    @property
    def lineage(self) -> str:
        """The id of the run that started this chain of resumes (this run's id if none)."""
        return self.lineage_id if self.lineage_id is not None else self.run_id

    def __getitem__(self, task: str | TaskSpec[..., Any]) -> TaskRecord:
        name = task if isinstance(task, str) else task.name
        try:
            return self.records[name]
        except KeyError:
            hint, best = did_you_mean(name, self.records)
            raise UnknownTaskError(
                f"snapshot of run {self.run_id!r} has no task {name!r}; {hint}",
                name=name,
                known=sorted(self.records),
                suggestion=best,
            ) from None

    def get(self, task: str | TaskSpec[..., Any]) -> TaskRecord | None:
        """The task's record, or ``None``."""
        return self.records.get(task if isinstance(task, str) else task.name)

    def __contains__(self, task: object) -> bool:
        if isinstance(task, TaskSpec):
            task = task.name
        return task in self.records

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    # A fan-out task's value is the list of its elements' values: MappedTaskSpec (a TaskSpec
    # subclass) comes first, so it wins over the TaskSpec overloads below.
    @overload
    def value(self, task: MappedTaskSpec[..., Coroutine[Any, Any, T]]) -> list[T]: ...
    @overload
    def value(self, task: MappedTaskSpec[..., T]) -> list[T]: ...
    @overload
    def value(self, task: TaskSpec[..., Coroutine[Any, Any, T]]) -> T: ...
    @overload
    def value(self, task: TaskSpec[..., T]) -> T: ...
    @overload
    def value(self, task: str) -> Any: ...
    def value(self, task: TaskSpec[..., Any] | str) -> Any:
        """The value of a succeeded task, typed by its spec (``list[R]`` for a fan-out task).

        Raises:
            UnknownTaskError: no such task in this snapshot.
            TaskFailedError: the task did not succeed, or its value was released.
        """
        record = self[task]
        if record.status is not TaskStatus.SUCCEEDED:
            cause = f" (root cause: {record.root_cause!r})" if record.root_cause else ""
            detail = f": {record.error}" if record.error else ""
            raise TaskFailedError(
                f"task {record.name!r} did not succeed (status={record.status.value}"
                f"{detail}){cause}; resume the run or override the task to supply a value",
                task=record.name,
                status=record.status.value,
            )
        if record.released:
            raise TaskFailedError(
                f"the value of task {record.name!r} was released because retain_result=False; "
                "set retain_result=True to read it after the run",
                task=record.name,
                status=record.status.value,
            )
        return record.value

    def by_status(self, status: TaskStatus) -> tuple[str, ...]:
        """The names of the tasks with ``status``, in record order."""
        records = self.records
        if type(records) is _Records:  # a run's own records: no record built to answer
            return tuple(name for name, st in records.statuses() if st is status)
        return tuple(name for name, rec in records.items() if rec.status is status)

    @property
    def is_complete(self) -> bool:
        """Whether every recorded task is terminal."""
        records = self.records
        if type(records) is _Records:
            return all(st.is_terminal for _, st in records.statuses())
        return all(rec.status.is_terminal for rec in records.values())

    def root_causes(self) -> Mapping[str, tuple[str, ...]]:
        """Map each root-cause task to the tasks its failure or gate skipped or cancelled."""
        out: dict[str, list[str]] = {}
        for name, rec in self.records.items():
            if rec.root_cause is not None and rec.root_cause != name:
                out.setdefault(rec.root_cause, []).append(name)
        return MappingProxyType({k: tuple(v) for k, v in out.items()})

    def with_record(self, record: TaskRecord) -> Snapshot:
        """A new snapshot with ``record`` added or replaced (copies the mapping: O(n))."""
        records = dict(self.records)
        records[record.name] = record
        return Snapshot(self.run_id, records, lineage_id=self.lineage_id)
