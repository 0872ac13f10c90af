"""The SQLite schema and the codec between rows and flowplan values.

Place in the data flow: store (SQLite). ``encode_record`` turns a
:class:`~flowplan.snapshot.TaskRecord` into a ``tasks`` row (its value through the store's
serializer), ``decode_record`` turns a row back, and :class:`RunInfo` is a ``runs`` row.
Columns are plain SQL types, so a run can be inspected with the ``sqlite3`` shell.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from flowplan.errors import SerializationError
from flowplan.plan import Action, Plan
from flowplan.snapshot import ErrorInfo, TaskRecord, TaskStatus
from flowplan.store._serializers import JsonSerializer, PickleSerializer, ResultSerializer
from flowplan.store._sqltext import text, text_or_none

__all__ = [
    "INSERT_TASK_IF_MISSING",
    "LARGE_PAYLOAD",
    "PAYLOAD",
    "RUN_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SELECT_TASKS",
    "START_TASK",
    "TASK_COLUMNS",
    "UPSERT_TASK",
    "DamagedRowError",
    "LargePayload",
    "Row",
    "RunInfo",
    "damaged_run_info",
    "decode_record",
    "dump_names",
    "encode_record",
    "pending_row",
    "planned_tasks",
    "run_info",
    "start_params",
]

SCHEMA_VERSION = 3
"""1: runs and tasks. 2: + ``run_owners`` (run ownership, ``_owners.py``). 3: ``bytes``/
``bytearray`` values stored as themselves (``has_value`` 2/3) and payloads over
:data:`LARGE_PAYLOAD` in ``task_values`` — rows an older flowplan would misread, so it refuses
the file as newer. An older file is migrated on open (the tables it lacks are created, the
version raised; its rows are read as they are)."""
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS flowplan_schema (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, dag_name TEXT, "
    "tasks TEXT NOT NULL, detached TEXT NOT NULL, targets TEXT, resumed_from TEXT, "
    "created_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL, owner_pid INTEGER, "
    "owner_token TEXT, owner_host TEXT)",
    "CREATE TABLE IF NOT EXISTS tasks (run_id TEXT NOT NULL, name TEXT NOT NULL, "
    "status TEXT NOT NULL, attempts INTEGER NOT NULL, payload BLOB, has_value INTEGER NOT NULL, "
    "released INTEGER NOT NULL, error_type TEXT, error_message TEXT, error_traceback TEXT, "
    "error_kind TEXT, started_at REAL, finished_at REAL, duration_ms REAL NOT NULL, reason TEXT, "
    "root_cause TEXT, cached INTEGER NOT NULL, step_key TEXT, retry_delays TEXT NOT NULL, "
    "overridden INTEGER NOT NULL, owner_pid INTEGER, owner_token TEXT, owner_host TEXT, "
    "updated_at REAL NOT NULL, PRIMARY KEY (run_id, name))",
    # Only the RUNNING rows are indexed (what ``recover`` looks for): a task's writes touch
    # this small index twice (start, end) instead of moving its row in an index of every
    # status at each write. Files written before keep working; their old index is dropped.
    "CREATE INDEX IF NOT EXISTS tasks_running ON tasks (run_id, name) WHERE status = 'running'",
    # A payload over LARGE_PAYLOAD lives here, in the last column of its row, so it is streamed
    # in (a zeroblob filled by blob I/O) without SQLite building a record image of its size —
    # which a zeroblob anywhere but the end of a row (tasks.payload) would cost. Its tasks row
    # has payload NULL and has_value != 0; when that row is overwritten or deleted, so is this.
    "CREATE TABLE IF NOT EXISTS task_values (run_id TEXT NOT NULL, name TEXT NOT NULL, "
    "value BLOB NOT NULL, PRIMARY KEY (run_id, name))",
    "CREATE TRIGGER IF NOT EXISTS task_values_replaced AFTER UPDATE OF has_value ON tasks "
    "WHEN old.payload IS NULL AND old.has_value != 0 BEGIN DELETE FROM task_values "
    "WHERE run_id = old.run_id AND name = old.name; END",
    "CREATE TRIGGER IF NOT EXISTS task_values_deleted AFTER DELETE ON tasks "
    "WHEN old.payload IS NULL AND old.has_value != 0 BEGIN DELETE FROM task_values "
    "WHERE run_id = old.run_id AND name = old.name; END",
    "DROP INDEX IF EXISTS tasks_by_status",
    # Version 2: the live owner of each lineage of runs (see ``_owners.py``).
    "CREATE TABLE IF NOT EXISTS run_owners (lineage_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, "
    "owner_id TEXT NOT NULL, owner_pid INTEGER NOT NULL, owner_token TEXT NOT NULL, "
    "owner_host TEXT NOT NULL, since REAL NOT NULL, lease_until REAL NOT NULL)",
    # The child process each at_most_once attempt was sent to (see ``_owners.py``).
    "CREATE TABLE IF NOT EXISTS attempt_processes (lineage_id TEXT NOT NULL, task TEXT NOT "
    "NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, token TEXT, host TEXT NOT NULL, "
    "started_at REAL NOT NULL, PRIMARY KEY (lineage_id, task))",
)
TASK_COLUMNS = (  # the tasks table, in its order (also checked on open: _check.py)
    "run_id",
    "name",
    "status",
    "attempts",
    "payload",
    "has_value",
    "released",
    "error_type",
    "error_message",
    "error_traceback",
    "error_kind",
    "started_at",
    "finished_at",
    "duration_ms",
    "reason",
    "root_cause",
    "cached",
    "step_key",
    "retry_delays",
    "overridden",
    "owner_pid",
    "owner_token",
    "owner_host",
    "updated_at",
)
Row = tuple[Any, ...]
"""A ``tasks`` row: one value per column, in the order of the table's columns."""
_INSERT = f"INTO tasks ({', '.join(TASK_COLUMNS)}) VALUES ({', '.join('?' * len(TASK_COLUMNS))})"
UPSERT_TASK = (
    f"INSERT {_INSERT} ON CONFLICT (run_id, name) DO UPDATE "
    f"SET {', '.join(f'{c} = excluded.{c}' for c in TASK_COLUMNS[2:])}"
)
INSERT_TASK_IF_MISSING = f"INSERT OR IGNORE {_INSERT}"
PAYLOAD = TASK_COLUMNS.index("payload")
"""The position of ``payload`` in a :data:`Row`."""
LARGE_PAYLOAD = 1 << 20
"""Payloads over this many bytes are streamed into and out of their row (SQLite blob I/O)."""
SELECT_TASKS = (
    f"SELECT {', '.join(c for c in TASK_COLUMNS if c != 'payload')}, CASE WHEN "
    f"length(payload) > {LARGE_PAYLOAD} THEN NULL ELSE payload END AS payload, "
    "length(payload) AS payload_size, rowid AS row_id, CASE WHEN payload IS NULL AND "
    "has_value != 0 THEN (SELECT v.rowid FROM task_values v WHERE v.run_id = tasks.run_id "
    "AND v.name = tasks.name) END AS value_id FROM tasks WHERE run_id = ? ORDER BY rowid"
)
"""A run's ``tasks`` rows; a large payload is left out (``NULL``), with what streams it: the
``row_id`` (and ``payload_size``) of one in ``tasks.payload`` (files written before
``task_values``), or the ``value_id`` of its ``task_values`` row — so reading it never holds
extra copies of it."""

