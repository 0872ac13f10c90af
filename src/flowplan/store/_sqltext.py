"""Text SQLite can hold: any Python string, lone surrogates included, stored reversibly.

Place in the data flow: store (SQLite), under every connection flowplan opens on a store file
(:class:`~flowplan.store.SqliteStateStore`, :class:`~flowplan.cache.SqliteCache`, the CLI's run
book). A Python string can hold lone surrogates — ``os.fsdecode(b"\\xff") == "\\udcff"``, as
file names, command lines and environment variables that are not valid UTF-8 decode — and
SQLite text is UTF-8, so :mod:`sqlite3` refuses such a string with ``UnicodeEncodeError``.

The escape, reversible and never lossy: a string UTF-8 can encode is bound as TEXT, as always;
a string it cannot encode is bound as a BLOB of its UTF-8 bytes with each lone surrogate
written as its own three bytes (Python's ``"surrogatepass"`` error handler). :func:`text`
turns such a BLOB read from a text column back into exactly the original string. The storage
type is the marker — TEXT for every ordinary string, BLOB only for one UTF-8 cannot hold — so
no ordinary string is ever mistaken for an escaped one, and equal strings always bind to equal
values (lookups by an escaped run id or task name find their rows).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TextSafeConnection", "bindable", "text", "text_or_none"]


def _storable(value: object) -> object:
    if type(value) is str and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass")
    return value


def bindable(params: Any) -> Any:
    """``params`` (a sequence or a mapping) with every string UTF-8 cannot encode escaped.

    The same object comes back when nothing needs escaping (the common case, checked cheaply:
    an ASCII string never needs it).

    >>> bindable(("a", 1)) == ("a", 1)
    True
    >>> bindable(("\\udcff",))
    (b'\\xed\\xb3\\xbf',)
    """
    if isinstance(params, Mapping):
        values: Iterable[object] = params.values()
        if any(type(v) is str and not v.isascii() for v in values):
            return {k: _storable(v) for k, v in params.items()}
        return params
    if any(type(v) is str and not v.isascii() for v in params):
        return tuple(map(_storable, params))
    return params


def text(value: object) -> str:
    """A text column's value as the string that was stored (see the module docstring).

    Raises:
        TypeError: the value is neither text nor an escaped string (e.g. ``NULL`` or a number
            where text was expected).
        UnicodeDecodeError: a BLOB that is not an escaped string.

    >>> text(b"\\xed\\xb3\\xbf") == "\\udcff"
    True
    """
    if type(value) is str:
        return value
    if type(value) is bytes:
        return value.decode("utf-8", "surrogatepass")
    raise TypeError(f"expected text, found {type(value).__name__} {value!r:.60}")


def text_or_none(value: object) -> str | None:
    """:func:`text`, with ``NULL`` read as ``None``."""
    return None if value is None else text(value)


class TextSafeConnection(sqlite3.Connection):
    """A :class:`sqlite3.Connection` whose ``execute``/``executemany`` bind any string.

    Pass it as ``sqlite3.connect(..., factory=TextSafeConnection)``. A statement whose
    parameters UTF-8 can encode runs exactly as on a plain connection (``execute`` tries it
    first; binding fails before SQLite runs anything, so the retry with escaped parameters is
    the statement's only execution). ``executemany`` escapes each row before binding it.
    """

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except UnicodeEncodeError:
            return super().execute(sql, bindable(parameters))

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        return super().executemany(sql, map(bindable, parameters))
