"""Result caches: reuse a cache-eligible task's result across runs and processes.

Place in the data flow: spec → graph → keys → **cache** → plan → interpreter. A task is
cache-eligible when it says ``@task(cache=True)`` or ``effect="pure"``. Its result is stored under
a :class:`~flowplan.keys.CacheKey` — a digest over named parts (its code, each helper it calls,
its gates, its ``version=``, each input's fingerprint, each cached upstream task's key) — and the
parts are stored with it, so :meth:`Plan.explain` can say *why* a task runs again ("helper
`clean()` changed", "input `x` changed", "upstream `load` changed", "no cached result").

:class:`ResultCache` is the extension point (a Protocol: no base class required);
:class:`MemoryCache` lives in one process, :class:`SqliteCache` is a file shared by processes.
Values go through a store serializer (JSON by default, pickle opt-in); a value the serializer
cannot encode is simply not cached.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Protocol, runtime_checkable

import attrs

from flowplan.errors import DefinitionError, InvalidOptionError, StoreError
from flowplan.keys import CacheKey
from flowplan.store._bytes_serializer import BytesSerializer, as_result_serializer
from flowplan.store._serializers import ResultSerializer

__all__ = [
    "CachedResult",
    "MemoryCache",
    "ResultCache",
    "SqliteCache",
    "UnfingerprintableInputError",
    "describe_changes",
]


class UnfingerprintableInputError(DefinitionError, TypeError):
    """A cache-eligible task receives an input that has no stable fingerprint (strict mode).

    Attributes:
        task: the task.
        parameter: the parameter (or upstream task) the input arrives as.
        value_type: the input's type name.
    """

    def __init__(self, message: str, *, task: str, parameter: str, value_type: str) -> None:
        super().__init__(message, task=task)
        self.parameter = parameter
        self.value_type = value_type


def _label(part: str) -> str:
    kind, _, name = part.partition(":")
    if kind == "helper":
        return f"helper `{name}()`"
    if kind == "gate":
        return f"gate `{name}`"
    if kind == "input":
        return f"input `{name}`"
    if kind == "upstream":
        return f"upstream `{name}`"
    return "its code" if part == "code" else part


def describe_changes(old: Mapping[str, str] | None, new: Mapping[str, str]) -> str:
    """Say which parts differ between a stored key and the current one.

    >>> describe_changes({"code": "1", "input:x": "2"}, {"code": "1", "input:x": "3"})
    'input `x` changed'
    >>> describe_changes(None, {"code": "1"})
    'no cached result'

    Args:
        old: The parts of the latest stored entry for the task, or ``None``.
        new: The parts of the current key.

    Returns:
        E.g. ``"helper `clean()` changed, input `x` changed"``, ``"version changed"``, or
        ``"no cached result"`` when nothing was stored or nothing differs.
    """
    if old is None:
        return "no cached result"
    if ("version" in old) != ("version" in new):
        return "version added" if "version" in new else "version removed"
    said: list[str] = []
    for part in sorted(set(old) | set(new), key=_order):
        kind, _, name = part.partition(":")
        if kind in ("upstream", "input"):  # a value that arrives keyed one run, valued the next
            other = f"{'input' if kind == 'upstream' else 'upstream'}:{name}"
            if (part in old) != (part in new) and (other in old) != (other in new):
                if kind == "input":
                    said.append(f"input `{name}` changed")
                continue
        if part not in old:
            said.append(f"{_label(part)} added")
        elif part not in new:
            said.append(f"{_label(part)} removed")
        elif old[part] != new[part]:
            said.append(f"{_label(part)} changed")
    return ", ".join(said) if said else "no cached result"


def _order(part: str) -> tuple[int, str]:
    kinds = ("version", "code", "helper", "gate", "upstream", "input")
    kind = part.partition(":")[0]
    return (kinds.index(kind) if kind in kinds else len(kinds), part)


def _freeze(parts: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(parts))


@attrs.frozen
class CachedResult:
    """One cache entry, as read back.

    Attributes:
        task: the task that produced it.
        key: the :class:`~flowplan.keys.CacheKey` digest it is stored under.
        parts: the key's named parts (for explanations).
        value: the deserialized value.
        created_at: when it was stored (epoch seconds).
    """

    task: str
    key: str
    parts: Mapping[str, str] = attrs.field(converter=_freeze, hash=False, repr=False)
    value: object = attrs.field(repr=False)
    created_at: float


@runtime_checkable
class ResultCache(Protocol):
    """Where cache-eligible tasks' results live between runs (no base class required).

    ``strict`` makes an input without a stable fingerprint a plan-time error
    (:class:`UnfingerprintableInputError`) instead of leaving that task uncached.
    """

    @property
    def strict(self) -> bool:
        """Whether an input that cannot be fingerprinted is an error (else: not cached)."""
        ...

    def get(self, task: str, key: str) -> CachedResult | None:
        """The entry stored for ``task`` under ``key``, or ``None``.

        Raises:
            SerializationError: the stored bytes cannot be decoded (treated as a miss).
        """
        ...

    def put(self, task: str, key: CacheKey, value: object) -> None:
        """Store ``value`` for ``task`` under ``key`` (with its parts).

        Raises:
            SerializationError: the value cannot be serialized (it is then not cached).
        """
        ...

    def latest(self, task: str) -> Mapping[str, str] | None:
        """The key parts of the newest entry stored for ``task``, or ``None``."""
        ...


def _options(
    owner: str, serializer: ResultSerializer | BytesSerializer | None, strict: object
) -> tuple[ResultSerializer, bool]:
    """Check a cache's options; return the serializer (default JSON) and ``strict``.

    Raises:
        InvalidOptionError: ``serializer`` has neither ``dumps``/``loads`` nor
            ``serialize``/``deserialize``, or ``strict`` is not a bool.
    """
    adapted = as_result_serializer(serializer, owner)
    if not isinstance(strict, bool):
        raise InvalidOptionError(
            f"{owner}(strict=...) expects True or False, got {strict!r} "
            f"({type(strict).__name__}); pass strict=True to make unfingerprintable inputs errors",
            option="strict",
            value=strict,
        )
    return adapted, strict


class MemoryCache:
    """A result cache in this process's memory (values are stored serialized, so they are
    copies: a consumer mutating a reused value never changes the cache).

    Args:
        serializer: how values become bytes (default :class:`~flowplan.JsonSerializer`).
        strict: an input that cannot be fingerprinted is a plan-time error.

    Raises:
        InvalidOptionError: ``serializer`` is not a ResultSerializer or ``strict`` not a bool.
    """

    def __init__(
        self, *, serializer: ResultSerializer | BytesSerializer | None = None, strict: bool = False
    ) -> None:
        self._serializer, self._strict = _options("MemoryCache", serializer, strict)
        self._entries: dict[tuple[str, str], tuple[Mapping[str, str], bytes, float]] = {}
        self._latest: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def strict(self) -> bool:
        """Whether an input that cannot be fingerprinted is an error."""
        return self._strict

    @property
    def serializer(self) -> ResultSerializer:
        """How values become bytes (with JSON, typed values are stored by their declared type)."""
        return self._serializer

    def __len__(self) -> int:
        """The number of stored entries."""
        return len(self._entries)

    def get(self, task: str, key: str) -> CachedResult | None:
        """The entry for ``task`` under ``key``, or ``None``."""
        with self._lock:
            entry = self._entries.get((task, key))
        if entry is None:
            return None
        parts, data, created = entry
        return CachedResult(task, key, parts, self._serializer.loads(data), created)

    def put(self, task: str, key: CacheKey, value: object) -> None:
        """Store ``value`` (serialized) for ``task`` under ``key``."""
        data = self._serializer.dumps(value)
        with self._lock:
            self._entries[task, key.digest] = (key.parts, data, time.time())
            self._latest[task] = key.digest

    def latest(self, task: str) -> Mapping[str, str] | None:
        """The key parts of the newest entry for ``task``, or ``None``."""
        with self._lock:
            digest = self._latest.get(task)
            return None if digest is None else self._entries[task, digest][0]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._latest.clear()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS flowplan_cache (
    task TEXT NOT NULL,
    key TEXT NOT NULL,
    parts TEXT NOT NULL,
    value BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (task, key)
)
"""