# ``has_value``: 0 no value, 1 the serializer's bytes, 2/3 a ``bytes``/``bytearray`` value
# stored as itself (no serializer: neither base64 nor JSON copies of a large binary value).
_SERIALIZED, _RAW_BYTES, _RAW_BYTEARRAY = 1, 2, 3
_RAW_SERIALIZERS = (JsonSerializer, PickleSerializer)  # user serializers keep their format


@attrs.frozen
class LargePayload:
    """A payload over :data:`LARGE_PAYLOAD` bytes in a :data:`Row`: the store writes the row
    without it, then streams ``data`` into ``task_values`` in the same transaction."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")


START_TASK = (
    "UPDATE tasks SET status = 'running', attempts = ?, payload = NULL, has_value = 0, "
    "released = 0, error_type = ?, error_message = ?, error_traceback = ?, error_kind = ?, "
    "started_at = ?, finished_at = NULL, duration_ms = ?, reason = ?, root_cause = ?, "
    "cached = ?, step_key = ?, retry_delays = ?, overridden = ?, owner_pid = ?, "
    "owner_token = ?, owner_host = ?, updated_at = ? WHERE run_id = ? AND name = ?"
)
"""A task's start, as an update of its existing row (parameters: :func:`start_params`)."""
RUN_COLUMNS = (
    "run_id, dag_name, tasks, detached, targets, resumed_from, created_at, finished_at, status"
)


