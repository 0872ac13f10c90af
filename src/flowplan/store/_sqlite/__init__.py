"""A durable state store on SQLite: every task transition committed as it happens.

Place in the data flow: snapshot → **store** (SQLite). The interpreter calls ``begin_run``,
``save_record`` (when a task starts and when it becomes terminal) and ``finish_run``; by default
each call is one committed write, so a killed process loses only the attempts that were running
(``commit_every`` trades that for speed: see below). Reads
(``load``, ``get_run``, ``list_runs``) rebuild :class:`~flowplan.snapshot.Snapshot` and
:class:`RunInfo` values, so a run can be resumed by id from another process.

Guarantees and choices:

* stdlib :mod:`sqlite3`; WAL journal (readers never block the writer); ``busy_timeout``;
  ``synchronous=NORMAL``. What each mode can lose: with ``NORMAL`` (ours) a committed record
  survives a crash or kill of the process (the commit has written it to the WAL file, i.e. to
  the OS, before it returns), but a power cut or OS crash may roll back the transactions
  committed since the WAL was last synced (SQLite syncs it only at checkpoints, every ~1,000
  pages); the database itself stays consistent. ``FULL`` would sync the WAL at every commit
  (a committed record survives a power cut too, at the price of an fsync per record — about
  twice the per-task cost measured on our benchmark box); ``OFF`` never syncs, so a power
  cut or OS crash may also corrupt the file.
* Each task costs two small committed writes in the default mode: at its start, an ``UPDATE``
  of the row written for it at run creation (status, attempt, start time, owner …; the
  value is not stored), and at its end the whole row. Only RUNNING rows are indexed (what
  ``recover`` reads), so a write does not also move the row within an index of every status.
* ``commit_every=1`` (default) commits each record as it is saved. ``commit_every=N`` (and
  optionally ``commit_interval_s``) batches records: one transaction per N saved records,
  and always at a run's end, before reads through the store, on ``flush()`` and ``close()``.
  A killed process then loses at most the unwritten batch — whole records only, never part
  of one — and resume runs those tasks again (their RUNNING rows may be missing, so
  ``recover`` cannot report them: they simply stay at their last committed state).
* A schema version table. A file written by a newer flowplan, a file that is not a database,
  a database that is not a flowplan store, and a flowplan file whose version is not a positive
  integer or whose ``runs``/``tasks`` tables lack a column or their primary key
  (:mod:`._check`) are refused with a :class:`~flowplan.errors.StoreError` and left untouched.
* A damaged ``runs`` row costs only its run: ``list_runs`` lists it with ``status="damaged"``
  and ``RunInfo.damage``; ``load``/``get_run`` of it raise ``StoreError`` naming the run and
  the column. Text that is not UTF-8 in a row never fails a whole read.
* Strings UTF-8 cannot encode (lone surrogates) are stored reversibly
  (:mod:`flowplan.store._sqltext`), and a failed write always rolls back: the write lock is
  never kept.
* Values go through a :class:`~flowplan.store.ResultSerializer` (JSON by default). A value that
  cannot be encoded makes ``save_record`` raise :class:`~flowplan.errors.SerializationError`
  *before* writing; the interpreter then records that task as failed with that error, so no
  row is left RUNNING. A stored value that cannot be decoded (another serializer, an edited
  row) never crashes a read: that task loads as FAILED (error kind ``"serialization"``), so it
  runs again on resume.
* A ``bytes``/``bytearray`` value is stored as itself (with the built-in serializers), and a
  payload over 1 MiB is streamed into ``task_values`` and back with SQLite blob I/O, so a large
  value costs about its own size in memory, not several copies.
* Rows record their owner process: pid, a start token that detects pid reuse, hostname.
  ``recover=True`` marks FAILED only RUNNING tasks whose owner is gone — never those of a live
  process, nor those of another host (whose liveness cannot be checked from here).
* ``cache_ttl_s`` caches decoded runs (what run reports read) for that many seconds. Writes
  through the store refresh its cache at once; other processes' writes show within the TTL.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowplan.store._sqlite._rows import RunInfo
    from flowplan.store._sqlite._store import SqliteStateStore

__all__ = ["RunInfo", "SqliteStateStore"]


def __getattr__(name: str) -> object:
    """``RunInfo`` and ``SqliteStateStore``, imported on first use (:mod:`sqlite3` with them).

    Importing a submodule (``._process``, used by every store's ownership) stays light.
    """
    if name == "RunInfo":
        from flowplan.store._sqlite._rows import RunInfo

        globals()[name] = RunInfo
        return RunInfo
    if name == "SqliteStateStore":
        from flowplan.store._sqlite._store import SqliteStateStore

        globals()[name] = SqliteStateStore
        return SqliteStateStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
