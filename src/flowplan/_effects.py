"""Effects: what a task's body does to the world, and what runs and resumes do about it.

Place in the data flow: spec → graph → **plan** (which records are *in doubt*) and
**interpreter** (idempotency keys, durable starts, ``reconcile``). A task declares
``effect="pure" | "idempotent" | "at_most_once"`` (:data:`flowplan.spec.Effect`):

- ``pure`` and ``idempotent``: running the body twice is harmless, so a retry after a
  timed-out (abandoned) attempt starts at once, as with ``idempotent=True``.
- every declared effect gives each attempt an *idempotency key*
  (:attr:`flowplan.AttemptContext.idempotency_key`): a sha256 of the run's lineage id (the
  first run of a chain of resumes), the task's name and a structural fingerprint of the values
  its body receives. Same lineage, task and inputs → same key, in every attempt, process and
  resume.
- ``at_most_once``: an attempt whose start was recorded but whose outcome was lost (the
  process died, the run was interrupted, the attempt timed out) is *in doubt*: it is never run
  again silently. :func:`in_doubt_reason` says so for the planner.
- a succeeded task whose value was released (``retain_result=False``) and is gone (an
  in-memory snapshot or store; durable stores keep it) when a later run needs it: only a
  ``pure`` task is recomputed; any other is in doubt like a lost outcome, since running it
  again could repeat its effect. :func:`released_reason` says which, for the planner.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import hashlib
import pathlib
import uuid
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from flowplan.errors import IdempotencyKeyError, InvalidOptionError
from flowplan.events import TaskFailed, TaskInDoubt, TaskReused
from flowplan.snapshot import ErrorInfo, TaskRecord, TaskStatus

if TYPE_CHECKING:
    from flowplan.plan import Plan
    from flowplan.spec import TaskSpec

__all__ = [
    "KEYED_EFFECTS",
    "SETTLE_HINT",
    "NotDone",
    "NotDoneType",
    "check_store",
    "idempotency_key",
    "in_doubt_reason",
    "key_inputs",
    "lineage_of",
    "recomputable",
    "released_reason",
    "retry_may_overlap",
    "settle",
    "settle_hint",
]


class NotDoneType(enum.Enum):
    """The type of :data:`NotDone` (an enum, so ``Literal[NotDoneType.NOT_DONE]`` types it)."""

    NOT_DONE = "not_done"

    def __repr__(self) -> str:
        return "flowplan.NotDone"


NotDone: Final = NotDoneType.NOT_DONE
"""Returned by a ``reconcile`` callback: the in-doubt attempt did *not* take effect; run it."""

KEYED_EFFECTS: Final = frozenset({"pure", "idempotent", "at_most_once"})
"""The effects whose attempts carry an idempotency key."""

_LOST_KINDS = frozenset({"crashed", "interrupted", "timeout"})
"""Error kinds of a FAILED record whose attempt started and whose outcome was lost."""


def retry_may_overlap(spec: TaskSpec[..., Any]) -> bool:
    """Whether a retry may start while an abandoned (timed-out) attempt still runs.

    True for ``idempotent=True`` and for ``effect="pure"`` / ``effect="idempotent"``.
    """
    return spec.idempotent or spec.effect in ("pure", "idempotent")


def in_doubt_reason(spec: TaskSpec[..., Any], record: TaskRecord | None) -> str | None:
    """Why ``spec``'s earlier ``record`` leaves its effect in doubt, or ``None`` if it does not.

    A record already IN_DOUBT (settled by nothing since) stays in doubt, whatever the task's
    effect but ``pure`` (a released value makes any non-pure task in doubt, see
    :func:`released_reason`). Otherwise only ``effect="at_most_once"`` tasks are in doubt: a
    record still RUNNING (the process running it stopped), or a FAILED record whose started
    attempt was crashed, interrupted or timed out.
    """
    if record is None:
        return None
    status = record.status
    if status is TaskStatus.IN_DOUBT and spec.effect != "pure":
        return f"still in doubt ({record.reason})" if record.reason else "still in doubt"
    if spec.effect != "at_most_once":
        return None
    if status is TaskStatus.RUNNING:
        return (
            f"attempt {record.attempts} started and no outcome was recorded (the process "
            "running it stopped); it may have taken effect"
        )
    error = record.error
    started = record.attempts >= 1 or record.started_at is not None
    if status is TaskStatus.FAILED and error is not None and error.kind in _LOST_KINDS and started:
        return (
            f"attempt {record.attempts} started and its outcome was lost ({error.kind}: "
            f"{error}); it may have taken effect"
        )
    return None


def check_store(plan: Plan, store: object | None) -> frozenset[str]:
    """The planned ``at_most_once`` tasks; refuse a store that cannot record their starts.

    A store declares ``records_starts = False`` when it keeps only finished results (the
    JSON-lines journal); a store without the attribute records starts (the protocol saves a
    record when an attempt starts).

    Raises:
        InvalidOptionError: an ``at_most_once`` task would run with such a store.
    """
    specs = plan.graph.specs
    names = [n for n in plan.to_run if n in specs and specs[n].effect == "at_most_once"]
    if names and store is not None and not getattr(store, "records_starts", True):
        first = names[0]
        raise InvalidOptionError(
            f"task {first!r} has effect='at_most_once', but the store {type(store).__name__} "
            "cannot record that an attempt started (it keeps finished results only): a crash "
            "mid-attempt would go unnoticed and the task would silently run twice. Expected a "
            "store that records starts (SqliteStateStore, MemoryStore). Fix: use "
            "SqliteStateStore, or declare effect='idempotent' if running twice is harmless",
            option="effect",
            value="at_most_once",
            task=first,
        )
    return frozenset(names)


SETTLE_HINT = "settle it with override(), rerun= or a reconcile= callback"


def settle_hint(spec: TaskSpec[..., Any]) -> str:
    """How to settle ``spec`` in doubt (``reconcile=`` is for ``at_most_once`` tasks only)."""
    if spec.effect == "at_most_once":
        return SETTLE_HINT
    return "settle it with override() or rerun="


def recomputable(spec: TaskSpec[..., Any]) -> bool:
    """Whether a succeeded task whose released value is gone may simply run again.

    Only ``effect="pure"`` says that running the body again is harmless; with any other effect
    (or none declared) a second run could repeat what the first did.
    """
    return spec.effect == "pure"


def released_reason(spec: TaskSpec[..., Any], consumer: str) -> str:
    """Why a succeeded ``spec`` whose value was released (``retain_result=False``) and is gone
    runs again (``pure``) or is in doubt (any other effect), now that ``consumer`` needs it."""
    gone = f"its value was released (retain_result=False) and {consumer!r} needs it"
    if recomputable(spec):
        return f"{gone}; effect='pure': recomputed"
    declared = f"effect={spec.effect!r}" if spec.effect is not None else "no effect declared"
    fixes = "plan from a store that keeps values (store.load(run_id) of SqliteStateStore)"
    if spec.effect != "at_most_once":
        fixes = f"{fixes}, or declare effect='pure' if running it again is harmless"
    return (
        f"succeeded earlier, but {gone}; running it again could repeat its effect "
        f"({declared}), so it is not run again silently: {fixes}"
    )


def settle(
    spec: TaskSpec[..., Any],
    gate_kwargs: Mapping[str, Any],
    earlier: TaskRecord,
    reason: str,
    *,
    run_id: str,
    step_key: str | None,
    clock: Callable[[], float],
) -> Generator[TaskInDoubt | TaskFailed | TaskReused, object, bool]:
    """Settle an in-doubt task; return whether it is settled (``False``: run it).

    Without ``reconcile`` it stays IN_DOUBT. Otherwise ``reconcile(**dependency values)`` is
    called: ``NotDone`` → run it; any other value → SUCCEEDED with that value (the lost
    attempt took effect; a :class:`TaskReused` carries the record); raising → FAILED
    (kind ``"reconcile"``).
    """
    name = spec.name
    if spec.reconcile is None:
        hint = settle_hint(spec)
        yield TaskInDoubt(run_id, clock(), name, earlier.attempts, f"{reason}; {hint}")
        return True
    try:
        verdict = spec.reconcile(**gate_kwargs)
    except Exception as exc:
        info = ErrorInfo.from_exception(exc, kind="reconcile")
        why = f"reconcile() raised {type(exc).__name__}: {exc} (the task was in doubt: {reason})"
        yield TaskFailed(run_id, clock(), name, earlier.attempts, info, why)
        return True
    if verdict is NotDone:
        return False
    now = clock()
    record = TaskRecord(
        name,
        TaskStatus.SUCCEEDED,
        attempts=earlier.attempts,
        value=verdict,
        has_value=True,
        started_at=earlier.started_at,
        finished_at=now,
        reason=f"reconcile() reported that the in-doubt attempt took effect ({reason})",
        step_key=step_key,
    )
    yield TaskReused(run_id, now, name, record)
    return True


# -- idempotency keys ---------------------------------------------------------------------

_lineages: dict[str, str] = {}
"""Live resumed runs: run id → lineage id (a fresh run's lineage is its own id). Set and
cleared by the interpreter's run state machine; read where attempts build their context."""


def register_lineage(run_id: str, lineage: str) -> None:
    """Remember a live run's lineage id (only resumed runs need an entry)."""
    if lineage != run_id:
        _lineages[run_id] = lineage


def forget_lineage(run_id: str) -> None:
    """Drop a finished run's lineage entry."""
    _lineages.pop(run_id, None)


def lineage_of(run_id: str) -> str:
    """The lineage id of the live run ``run_id`` (its own id unless it is a resume)."""
    return _lineages.get(run_id, run_id)


def key_inputs(spec: TaskSpec[..., Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The values an idempotency key is derived from: the body's arguments but its context."""
    return {k: v for k, v in kwargs.items() if k != spec.context_param}


_VERSION = b"flowplan-idempotency-key-v1"
_BY_REPR = (
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    fractions.Fraction,
    uuid.UUID,
    pathlib.PurePath,
)
_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(8, "big") + payload


def _text(value: str) -> bytes:
    return _frame(b"s", value.encode("utf-8", "surrogatepass"))


def _type(value: object) -> bytes:
    tp = type(value)
    return _text(f"{tp.__module__}.{tp.__qualname__}")


def _encode(value: object, task: str, path: str, active: list[int]) -> bytes:
    """Encode ``value`` structurally; raise :class:`IdempotencyKeyError` if it cannot be."""
    tp = type(value)
    if tp in _SCALARS:
        if tp is float:
            return _frame(b"f", float.hex(value).encode())  # type: ignore[arg-type]
        if tp is bytes:
            return _frame(b"b", value)  # type: ignore[arg-type]
        return _frame(b"r", _type(value) + _text(repr(value)))
    if isinstance(value, enum.Enum):
        return _frame(b"e", _type(value) + _text(value.name))
    if isinstance(value, _BY_REPR):
        return _frame(b"v", _type(value) + _text(repr(value)))
    if id(value) in active:
        raise _unkeyable(task, path, value, "it contains itself")
    active.append(id(value))
    try:
        if isinstance(value, Mapping):
            items = sorted(
                _encode(k, task, f"{path}[{k!r}]", active)
                + _encode(v, task, f"{path}[{k!r}]", active)
                for k, v in value.items()
            )
            return _frame(b"d", _type(value) + b"".join(items))
        if isinstance(value, tuple | list):
            parts = [_encode(v, task, f"{path}[{i}]", active) for i, v in enumerate(value)]
            return _frame(b"l", _type(value) + b"".join(parts))
        if isinstance(value, set | frozenset):
            parts = sorted(_encode(v, task, f"{path}{{…}}", active) for v in value)
            return _frame(b"t", _type(value) + b"".join(parts))
        names: list[str] | None = None
        if dataclasses.is_dataclass(value):
            names = [f.name for f in dataclasses.fields(value)]
        elif attrs.has(tp):
            names = [a.name for a in attrs.fields(tp)]
        if names is not None:
            parts = [
                _text(n) + _encode(getattr(value, n), task, f"{path}.{n}", active) for n in names
            ]
            return _frame(b"o", _type(value) + b"".join(parts))
    finally:
        active.pop()
    raise _unkeyable(task, path, value, "it has no stable fingerprint")


def _unkeyable(task: str, path: str, value: object, why: str) -> IdempotencyKeyError:
    tp = type(value)
    name = f"{tp.__module__}.{tp.__qualname__}"
    return IdempotencyKeyError(
        f"task {task!r}: cannot derive an idempotency key: input {path} is a {name} and {why}; "
        "expected plain data (None, bool, int, float, str, bytes, lists, tuples, dicts, sets, "
        "enums, dates, decimals, UUIDs, paths, dataclass or attrs instances of those). Fix: "
        "have the upstream task return plain data, or build your own key from the inputs",
        task=task,
        value_type=name,
        path=path,
    )


def idempotency_key(lineage: str, task: str, inputs: Mapping[str, Any]) -> str:
    """The idempotency key of ``task``'s attempts in run lineage ``lineage`` on ``inputs``.

    Args:
        lineage: the lineage id (the first run of the chain of resumes).
        task: the task's name.
        inputs: the values the body receives (:func:`key_inputs`).

    Returns:
        64 hex characters (sha256), identical across attempts, processes and resumes.

    Raises:
        IdempotencyKeyError: an input has no stable structural fingerprint.
    """
    parts = [_VERSION, _text(lineage), _text(task)]
    parts.extend(_text(name) + _encode(inputs[name], task, name, []) for name in sorted(inputs))
    return hashlib.sha256(b"".join(parts)).hexdigest()


class LazyKey:
    """An attempt's idempotency key, computed on first use (most bodies never ask)."""

    __slots__ = ("_inputs", "_lineage", "_task", "_value")

    def __init__(self, lineage: str, task: str, inputs: Mapping[str, Any]) -> None:
        self._lineage = lineage
        self._task = task
        self._inputs = inputs
        self._value: str | None = None

    def __call__(self) -> str:
        if self._value is None:
            self._value = idempotency_key(self._lineage, self._task, self._inputs)
        return self._value


def key_for(
    spec: TaskSpec[..., Any], run_id: str, kwargs: Mapping[str, Any]
) -> Callable[[], str] | None:
    """The lazy idempotency key of an attempt of ``spec`` in live run ``run_id``, if keyed."""
    if spec.effect not in KEYED_EFFECTS:
        return None
    return LazyKey(lineage_of(run_id), spec.name, key_inputs(spec, kwargs))