@attrs.frozen
class RunInfo:
    """What a store knows about a run besides its task records.

    Attributes:
        run_id: the run's id.
        tasks: the planned tasks (run or reused), in plan order.
        created_at: when the run was created (epoch seconds).
        dag_name: the DAG it ran (``None`` when not started by an Engine).
        detached: which of ``tasks`` are detached (their failures never fail the run).
        targets: the targets of a subgraph run, ``None`` for a whole-DAG run.
        resumed_from: the run this one resumed, if any.
        finished_at: when it finished, or ``None`` while running (or after a crash).
        status: ``"running"``, ``"succeeded"`` or ``"failed"`` (``"damaged"`` with ``damage``).
        damage: why the run's stored row cannot be read (which column, what is wrong), when
            it cannot: ``list_runs`` still lists such a run, with ``status="damaged"`` and what
            of the row could be read, and ``load``/``get_run`` of it raise ``StoreError``.
            ``None`` for every intact run.
    """

    run_id: str
    tasks: tuple[str, ...]
    created_at: float
    dag_name: str | None = None
    detached: frozenset[str] = frozenset()
    targets: tuple[str, ...] | None = None
    resumed_from: str | None = None
    finished_at: float | None = None
    status: str = "running"
    damage: str | None = None


def planned_tasks(plan: Plan) -> tuple[str, ...]:
    """The tasks a plan runs or reuses, in topological order: the run's task list."""
    return tuple(n for n, d in plan.decisions.items() if d.action is not Action.NOT_NEEDED)


def dump_names(names: Iterable[str] | None) -> str | None:
    """Names as a JSON list (``None`` stays ``None``)."""
    return None if names is None else json.dumps(list(names))


class DamagedRowError(Exception):
    """A ``runs`` row's column cannot be read (internal: the store reports it per run).

    Attributes:
        column: the column.
        problem: what is wrong with its value, in words.
    """

    def __init__(self, column: str, problem: str) -> None:
        super().__init__(f"column {column!r}: {problem}")
        self.column = column
        self.problem = problem


def _names(value: object) -> tuple[str, ...]:
    try:
        names = json.loads(text(value))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"not a JSON list of task names: {text(value)[:60]!r}")
    return tuple(names)


def _names_or_none(value: object) -> tuple[str, ...] | None:
    return None if value is None else _names(value)


def _time(value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise ValueError(f"not a number of epoch seconds: {value!r:.60}")
    return float(value)  # type: ignore[arg-type]


def _time_or_none(value: object) -> float | None:
    return None if value is None else _time(value)


_RUN_FIELDS: tuple[tuple[str, Callable[[object], object]], ...] = (
    ("run_id", text),
    ("dag_name", text_or_none),
    ("tasks", _names),
    ("detached", lambda v: frozenset(_names(v))),
    ("targets", _names_or_none),
    ("resumed_from", text_or_none),
    ("created_at", _time),
    ("finished_at", _time_or_none),
    ("status", text),
)
"""Each ``runs`` column (of :data:`RUN_COLUMNS`) and how it is read, i.e. checked."""


def run_info(row: sqlite3.Row) -> RunInfo:
    """A ``runs`` row (selected as :data:`RUN_COLUMNS`) as a :class:`RunInfo`.

    Raises:
        DamagedRowError: a column holds what flowplan never writes there (the first such column).
    """
    fields: dict[str, Any] = {}
    for column, read in _RUN_FIELDS:
        try:
            fields[column] = read(row[column])
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            problem = str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}"
            raise DamagedRowError(column, problem) from exc
    return RunInfo(**fields)


