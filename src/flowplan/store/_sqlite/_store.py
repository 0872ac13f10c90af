"""``SqliteStateStore``: runs and task records in one SQLite file, committed as they happen.

Place in the data flow: snapshot → **store** (SQLite). See the package docstring
(:mod:`flowplan.store._sqlite`) for the guarantees; this module is the store itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import attrs

from flowplan._suggest import did_you_mean
from flowplan._tally import record_order
from flowplan.errors import (
    InvalidOptionError,
    SerializationError,
    StoreError,
    UnknownTaskError,
)
from flowplan.plan import Plan
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus
from flowplan.store._bytes_serializer import BytesSerializer, as_result_serializer
from flowplan.store._owner import DEFAULT_LEASE_S, Heartbeat, Owner, drop
from flowplan.store._serializers import ResultSerializer
from flowplan.store._sqlite import _owners
from flowplan.store._sqlite._check import schema_problem, schema_version_problem
from flowplan.store._sqlite._process import own_identity, owner_alive
from flowplan.store._sqlite._rows import (
    INSERT_TASK_IF_MISSING,
    LARGE_PAYLOAD,
    PAYLOAD,
    RUN_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT_TASKS,
    START_TASK,
    UPSERT_TASK,
    DamagedRowError,
    LargePayload,
    Row,
    RunInfo,
    damaged_run_info,
    decode_record,
    dump_names,
    encode_record,
    pending_row,
    planned_tasks,
    run_info,
    start_params,
)
from flowplan.store._sqltext import TextSafeConnection, text, text_or_none
from flowplan.store._typed import RunTypes

__all__ = ["SqliteStateStore"]

_RUNNING = TaskStatus.RUNNING
# What a failed write raises besides sqlite3.Error: a value SQLite cannot hold (an int over 64
# bits: OverflowError; a type it does not know: ProgrammingError is a sqlite3.Error).
_DATA_ERRORS = (ValueError, TypeError, OverflowError)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; any failure in between (even ``KeyboardInterrupt``)
    rolls back, so the write lock is never kept by a failed write."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any (its own failure hidden: the caller's error is
    the one to report)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


@attrs.frozen
class _Unencoded:
    """A batched record kept unencoded: the record, its owner identity, the time it was saved."""

    record: TaskRecord
    owner: tuple[int, str, str]
    now: float


def _check_seconds(option: str, value: object) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidOptionError(
            f"SqliteStateStore: {option} must be a finite number of seconds >= 0 or None, got "
            f"{value!r} ({type(value).__name__})",
            option=option,
            value=value,
        )


class SqliteStateStore:
    """Persist runs and task records in one SQLite file.

    Implements :class:`flowplan.store.StateStore` (usable by ``execute``/``aexecute`` and
    ``Flow``) and what :class:`flowplan.engine.Engine` needs (``create_run``, ``load``,
    ``get_run``, ``list_runs``).

    It holds an open database connection: close it when done, with :meth:`close` or by using
    it as a context manager (``with SqliteStateStore(path) as store: ...``). Neither ``Flow``
    nor ``Engine`` closes a store passed in. A connection left open is closed only when the
    object is collected, with a ``ResourceWarning`` on Python 3.13+.

    Args:
        db_path: the database file (created if missing) or ``":memory:"``.
        serializer: how values become bytes (default :class:`JsonSerializer`; pickle is
            opt-in and unsafe for files you did not write): an object with ``dumps``/``loads``
            or, as in flowrun, ``serialize``/``deserialize``.
        cache_ttl_s: keep decoded runs for this many seconds (``None`` or 0: always read).
            Writes through this store refresh its cache at once; writes by other processes
            show within the TTL.
        recover: on open, mark FAILED the RUNNING tasks whose owning process is gone.
        busy_timeout_s: how long a write waits for another writer's lock.
        commit_every: commit task records in batches of this many (default 1: every record
            is committed as it is saved — the durable mode). With a larger value, encoded
            records are kept in memory (a task's later record replacing its earlier one, so
            RUNNING-then-SUCCEEDED costs one row write) and written in one transaction once
            ``commit_every`` records were saved, once ``commit_interval_s`` has passed since
            the batch's first record (checked when a record is saved: there is no timer
            thread), at the end of every run (``finish_run``), before every read or run
            creation through this store, and on :meth:`flush`/:meth:`close`. A killed
            process loses at most the records of the unwritten batch — never part of a record
            (a batch is one transaction): on resume those tasks run again, and their RUNNING
            rows may be missing for ``recover``. Other processes see a batch once written.
        commit_interval_s: with ``commit_every > 1``, also commit a batch once its first record
            is this many seconds old (``None``: no time limit).
        owner_lease_s: a run started through this store owns its lineage (the run and the
            runs resumed from it) until it finishes: a second run of the lineage is refused with
            :class:`~flowplan.errors.RunOwnedError` while the owner lives. On this host a dead
            owner (pid and start token) is taken over at once; another host's owner is taken
            over once its lease expires, this many seconds after its last renewal (renewed
            every quarter of it while the run lives).

    Raises:
        StoreError: the file is not a database, belongs to something else, or was written by
            a newer flowplan (the file is left untouched).
        InvalidOptionError: ``cache_ttl_s``, ``busy_timeout_s``, ``commit_every``,
            ``commit_interval_s`` or ``owner_lease_s`` is out of range, or ``serializer`` has
            neither pair of methods.

    >>> with SqliteStateStore(":memory:") as store:
    ...     store.list_runs()
    []
    """

    keeps_step_keys = True
    """Each record carries its task's step key, so a later plan can tell whose code changed."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        serializer: ResultSerializer | BytesSerializer | None = None,
        cache_ttl_s: float | None = None,
        recover: bool = False,
        *,
        busy_timeout_s: float = 5.0,
        commit_every: int = 1,
        commit_interval_s: float | None = None,
        owner_lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        _check_seconds("cache_ttl_s", cache_ttl_s)
        _check_seconds("owner_lease_s", owner_lease_s)
        _check_seconds("busy_timeout_s", busy_timeout_s)
        _check_seconds("commit_interval_s", commit_interval_s)
        if type(commit_every) is not int or commit_every < 1:  # bool is refused too
            raise InvalidOptionError(
                "SqliteStateStore: commit_every must be an int >= 1 (1 commits every record "
                f"as it is saved), got {commit_every!r} ({type(commit_every).__name__})",
                option="commit_every",
                value=commit_every,
            )
        self.commit_every = commit_every
        self.commit_interval_s = commit_interval_s
        self._batched = commit_every > 1
        # Batched mode: encoded rows not yet written, by (run_id, task). A task's later record
        # replaces its earlier one (e.g. RUNNING then SUCCEEDED): one row per task per batch.
        # A record with no value to serialize (RUNNING, skipped …) cannot fail to encode, so
        # it waits unencoded, with its owner and time: one replaced in the batch costs nothing.
        self._batch: dict[tuple[str, str], Row | _Unencoded] = {}
        self._batch_size = 0  # records saved into the batch (commit_every counts these)
        self._batch_started = 0.0  # time.monotonic() of the batch's first record
        self.path: str = os.fspath(db_path)
        self._types = RunTypes()  # run id → graph: typed values are unstructured
        self.serializer: ResultSerializer = as_result_serializer(serializer, "SqliteStateStore")
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, RunInfo, Snapshot]] = {}
        self._lock = threading.RLock()
        # Ownership (``_owner``): run id → (its owner, its lineage, whether it began) for the
        # runs this store started and that have not finished; a heartbeat renews their leases.
        self.owner_lease_s = owner_lease_s
        self._owners: dict[str, tuple[Owner, str, bool]] = {}
        self._heartbeat = Heartbeat(self._renew, max(owner_lease_s / 4, 0.05))
        self._conn: sqlite3.Connection | None = self._open(busy_timeout_s)
        if recover:
            self.recover()

    # -- lifecycle --------------------------------------------------------------------------
    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        where = f"cannot open {self.path!r} as a flowplan SQLite state store"
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
                factory=TextSafeConnection,  # any str binds: see flowplan.store._sqltext
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"{where}: {exc}; check the path and its permissions", path=self.path
            ) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            # Read before writing anything: a file that is not ours is never modified.
            query = "SELECT name FROM sqlite_master WHERE type = 'table'"
            tables = {row[0] for row in conn.execute(query)}
            if "flowplan_schema" in tables:
                self._check_schema(conn, tables, where)
            elif tables - {"sqlite_sequence"}:
                raise StoreError(
                    f"{where}: it is the SQLite database of something else (tables "
                    f"{', '.join(sorted(tables))}); give the store a file of its own",
                    path=self.path,
                )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                conn.execute(statement)
            if conn.execute("SELECT COUNT(*) FROM flowplan_schema").fetchone()[0] == 0:
                conn.execute("INSERT INTO flowplan_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            else:  # migrate: an older file got the tables it lacked above (2: owners, 3: values)
                conn.execute(
                    "UPDATE flowplan_schema SET version = ? WHERE version < ?",
                    (SCHEMA_VERSION, SCHEMA_VERSION),
                )
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"{where}: {exc}. The file was left untouched; point db_path at a new file or "
                "at a store written by flowplan",
                path=self.path,
            ) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn: sqlite3.Connection, tables: set[str], where: str) -> None:
        """Refuse a flowplan file whose schema version or tables this flowplan cannot use."""
        problem, found = schema_version_problem(conn, SCHEMA_VERSION)
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(f"{where}: {problem}; the file was left untouched", path=self.path)
        if not problem and (found is not None or tables & {"runs", "tasks"}):
            problem = schema_problem(conn, tables)
        if problem:
            raise StoreError(
                f"{where}: {problem}. The file was left untouched; it was changed by something "
                "other than flowplan (an edit, another tool, a partial restore): restore it from "
                "a backup, or point db_path at a new file",
                path=self.path,
            )

    def flush(self) -> None:
        """Commit the open batch of records (``commit_every > 1``); a no-op otherwise.

        A failed commit rolls back (the write lock is released) and keeps the batch, so a later
        ``flush`` may still write it — unless a record itself cannot be stored: then the other
        records are committed and the error names the records that are not.

        Raises:
            StoreError: the database cannot be written, or a record cannot be stored.
        """
        with self._lock:
            conn = self._conn
            batch = self._batch
            if conn is None or not batch:
                return
            rows = {key: self._row(key, item) for key, item in batch.items()}
            try:
                with _transaction(conn):  # the batch is one transaction: all or nothing
                    _upsert(conn, rows.values())
            except sqlite3.Error as exc:  # kept: a later flush() may still write it
                raise StoreError(
                    f"cannot commit a batch of records to {self.path!r}: {exc}", path=self.path
                ) from exc
            except _DATA_ERRORS as exc:  # would fail every retry: write the others
                self._batch, self._batch_size = {}, 0
                raise self._write_each(conn, rows, exc) from exc
            self._batch, self._batch_size = {}, 0

    def _write_each(
        self, conn: sqlite3.Connection, rows: dict[tuple[str, str], Row], first: Exception
    ) -> StoreError:
        """Commit the rows SQLite can hold, one transaction; the error naming the others."""
        bad: list[str] = []
        try:
            with _transaction(conn):
                for (run_id, name), row in rows.items():
                    try:
                        _upsert(conn, (row,))
                    except _DATA_ERRORS as exc:
                        bad.append(f"task {name!r} of run {run_id!r} ({exc})")
        except sqlite3.Error as exc:
            return StoreError(
                f"cannot commit a batch of records to {self.path!r}: {exc}", path=self.path
            )
        return StoreError(
            f"the record of {'; '.join(bad) or first} cannot be written to {self.path!r}; "
            f"the batch's other {len(rows) - len(bad)} record(s) were committed",
            path=self.path,
        )

    def close(self) -> None:
        """Commit the open batch, if any, and close the database connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                try:
                    self.flush()
                finally:
                    self._heartbeat.stop()
                    for run_id in list(self._owners):  # runs left unfinished own nothing now
                        with contextlib.suppress(StoreError):
                            self.release_run(run_id)
                    self._conn.close()
                    self._conn = None
            self._cache.clear()

    def __enter__(self) -> SqliteStateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStateStore({self.path!r}, {'closed' if self._conn is None else 'open'})"

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(
                f"the SqliteStateStore on {self.path!r} is closed; open a new "
                "SqliteStateStore(db_path) to keep using the file",
                path=self.path,
            )
        return self._conn

    @contextlib.contextmanager
    def _writing(self, run_id: str) -> Iterator[None]:
        """Under the lock: a database error in the block is a :class:`StoreError` naming the
        run and the file; afterwards the run's cached snapshot is dropped."""
        with self._lock:
            try:
                yield
            except (sqlite3.Error, *_DATA_ERRORS) as exc:
                raise StoreError(
                    f"cannot write run {run_id!r} to {self.path!r}: {exc}",
                    path=self.path,
                    run_id=run_id,
                ) from exc
            self._cache.pop(run_id, None)

    def _write(self, sql: str, params: Any, *, run_id: str) -> None:
        with self._writing(run_id):
            self._db().execute(sql, params)

    def _write_large(self, row: Row, *, run_id: str) -> None:
        """Commit a task row whose payload is streamed into it (one transaction)."""
        with self._writing(run_id), _transaction(self._db()):
            _upsert(self._db(), (row,))

    def _row(self, key: tuple[str, str], item: Row | _Unencoded) -> Row:
        if isinstance(item, _Unencoded):
            return encode_record(key[0], item.record, self.serializer, item.owner, item.now)
        return item

    def _batch_record(self, run_id: str, record: TaskRecord) -> None:
        """Add one task's record to the batch; write the batch when it is due."""
        record = self._types.prepare(run_id, record, self.serializer)
        now = time.time()
        item: Row | _Unencoded
        if record.has_value:  # encoded now: a value that cannot be stored must raise here
            item = encode_record(run_id, record, self.serializer, own_identity(), now)
        else:
            item = _Unencoded(record, own_identity(), now)
        with self._lock:
            self._db()  # a closed store refuses writes in both modes
            if not self._batch:
                self._batch_started = time.monotonic()
            self._batch[run_id, record.name] = item
            self._cache.pop(run_id, None)
            self._batch_size += 1
            interval = self.commit_interval_s
            if self._batch_size >= self.commit_every or (
                interval is not None and time.monotonic() - self._batch_started >= interval
            ):
                self.flush()

    # -- writing (the interpreter's StateStore protocol + the engine's create_run) ----------
    def create_run(
        self,
        plan: Plan,
        *,
        dag_name: str | None,
        targets: Sequence[str] | None = None,
        resumed_from: str | None = None,
    ) -> None:
        """Record a new run, its metadata and a PENDING row per planned task, in one commit.

        Raises:
            RunOwnedError: another live run owns the plan's lineage (nothing is written).
            StoreError: the database cannot be written.
        """
        tasks = planned_tasks(plan)
        identity = own_identity()
        now = time.time()
        detached = sorted(plan.graph.detached.intersection(tasks))
        run_row = (plan.run_id, dag_name, dump_names(tasks), dump_names(detached))
        run_row_rest = (dump_names(targets), resumed_from, now, None, "running", *identity)
        with self._lock:
            self.flush()
            conn = self._db()
            lineage = plan.lineage_id or plan.run_id
            owner: Owner | None = None
            try:
                conn.execute("BEGIN IMMEDIATE")
                owner = _owners.claim(conn, plan.run_id, lineage, self.owner_lease_s, self.path)
                conn.execute(
                    f"INSERT INTO runs ({RUN_COLUMNS}, owner_pid, owner_token, owner_host) "
                    f"VALUES ({', '.join('?' * 12)}) ON CONFLICT (run_id) DO UPDATE SET "
                    "dag_name = excluded.dag_name, targets = excluded.targets, "
                    "resumed_from = excluded.resumed_from, status = 'running', "
                    "finished_at = NULL, "
                    "owner_pid = excluded.owner_pid, owner_token = excluded.owner_token, "
                    "owner_host = excluded.owner_host",
                    (*run_row, *run_row_rest),
                )
                rows = [self._first_row(plan, name, identity, now) for name in tasks]
                _upsert(conn, rows, INSERT_TASK_IF_MISSING)
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)  # whatever failed, the write lock is released
                if owner is not None:  # claimed, then rolled back: it owns nothing
                    drop(owner.owner_id)
                if not isinstance(exc, (sqlite3.Error, *_DATA_ERRORS)):
                    raise
                raise StoreError(
                    f"cannot record run {plan.run_id!r} in {self.path!r}: {exc}",
                    path=self.path,
                    run_id=plan.run_id,
                ) from exc
            self._owned(plan.run_id, owner, lineage)
            self._types.bind(plan.run_id, plan.graph)
            self._cache.pop(plan.run_id, None)

    def _first_row(self, plan: Plan, name: str, owner: tuple[int, str, str], now: float) -> Row:
        """A task's row at creation: its reused record (so a process killed before the run
        re-saves it loses nothing on the next resume), else PENDING."""
        reused = plan.reused.get(name)
        if reused is not None:
            try:
                reused = self._types.prepare(plan.run_id, reused, self.serializer)
                return encode_record(plan.run_id, reused, self.serializer, owner, now)
            except SerializationError:  # e.g. an override JSON cannot hold: saved (or not) later
                pass
        return pending_row(plan.run_id, name, owner, now)

    def begin_run(self, plan: Plan) -> None:
        """A run of ``plan`` starts; it is created here unless :meth:`create_run` did it.

        The run takes ownership of its lineage (:meth:`create_run` took it already, if it
        created the run); an existing run (resumed under its own id) gets this process as its
        owner, so ``recover`` in another process leaves it alone.

        Raises:
            RunOwnedError: another live run owns the lineage (nothing is written).
            StoreError: the database cannot be written.
        """
        with self._lock:
            held = self._owners.get(plan.run_id)
            if held is not None and not held[2]:  # created by create_run: it starts now
                self._owners[plan.run_id] = (held[0], held[1], True)
                return
            query = "SELECT 1 FROM runs WHERE run_id = ?"
            exists = self._db().execute(query, (plan.run_id,)).fetchone() is not None
            if not exists:  # a resume records its lineage, so idempotency keys survive reloads
                lineage = plan.lineage_id if plan.lineage_id != plan.run_id else None
                self.create_run(plan, dag_name=None, resumed_from=lineage or None)
            else:
                self._take_existing(plan)
            held = self._owners[plan.run_id]
            self._owners[plan.run_id] = (held[0], held[1], True)

    def _take_existing(self, plan: Plan) -> None:
        """Own the lineage of a run that exists already (resumed under its own id)."""
        conn = self._db()
        lineage = plan.lineage_id or plan.run_id
        owner: Owner | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            owner = _owners.claim(conn, plan.run_id, lineage, self.owner_lease_s, self.path)
            conn.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, owner_pid = ?, "
                "owner_token = ?, owner_host = ? WHERE run_id = ?",
                (*own_identity(), plan.run_id),
            )
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)  # whatever failed, the write lock is released
            if owner is not None:
                drop(owner.owner_id)
            if isinstance(exc, (sqlite3.Error, *_DATA_ERRORS)):
                raise StoreError(
                    f"cannot record run {plan.run_id!r} in {self.path!r}: {exc}",
                    path=self.path,
                    run_id=plan.run_id,
                ) from exc
            raise
        self._owned(plan.run_id, owner, lineage)
        self._types.bind(plan.run_id, plan.graph)
        self._cache.pop(plan.run_id, None)

    def _owned(self, run_id: str, owner: Owner | None, lineage: str) -> None:
        """Keep ``owner`` (of ``run_id``'s ``lineage``) until the run finishes; renew it."""
        assert owner is not None
        with self._lock:
            old = self._owners.pop(run_id, None)
            if old is not None:  # the same run created twice: the newer owner replaces it
                drop(old[0].owner_id)
            self._owners[run_id] = (owner, lineage, False)
        self._heartbeat.ensure(lambda: bool(self._owners) and self._conn is not None)

    def _renew(self) -> None:
        with self._lock:
            conn = self._conn
            ids = [owner.owner_id for owner, _, _ in self._owners.values()]
            if conn is None or not ids or conn.in_transaction:
                return
            with contextlib.suppress(sqlite3.Error):
                _owners.renew(conn, ids, self.owner_lease_s)

    def note_attempt_process(self, lineage: str, task: str, attempt: int, pid: int) -> None:
        """Commit that ``task``'s ``attempt`` (``effect="at_most_once"``) of ``lineage`` is sent
        to the child process ``pid`` — before it is sent (called by the driver).

        While that child lives, no later run may take the lineage over from a dead owner
        (:class:`~flowplan.errors.RunOwnedError` names the child): on platforms where a child
        can outlive its killed parent, it might still perform the effect.

        Raises:
            StoreError: the database cannot be written (the attempt is then not sent).
        """
        with self._lock:
            try:
                _owners.note_process(self._db(), lineage, task, attempt, pid)
            except (sqlite3.Error, *_DATA_ERRORS) as exc:
                raise StoreError(
                    f"cannot record the process of task {task!r} in {self.path!r}: {exc}"
                ) from exc

    def release_run(self, run_id: str) -> None:
        """Give up the ownership of ``run_id``'s lineage held by this store (a no-op if none).

        A run releases it when it finishes (:meth:`finish_run`); call this for a run created
        with :meth:`create_run` that will never start, so that it can be resumed at once.

        Raises:
            StoreError: the database cannot be written (this process owns nothing any more).
        """
        with self._lock:
            held = self._owners.pop(run_id, None)
            if held is None:
                return
            owner, lineage, _ = held
            drop(owner.owner_id)  # first: even if the write fails, this process owns nothing
            try:
                _owners.release(self._db(), lineage, owner.owner_id)
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot release the ownership of run {run_id!r} in {self.path!r}: {exc}",
                    path=self.path,
                    run_id=run_id,
                ) from exc

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        """Commit ``record`` as its task's latest state in ``run_id``.

        A released record (``retain_result=False``: the run freed the value from memory)
        changes nothing: the row keeps the value, so a later run that needs it reuses it
        instead of running the task again.

        Raises:
            SerializationError: a succeeded task's value cannot be encoded (nothing written).
            StoreError: the database cannot be written.
        """
        if record.released and record.status is TaskStatus.SUCCEEDED:
            return
        if self._batched:
            self._batch_record(run_id, record)
            return
        if record.status is _RUNNING:  # a start: update the row's few changing columns
            self._start(run_id, record)
            return
        record = self._types.prepare(run_id, record, self.serializer)
        row = encode_record(run_id, record, self.serializer, own_identity(), time.time())
        if type(row[PAYLOAD]) is LargePayload:  # a row and its streamed payload: one commit
            self._write_large(row, run_id=run_id)
        else:
            self._write(UPSERT_TASK, row, run_id=run_id)

    def _start(self, run_id: str, record: TaskRecord) -> None:
        """Commit a RUNNING ``record``: an update of its task's row (written at run creation),
        else (a task without a row: not in the run's plan) the whole row."""
        owner, now = own_identity(), time.time()
        with self._writing(run_id):
            updated = self._db().execute(START_TASK, start_params(run_id, record, owner, now))
            if updated.rowcount == 0:
                record = self._types.prepare(run_id, record, self.serializer)
                row = encode_record(run_id, record, self.serializer, owner, now)
                if type(row[PAYLOAD]) is LargePayload:
                    self._write_large(row, run_id=run_id)
                else:
                    self._db().execute(UPSERT_TASK, row)

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        """Mark the run finished with ``status`` (``"succeeded"`` or ``"failed"``), committing
        any open batch of records with it."""
        sql = "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?"
        with self._lock:
            try:
                self.flush()  # records first: a run marked finished has all its records
                self._write(sql, (status, time.time(), snapshot.run_id), run_id=snapshot.run_id)
            finally:
                self.release_run(snapshot.run_id)  # its lineage may be resumed now
        self._types.forget(snapshot.run_id)

    # -- reading ----------------------------------------------------------------------------
    def _read_run(self, run_id: str) -> tuple[RunInfo, Snapshot]:
        with self._lock:
            if self.cache_ttl_s:
                hit = self._cache.get(run_id)
                if hit is not None and time.monotonic() - hit[0] < self.cache_ttl_s:
                    return hit[1], hit[2]
            self.flush()
            conn = self._db()
            try:
                conn.execute("BEGIN")  # one consistent read of the run and its tasks
                try:
                    query = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
                    row = next(iter(_fetch_all(conn, query, (run_id,))), None)
                    rows = _fetch_all(conn, SELECT_TASKS, (run_id,))
                    large = {  # streamed out of their rows: never a second copy in memory
                        r["row_id"]: _read_payload(conn, r)
                        for r in rows
                        if r["payload"] is None and r["has_value"]
                    }
                    lineage = None if row is None else _lineage(conn, run_id)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot read run {run_id!r} from {self.path!r}: {exc}",
                    path=self.path,
                    run_id=run_id,
                ) from exc
            if row is None:
                raise self._unknown(run_id)
            try:
                info = run_info(row)
            except DamagedRowError as damage:
                raise StoreError(
                    f"run {run_id!r} in {self.path!r} is damaged: its {damage}. Only this run is "
                    "affected (other runs are unaffected); repair the column with the sqlite3 "
                    "shell or restore the file from a backup",
                    path=self.path,
                    run_id=run_id,
                    column=damage.column,
                ) from damage
            decoded = (decode_record(r, self.serializer, large.get(r["row_id"])) for r in rows)
            records = {record.name: record for record in decoded}
            if info.tasks:  # the one record order (graph order, elements after their task)
                order = record_order([n for n in info.tasks if n in records], records)
                records = {n: records[n] for n in order}
            snapshot = Snapshot(run_id, records, lineage_id=lineage)
            if self.cache_ttl_s:
                self._cache[run_id] = (time.monotonic(), info, snapshot)
            return info, snapshot

    def _unknown(self, run_id: str) -> UnknownTaskError:
        query = "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 200"
        recent = [r for row in self._db().execute(query) if (r := _readable(row[0])) is not None]
        hint, best = did_you_mean(run_id, recent)
        return UnknownTaskError(
            f"no run {run_id!r} in the SQLite store {self.path!r}; "
            + (hint if recent else "the store has no runs yet"),
            name=run_id,
            known=sorted(recent),
            suggestion=best,
        )

    def load(self, run_id: str) -> Snapshot:
        """The latest snapshot of ``run_id`` (for ``plan(graph, snapshot)``, i.e. resume).

        A task row that cannot be read loads as a FAILED record (it runs again on resume).

        Raises:
            UnknownTaskError: no run with that id ("did you mean ...").
            StoreError: the run's own row is damaged (``run_id`` and ``column`` say where).
        """
        return self._read_run(run_id)[1]

    def get_run(self, run_id: str) -> RunInfo:
        """The metadata of ``run_id``.

        Raises:
            UnknownTaskError: no run with that id ("did you mean ...").
            StoreError: the run's row is damaged (``run_id`` and ``column`` say where).
        """
        return self._read_run(run_id)[0]

    def list_runs(self, dag_name: str | None = None) -> list[RunInfo]:
        """Every run (of ``dag_name``, if given), oldest first.

        A run whose row is damaged is listed too, with ``status="damaged"`` and ``damage``
        saying which column holds what (see :class:`RunInfo`); the other runs are unaffected.
        """
        sql, params = f"SELECT {RUN_COLUMNS} FROM runs", tuple[str, ...]()
        if dag_name is not None:
            sql, params = f"{sql} WHERE dag_name = ?", (dag_name,)
        with self._lock:
            self.flush()
            rows = _fetch_all(self._db(), f"{sql} ORDER BY created_at, rowid", params)
        return [_listed(row) for row in rows]

    # -- recovery ---------------------------------------------------------------------------
    def recover(self) -> tuple[tuple[str, str], ...]:
        """Mark FAILED every RUNNING task whose owning process is gone, and finish its run.

        Tasks owned by a live process (this one included) or by another host are left alone.
        The recovered error reads ``PROCESS_CRASH`` (flowrun's word) with the owner's pid.

        Returns:
            The ``(run_id, task)`` pairs that were marked failed.
        """
        with self._lock:
            self.flush()
            conn = self._db()
            tasks = _fetch_all(
                conn,
                "SELECT run_id, name, owner_pid, owner_token, owner_host FROM tasks "
                "WHERE status = 'running'",
                (),
            )
            runs = _fetch_all(
                conn,
                "SELECT run_id, owner_pid, owner_token, owner_host FROM runs "
                "WHERE status = 'running'",
                (),
            )
            live = _owners.live_runs(conn)  # a live owner's run is never touched
        now = time.time()
        recovered: list[tuple[str, str]] = []
        for row in tasks:  # text columns may hold escaped strings: see _sqltext
            try:
                run_id, name = text(row[0]), text(row[1])
                pid, token, host = row[2], text_or_none(row[3]), text_or_none(row[4])
            except (TypeError, ValueError):  # a damaged row is left as it is
                continue
            if run_id in live or owner_alive(pid, token, host):
                continue
            message = (
                f"PROCESS_CRASH: process {pid} on {host} that was running task {name!r} is "
                "gone; recovered as failed — resume the run to retry it"
            )
            self._write(
                "UPDATE tasks SET status = 'failed', error_type = 'builtins.RuntimeError', "
                "error_message = ?, error_traceback = '', error_kind = 'crashed', reason = ?, "
                "root_cause = name, finished_at = ?, updated_at = ? WHERE run_id = ? AND "
                "name = ? AND status = 'running' AND owner_pid IS ? AND owner_token IS ?",
                (message, message, now, now, run_id, name, pid, token),
                run_id=run_id,
            )
            recovered.append((run_id, name))
        for row in runs:
            try:
                run_id, pid = text(row[0]), row[1]
                token, host = text_or_none(row[2]), text_or_none(row[3])
            except (TypeError, ValueError):  # a damaged row is left as it is
                continue
            if run_id not in live and not owner_alive(pid, token, host):
                sql = "UPDATE runs SET status = 'failed', finished_at = ? WHERE run_id = ? AND "
                self._write(sql + "status = 'running'", (now, run_id), run_id=run_id)
        return tuple(recovered)


