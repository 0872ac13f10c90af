"""Pausing the cyclic garbage collector while flowplan builds its own bookkeeping.

Place in the data flow: used by graph (``TaskGraph.build``) and plan (``plan()``), the two
steps that allocate many small containers per task and run no task code. CPython's collector
starts a full collection once the objects that survived younger collections reach a quarter
of the long-lived ones; building a 100,000-task graph keeps ~100,000 short-lived lists alive
for a moment, enough to trigger one, which then walks every object of the process (about
1 µs per task at that size). Pausing the collector for the length of the step removes that
walk: the step's temporaries are freed before anything looks at them. Nothing is lost: the
collector runs again, as configured, once the step returns.

Pauses nest and may overlap across threads: the collector is re-enabled when the last pause
ends, and only if it was enabled when the first began (a program that disabled it keeps it
disabled).
"""

from __future__ import annotations

import gc
import threading
from types import TracebackType

__all__ = ["gc_paused"]


class _GcPause:
    """``with gc_paused:`` — one shared, reentrant pause (a counter under a lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False  # whether the collector was enabled when the outermost began

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._resume:
                gc.enable()


gc_paused = _GcPause()
"""Pause the cyclic garbage collector for a ``with`` block (see the module docstring)."""