def damaged_run_info(row: sqlite3.Row, damage: DamagedRowError) -> RunInfo:
    """What can be read of a damaged ``runs`` row, as a :class:`RunInfo` saying what is not."""
    readable: dict[str, Any] = {}
    for column, read in _RUN_FIELDS:
        with contextlib.suppress(ValueError, TypeError):
            readable[column] = read(row[column])
    return RunInfo(
        run_id=readable.get("run_id", repr(row["run_id"])),
        tasks=readable.get("tasks", ()),
        created_at=readable.get("created_at", 0.0),
        dag_name=readable.get("dag_name"),
        resumed_from=readable.get("resumed_from"),
        finished_at=readable.get("finished_at"),
        status="damaged",
        damage=str(damage),
    )


def encode_record(
    run_id: str,
    record: TaskRecord,
    serializer: ResultSerializer,
    owner: tuple[int, str, str],
    now: float,
) -> Row:
    """The ``tasks`` row for ``record`` (parameters for :data:`UPSERT_TASK`).

    Raises:
        SerializationError: a succeeded task's value cannot be encoded. A failed task's value
            (an exhausted ``retry_until``) is informational and dropped instead.
    """
    payload: bytes | None = None
    has_value = int(record.has_value)
    value = record.value
    if has_value and type(value) in (bytes, bytearray) and type(serializer) in _RAW_SERIALIZERS:
        payload = bytes(value)  # a bytes value is itself (no copy); a bytearray is frozen now
        has_value = _RAW_BYTES if type(value) is bytes else _RAW_BYTEARRAY
    elif has_value:
        try:
            payload = bytes(serializer.dumps(value))
        except Exception as exc:
            if record.status is TaskStatus.SUCCEEDED:
                raise SerializationError(
                    f"task {record.name!r}: its value cannot be stored by "
                    f"{type(serializer).__name__}: {exc}",
                    value_type=getattr(exc, "value_type", type(record.value).__qualname__),
                    path=getattr(exc, "path", "$"),
                ) from exc
            has_value = 0
    stored: bytes | LargePayload | None = payload
    if payload is not None and len(payload) > LARGE_PAYLOAD:
        stored = LargePayload(payload)  # streamed into the row by the store
    error = record.error
    return (  # in the order of TASK_COLUMNS
        run_id,
        record.name,
        record.status.value,
        record.attempts,
        stored,
        has_value,
        int(record.released),
        None if error is None else error.type,
        None if error is None else error.message,
        None if error is None else error.traceback,
        None if error is None else error.kind,
        record.started_at,
        record.finished_at,
        record.duration_ms,
        record.reason,
        record.root_cause,
        int(record.cached),
        record.step_key,
        json.dumps(list(record.retry_delays)) if record.retry_delays else "[]",
        int(record.overridden),
        *owner,
        now,
    )


def start_params(run_id: str, record: TaskRecord, owner: tuple[int, str, str], now: float) -> Row:
    """The parameters of :data:`START_TASK` for a RUNNING ``record``.

    The row then reads back as ``record`` except for its value: a RUNNING record's value (a
    value ``retry_until`` refused) is informational and not stored — as for any record that
    did not succeed, it is never needed to resume.
    """
    error = record.error
    return (
        record.attempts,
        None if error is None else error.type,
        None if error is None else error.message,
        None if error is None else error.traceback,
        None if error is None else error.kind,
        record.started_at,
        record.duration_ms,
        record.reason,
        record.root_cause,
        int(record.cached),
        record.step_key,
        json.dumps(list(record.retry_delays)) if record.retry_delays else "[]",
        int(record.overridden),
        *owner,
        now,
        run_id,
        record.name,
    )