def _lineage(conn: sqlite3.Connection, run_id: str) -> str | None:
    """The first run of ``run_id``'s chain of resumes (``resumed_from`` links), or ``None``.

    The chain stops at a link that cannot be read (a damaged row)."""
    seen = {run_id}
    lineage: str | None = None
    current = run_id
    while True:
        query = "SELECT resumed_from FROM runs WHERE run_id = ?"
        found = _fetch_all(conn, query, (current,))
        parent = _readable(found[0][0]) if found else None
        if parent is None or parent in seen:
            return lineage
        current = lineage = parent
        seen.add(current)


_CHUNK = 1 << 20  # bytes per blob read/write: what streaming a large payload holds at once


def _upsert(conn: sqlite3.Connection, rows: Iterable[Row], sql: str = UPSERT_TASK) -> None:
    """Write task rows with ``sql`` (in the caller's transaction). A row whose payload is a
    :class:`LargePayload` is written without it, then the payload is streamed into the row
    (blob I/O), so SQLite never holds a copy of the whole value (as a bound parameter and a
    record image would)."""
    large: list[Row] = []
    plain: list[Row] = []
    for row in rows:
        (large if type(row[PAYLOAD]) is LargePayload else plain).append(row)
    conn.executemany(sql, plain)
    for row in large:
        payload: LargePayload = row[PAYLOAD]
        cursor = conn.execute(sql, (*row[:PAYLOAD], None, *row[PAYLOAD + 1 :]))
        if cursor.rowcount == 0:  # INSERT OR IGNORE of a row that exists: it is kept
            continue
        cursor = conn.execute(
            "INSERT OR REPLACE INTO task_values (run_id, name, value) VALUES (?, ?, zeroblob(?))",
            (row[0], row[1], len(payload.data)),
        )
        view, rowid = memoryview(payload.data), cursor.lastrowid
        if rowid is None:  # pragma: no cover - an INSERT always sets it
            raise sqlite3.OperationalError("no rowid for a task_values row")
        with conn.blobopen("task_values", "value", rowid) as blob:
            for start in range(0, len(view), _CHUNK):
                blob.write(view[start : start + _CHUNK])


