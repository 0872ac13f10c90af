"""flowing's durable journal: an append-only JSON-lines file of succeeded steps.

Place in the data flow: snapshot → **store** → (next process) → plan. The interpreter hands
every succeeded record to :meth:`JournalStore.save_record`, which appends one JSON line keyed by
the record's step key. A later run — in this process or a new one — calls
:meth:`JournalStore.load` with the graph's current step keys and gets back cached records for
the steps whose key was journalled; ``plan`` reuses them and runs everything else. Because step
keys chain through dependency keys, editing one task re-runs it and everything downstream.

File format (one object per line, UTF-8, later lines win)::

    {"format": 1, "key": "<step key>", "task": "load", "run_id": "...", "time": 1.7e9,
     "attempts": 1, "duration_ms": 3.2, "overridden": false, "value": <JsonSerializer tree>}

Each line is written with one ``write`` on a file opened in append mode, then ``flush`` and
``os.fsync``, so a killed process leaves at most one torn *last* line. A torn last line is
skipped (and the next append starts on a fresh line). An unreadable line elsewhere, a line of a
newer format, or a value that no longer decodes is skipped too and reported through the stdlib
logger ``"flowplan"`` (warning level): the step simply runs again. Every line the journal
writes reads back: a value nested deeper than the C ``json`` parser's recursion limit (about
1,000 levels) is parsed iteratively, as the SQLite store does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowplan._fanout import element_key, split_element
from flowplan.errors import SerializationError, StoreError
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus
from flowplan.store._serializers import JsonSerializer, _parse, _reject_constant
from flowplan.store._typed import RunTypes

if TYPE_CHECKING:
    from flowplan.plan import Plan

__all__ = ["JOURNAL_FORMAT", "JournalStore"]

JOURNAL_FORMAT = 1
"""The format version written in every journal line's ``"format"`` field."""

_log = logging.getLogger("flowplan")
_HEAD_FIELDS = ("format", "key", "task", "run_id", "time", "attempts", "duration_ms")


