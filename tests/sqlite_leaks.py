"""Every SQLite connection a test opens must be closed by the test: found on every Python.

Python 3.13 warns (``ResourceWarning``) when an unclosed ``sqlite3.Connection`` is collected,
which ``filterwarnings = error`` turns into an error in whichever test happens to be running
then. Older Pythons close it silently. :func:`install` makes both behave the same and name the
culprit: ``sqlite3.connect`` hands out a subclass of the requested connection class that
remembers where it was opened; one collected without ``close()`` is closed and recorded, and
the autouse fixture in ``conftest.py`` fails the test that leaked it, naming the line.
(``with sqlite3.connect(path) as conn:`` commits but does not close: it counts as a leak.)
"""

from __future__ import annotations

import sqlite3
import threading
import traceback
from typing import Any

_LOCK = threading.Lock()
_LEAKS: list[str] = []
_CLASSES: dict[type[sqlite3.Connection], type[sqlite3.Connection]] = {}
_REAL_CONNECT = sqlite3.connect


def _site() -> str:
    """Where a connection is opened: the innermost test (or doc, or script) frames, and the
    flowplan frame that opened it."""
    frames = [
        f
        for f in traceback.extract_stack()[:-2]
        if "site-packages" not in f.filename
        and f.filename != __file__
        and not f.filename.startswith("<frozen")
    ]
    ours = [f for f in frames if "/src/flowplan/" not in f.filename]
    opener = [f for f in frames[-1:] if "/src/flowplan/" in f.filename]
    return "".join(traceback.format_list(ours[-3:] + opener)).rstrip()


def _tracking(factory: type[sqlite3.Connection]) -> type[sqlite3.Connection]:
    with _LOCK:
        cls = _CLASSES.get(factory)
        if cls is None:

            class Tracked(factory):  # type: ignore[valid-type,misc]
                _opened_at = ""
                _closed = False

                def close(self) -> None:
                    self._closed = True
                    super().close()

                def __del__(self) -> None:  # no lock here: a collection may run anywhere
                    if not self._closed:
                        _LEAKS.append(self._opened_at)  # atomic
                        self._closed = True
                        super().close()

            Tracked.__name__ = Tracked.__qualname__ = factory.__name__
            cls = _CLASSES[factory] = Tracked
    return cls


def _connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    factory = kwargs.pop("factory", sqlite3.Connection)
    conn = _REAL_CONNECT(*args, factory=_tracking(factory), **kwargs)
    conn._opened_at = _site()  # type: ignore[attr-defined]
    return conn


def install() -> None:
    """Route ``sqlite3.connect`` through the tracking factory (idempotent)."""
    sqlite3.connect = _connect  # type: ignore[assignment]


def take_leaks() -> list[str]:
    """The opening sites of the connections collected unclosed since the last call."""
    leaks = _LEAKS[:]
    del _LEAKS[: len(leaks)]  # a leak recorded meanwhile stays for the next call
    return leaks
