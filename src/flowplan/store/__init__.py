"""State stores: where snapshots and records live beyond the interpreter.

Place in the data flow: snapshot → **store**. :class:`StateStore` is the protocol the interpreter
writes through; :class:`MemoryStore` keeps runs in memory; :class:`JournalStore` is flowing's
append-only JSON-lines journal. Serializers turn values into bytes — the store's business, never
the snapshot's.
"""

from typing import TYPE_CHECKING

from flowplan.store._bytes_serializer import BytesSerializer
from flowplan.store._journal import JournalStore
from flowplan.store._memory import MemoryStore
from flowplan.store._protocol import StateStore
from flowplan.store._serializers import (
    JsonSerializer,
    PickleSerializer,
    ResultSerializer,
    Unstructured,
)
from flowplan.store._typed import restore_values, typed_converter

if TYPE_CHECKING:
    from flowplan.store._sqlite import RunInfo, SqliteStateStore

__all__ = [
    "BytesSerializer",
    "JournalStore",
    "JsonSerializer",
    "MemoryStore",
    "PickleSerializer",
    "ResultSerializer",
    "RunInfo",
    "SqliteStateStore",
    "StateStore",
    "Unstructured",
    "restore_values",
    "typed_converter",
]


def __getattr__(name: str) -> object:
    """``RunInfo`` and ``SqliteStateStore``, imported on first use (:mod:`sqlite3` with them)."""
    if name in ("RunInfo", "SqliteStateStore"):
        from flowplan.store import _sqlite

        value: object = getattr(_sqlite, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