def _read_payload(conn: sqlite3.Connection, row: Any) -> bytes | bytearray | None:
    """A large payload of a :data:`SELECT_TASKS` row, streamed out of where it is: one
    ``bytes`` (for a stored ``bytearray`` value, one ``bytearray``) and nothing else of its
    size; ``None`` when there is none."""
    if (row["payload_size"] or 0) > LARGE_PAYLOAD:  # in tasks.payload: a file from before
        table, column, rowid = "tasks", "payload", row["row_id"]
    elif row["value_id"] is not None:
        table, column, rowid = "task_values", "value", row["value_id"]
    else:
        return None
    with conn.blobopen(table, column, rowid, readonly=True) as blob:
        if row["has_value"] != 3:  # see _rows: 3 is a bytearray value stored as itself
            return blob.read()
        out = bytearray(len(blob))
        for start in range(0, len(out), _CHUNK):
            out[start : start + _CHUNK] = blob.read(_CHUNK)
        return out


def _readable(value: object) -> str | None:
    """A text column's string, or ``None`` when it is ``NULL`` or damaged."""
    try:
        return text_or_none(value)
    except (TypeError, ValueError):
        return None


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[Any]:
    """The rows of ``sql``. Text that is not UTF-8 (a damaged row) would fail the whole read:
    then the rows are read again with every text as bytes, for each row's reader to decode
    (:func:`~flowplan.store._sqltext.text`) and report what it cannot, row by row."""
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "UTF-8" not in str(exc):
            raise
    conn.text_factory = bytes  # the caller holds the store's lock: no other reader sees it
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.text_factory = str


def _listed(row: Any) -> RunInfo:
    try:
        return run_info(row)
    except DamagedRowError as damage:
        return damaged_run_info(row, damage)