class JournalStore:
    """A :class:`~flowplan.store.StateStore` that journals succeeded steps to a JSON-lines file.

    Only succeeded records that were computed (or overridden, or were result-cache hits) in
    this process are appended; records replayed from the journal are not written again, nor a
    record identical to the last one this store wrote for the same key (a resume re-saving the
    steps it reuses). Values are encoded with :class:`~flowplan.store.JsonSerializer`, so tuples,
    sets, bytes and datetimes come back as themselves.

    Args:
        path: the journal file; created on the first append. Its directory must exist.
        serializer: encodes values into each line (default: :class:`JsonSerializer`).

    The journal records no attempt starts (``records_starts = False``), so a run with an
    ``effect="at_most_once"`` task refuses it as its only store.

    Raises:
        StoreError: ``path`` is a directory or its parent directory does not exist.

    >>> import pathlib, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> journal = JournalStore(pathlib.Path(tmp.name) / "flow.jsonl")
    >>> done = TaskRecord("a", TaskStatus.SUCCEEDED, 1, value=(1, 2), has_value=True, step_key="k")
    >>> journal.save_record("run-1", done)
    >>> replayed = journal.load({"renamed_a": "k"})["renamed_a"]
    >>> replayed.value, replayed.cached
    ((1, 2), True)
    >>> tmp.cleanup()
    """

    records_starts = False
    """Only finished (succeeded) steps are written: see :func:`flowplan._effects.check_store`."""

    keeps_step_keys = True
    """Steps are journalled by their step key (the run computes keys for a journal)."""

    def __init__(
        self, path: str | os.PathLike[str], *, serializer: JsonSerializer | None = None
    ) -> None:
        self.path: Path = Path(path)
        self.serializer: JsonSerializer = serializer if serializer is not None else JsonSerializer()
        if self.path.is_dir():
            raise StoreError(
                f"journal_path {str(self.path)!r} is a directory; pass a file path such as "
                f"{str(self.path / 'flow.jsonl')!r}"
            )
        if not self.path.parent.is_dir():
            raise StoreError(
                f"journal_path {str(self.path)!r}: directory {str(self.path.parent)!r} does not "
                "exist; create it first (the journal file itself is created on first use)"
            )
        self._lock = threading.Lock()
        self._last: dict[str, bytes] = {}  # step key → digest of the last line written
        self._types = RunTypes()  # run id → graph: typed values are unstructured

    # -- StateStore protocol --------------------------------------------------------------
    def begin_run(self, plan: Plan) -> None:
        """Note the run's graph: its tasks' declared return types say how values are stored."""
        self._types.bind(plan.run_id, plan.graph)

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        """Forget the run's graph: every step was made durable as it succeeded."""
        self._types.forget(snapshot.run_id)

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        """Append ``record`` if it succeeded here (not replayed) and carries a step key.

        Raises:
            SerializationError: the value cannot be encoded (the interpreter then records the
                task as failed; nothing is written).
            StoreError: the file cannot be written.
        """
        if record.status is not TaskStatus.SUCCEEDED or record.step_key is None:
            return
        if record.cached and not (record.reason or "").startswith("cache hit"):
            return  # replayed from a journal; a result-cache hit is journalled like a success
        if record.released or not record.has_value:
            return  # nothing to replay: a released value is gone
        key = record.step_key
        record = self._types.prepare(run_id, record, self.serializer)
        value_text = self._encode(record)
        digest = hashlib.blake2b(
            b"%s\0%d\0%s"
            % (record.name.encode("utf-8", "surrogatepass"), record.overridden, value_text),
            digest_size=16,
        ).digest()
        head = {
            "format": JOURNAL_FORMAT,
            "key": key,
            "task": record.name,
            "run_id": run_id,
            "time": record.finished_at,
            "attempts": record.attempts,
            "duration_ms": round(record.duration_ms, 3),
            "overridden": record.overridden,
        }
        head_text = json.dumps(head, separators=(",", ":"))
        line = head_text[:-1].encode() + b',"value":' + value_text + b"}\n"
        with self._lock:
            if self._last.get(key) == digest:
                return
            self._append(line)
            self._last[key] = digest

    # -- reading --------------------------------------------------------------------------
    def load(self, step_keys: Mapping[str, str]) -> Snapshot:
        """Cached records for the tasks whose current step key has a journalled entry.

        Args:
            step_keys: task name → current step key (``TaskGraph.step_keys()``).

        Returns:
            A snapshot (run id ``"journal"``) of SUCCEEDED records with ``cached=True``, the
            ``step_key`` set and the value decoded; tasks without an entry are absent. Element
            instances (``task[2]``) of a fan-out task come too when their entry's key is the one
            derived from the task's current key and the index, so a fan-out task that did not
            finish reuses its journalled elements (the line format is unchanged).

        Raises:
            StoreError: the file exists but cannot be read.
        """
        wanted: dict[str, list[str]] = {}
        for name, key in step_keys.items():
            wanted.setdefault(key, []).append(name)

        def element(entry: Mapping[str, Any]) -> bool:
            """An element (``task[2]``) of a task whose current key derives the entry's key."""
            split = split_element(entry["task"])
            if split is None:
                return False
            parent, index = split
            key = step_keys.get(parent)
            return key is not None and element_key(key, index) == entry["key"]

        entries = self._latest_entries(wanted.keys(), element)
        records: dict[str, TaskRecord] = {}
        for key, (lineno, entry) in entries.items():
            try:
                value = self.serializer.decode(entry["value"])
            except SerializationError as exc:
                _log.warning(
                    "flowplan journal %s line %d: the value of step %r cannot be decoded "
                    "(%s); the step will run again",
                    self.path,
                    lineno,
                    entry["task"],
                    exc,
                )
                continue
            for name in wanted.get(key) or (entry["task"],):
                records[name] = TaskRecord(
                    name,
                    TaskStatus.SUCCEEDED,
                    attempts=entry["attempts"],
                    value=value,
                    has_value=True,
                    finished_at=entry["time"],
                    duration_ms=float(entry["duration_ms"]),
                    cached=True,
                    step_key=key,
                    overridden=bool(entry.get("overridden", False)),
                )
        return Snapshot("journal", records)

    def _latest_entries(
        self, keys: Iterable[str], element: Callable[[Mapping[str, Any]], bool]
    ) -> dict[str, tuple[int, dict[str, Any]]]:
        wanted = set(keys)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StoreError(f"cannot read journal {str(self.path)!r}: {exc}") from exc
        lines = data.split(b"\n")
        torn = lines[-1] != b""  # the last write did not finish with its newline
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for index, raw in enumerate(lines):
            if not raw.strip():
                continue
            last = index == len(lines) - 1
            entry, problem = self._parse(raw)
            if entry is None:
                if last and torn:
                    _log.info(
                        "flowplan journal %s: skipped a torn last line (an interrupted write)",
                        self.path,
                    )
                else:
                    _log.warning(
                        "flowplan journal %s line %d skipped: %s", self.path, index + 1, problem
                    )
                continue
            if entry["key"] in wanted or element(entry):
                out[entry["key"]] = (index + 1, entry)
        return out

    @staticmethod
    def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
        try:
            line = raw.decode("utf-8")
            try:
                entry = json.loads(line, parse_constant=_reject_constant)
            except RecursionError:  # nested deeper than json can parse: what we wrote is read
                entry = _parse(line)
        except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
            return None, f"not a JSON line ({exc})"
        if not isinstance(entry, dict):
            return None, f"expected a JSON object, found {type(entry).__name__}"
        version = entry.get("format")
        if version != JOURNAL_FORMAT:
            return None, (
                f"journal format {version!r} is not {JOURNAL_FORMAT} (written by another "
                "flowplan version?)"
            )
        missing = [f for f in (*_HEAD_FIELDS, "value") if f not in entry]
        if missing or not isinstance(entry["key"], str) or not isinstance(entry["task"], str):
            return None, f"malformed entry (missing or bad fields: {missing or ['key/task']})"
        if not isinstance(entry["attempts"], int) or not isinstance(
            entry["duration_ms"], int | float
        ):
            return None, "malformed entry (attempts/duration_ms are not numbers)"
        return entry, ""

    # -- writing --------------------------------------------------------------------------
    def _encode(self, record: TaskRecord) -> bytes:
        try:
            return self.serializer.dumps(record.value)
        except SerializationError as exc:
            raise SerializationError(
                f"task {record.name!r}: its value cannot be written to the journal "
                f"{str(self.path)!r}: {exc}",
                value_type=getattr(exc, "value_type", ""),
                path=getattr(exc, "path", "$"),
            ) from exc

    def _append(self, line: bytes) -> None:
        try:
            with self.path.open("a+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":  # a torn line: start ours on a fresh one
                        line = b"\n" + line
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StoreError(
                f"cannot append to journal {str(self.path)!r}: {exc}; check the path and "
                "permissions"
            ) from exc