class SqliteCache:
    """A result cache in one SQLite file, shared by every process that opens it.

    Each ``put`` is committed at once (WAL mode, so readers never block the writer); a second
    process opening the same path sees every committed entry.

    It holds an open database connection: close it when done, with :meth:`close` or by using
    it as a context manager (``with SqliteCache(path) as cache: ...``). A connection left open
    is closed only when the object is collected, with a ``ResourceWarning`` on Python 3.13+.

    Args:
        path: the database file (created if missing).
        serializer: how values become bytes (default JSON; pickle only for files you trust).
        strict: an input that cannot be fingerprinted is a plan-time error.

    Raises:
        StoreError: the file cannot be opened as a cache database.
        InvalidOptionError: ``serializer`` is not a ResultSerializer or ``strict`` not a bool.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        serializer: ResultSerializer | BytesSerializer | None = None,
        strict: bool = False,
    ) -> None:
        self._serializer, self._strict = _options("SqliteCache", serializer, strict)
        self.path: Path = Path(path)
        self._lock = threading.Lock()
        import sqlite3  # on first use: `import flowplan` stays light

        from flowplan.store._sqltext import TextSafeConnection

        try:
            self._conn = sqlite3.connect(
                self.path,
                timeout=30.0,
                check_same_thread=False,
                isolation_level=None,
                factory=TextSafeConnection,  # any task name binds (escaped when not UTF-8)
            )
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open result cache {str(self.path)!r}: {exc}; pass the path of a "
                "new file or of a file an earlier SqliteCache created"
            ) from exc

    @property
    def strict(self) -> bool:
        """Whether an input that cannot be fingerprinted is an error."""
        return self._strict

    @property
    def serializer(self) -> ResultSerializer:
        """How values become bytes (with JSON, typed values are stored by their declared type)."""
        return self._serializer

    def get(self, task: str, key: str) -> CachedResult | None:
        """The entry for ``task`` under ``key``, or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT parts, value, created_at FROM flowplan_cache WHERE task = ? AND key = ?",
                (task, key),
            ).fetchone()
        if row is None:
            return None
        parts = json.loads(row[0])
        return CachedResult(task, key, parts, self._serializer.loads(row[1]), row[2])

    def put(self, task: str, key: CacheKey, value: object) -> None:
        """Store ``value`` (serialized) for ``task`` under ``key``, committed at once."""
        data = self._serializer.dumps(value)
        parts = json.dumps(dict(key.parts), sort_keys=True)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO flowplan_cache VALUES (?, ?, ?, ?, ?)",
                (task, key.digest, parts, data, time.time()),
            )

    def latest(self, task: str) -> Mapping[str, str] | None:
        """The key parts of the newest entry for ``task``, or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT parts FROM flowplan_cache WHERE task = ? "
                "ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (task,),
            ).fetchone()
        return None if row is None else MappingProxyType(json.loads(row[0]))

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