def decode_record(
    row: sqlite3.Row, serializer: ResultSerializer, payload: bytes | bytearray | None = None
) -> TaskRecord:
    """A ``tasks`` row as a :class:`TaskRecord`, never raising.

    ``payload``: the row's payload when it was streamed out of the row (a large one), else
    ``None`` (read from the row). A row that cannot be read — typically a value the serializer
    cannot decode — becomes a FAILED record (error kind ``"serialization"``) so the task runs
    again on resume.
    """
    try:
        name = text(row["name"])
    except (TypeError, ValueError):
        name = str(row["name"])
    try:
        if payload is None:
            payload = row["payload"]
        kind = int(row["has_value"])
        has_value = kind != 0 and payload is not None
        value: object = None
        if has_value:
            value = _value(kind, payload, serializer)
        error = None
        if row["error_type"] is not None:
            error = ErrorInfo(
                text(row["error_type"]),
                text_or_none(row["error_message"]) or "",
                text_or_none(row["error_traceback"]) or "",
                text_or_none(row["error_kind"]) or "error",
            )
        # Text columns hold str or NULL, but for escaped strings (bytes) and damage: the
        # common case is tested inline, the rest goes through text()/_time() (which raise).
        status, reason, root_cause, step_key, delays, started, finished = (
            row["status"],
            row["reason"],
            row["root_cause"],
            row["step_key"],
            row["retry_delays"],
            row["started_at"],
            row["finished_at"],
        )
        if type(status) is not str:
            status = text(status)
        if reason is not None and type(reason) is not str:
            reason = text(reason)
        if root_cause is not None and type(root_cause) is not str:
            root_cause = text(root_cause)
        if step_key is not None and type(step_key) is not str:
            step_key = text(step_key)
        if started is not None and type(started) is not float:
            started = _time(started)
        if finished is not None and type(finished) is not float:
            finished = _time(finished)
        retry_delays: tuple[float, ...] = ()
        if delays is not None and delays != "[]":
            retry_delays = tuple(float(d) for d in json.loads(text(delays)))
        return TaskRecord(
            name,
            TaskStatus(status),
            attempts=int(row["attempts"]),
            value=value,
            has_value=has_value,
            error=error,
            started_at=started,
            finished_at=finished,
            duration_ms=float(row["duration_ms"]),
            reason=reason,
            root_cause=root_cause,
            cached=bool(row["cached"]),
            step_key=step_key,
            retry_delays=retry_delays,
            released=bool(row["released"]),
            overridden=bool(row["overridden"]),
        )
    except Exception as exc:
        message = (
            f"the stored record of task {name!r} cannot be read ({type(exc).__name__}: {exc}); "
            "it is treated as not succeeded and runs again on resume"
        )
        return TaskRecord(
            name,
            TaskStatus.FAILED,
            error=ErrorInfo("flowplan.errors.SerializationError", message, kind="serialization"),
            reason=message,
            root_cause=name,
        )


def _value(kind: int, payload: bytes | bytearray, serializer: ResultSerializer) -> object:
    if kind == _RAW_BYTES:
        return payload if type(payload) is bytes else bytes(payload)
    if kind == _RAW_BYTEARRAY:
        return payload if type(payload) is bytearray else bytearray(payload)
    if kind != _SERIALIZED:
        raise ValueError(f"unknown has_value {kind!r} (written by a newer flowplan?)")
    return serializer.loads(bytes(payload))


def pending_row(run_id: str, name: str, owner: tuple[int, str, str], now: float) -> Row:
    """The ``tasks`` row of a task that has not started yet.

    Equal to ``encode_record(run_id, TaskRecord(name, TaskStatus.PENDING), ...)``, built
    without the record (one per planned task at run creation).
    """
    return (run_id, name, *_PENDING_MIDDLE, *owner, now)


# status … overridden of a PENDING record, in the order of TASK_COLUMNS
_PENDING_MIDDLE: Row = ("pending", 0, None, 0, 0, None, None, None, None, None, None, 0.0)
_PENDING_MIDDLE += (None, None, 0, None, "[]", 0)
