"""A ``concurrent.futures`` executor whose threads are daemons: what ``aexecute`` (and an
``Engine`` that owns its pool) runs sync attempts on when no ``executor=`` is given.

Place in the data flow: interpreter (``aexecute``) → **daemon threads** → sync task bodies. A run
that ends early (a task's ``KeyboardInterrupt``, a cancelled ``aexecute``) records the sync
attempts still running as interrupted and abandons them: they cannot be stopped. On the
loop's default executor they would keep ``asyncio.run`` (which joins that executor's threads)
and the process from ending until they return; on daemon threads they do not. Otherwise it
behaves as the default executor: at most ``min(32, os.cpu_count() + 4)`` threads, started only
when no started one is idle, FIFO.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["DaemonThreads"]

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreads(Executor):
    """Run submitted calls on daemon threads (never joined at exit)."""

    def __init__(
        self, max_workers: int | None = None, *, thread_name_prefix: str = "flowplan-sync"
    ) -> None:
        """Prepare a pool; no thread starts before the first :meth:`submit`.

        Args:
            max_workers: the most threads (default: ``min(32, os.cpu_count() + 4)``).
            thread_name_prefix: threads are named ``<prefix>_<n>``.
        """
        self._name = thread_name_prefix
        self._max = max_workers if max_workers is not None else min(32, (os.cpu_count() or 1) + 4)
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._idle: list[None] = []  # one token per thread waiting for work (atomic append/pop)
        self._count = 0
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; return its future."""
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[T] = Future()
        self._work.put((future, fn, args, kwargs))
        if self._idle:
            self._idle.pop()
        elif self._count < self._max:
            thread = threading.Thread(
                target=self._loop, name=f"{self._name}_{self._count}", daemon=True
            )
            thread.start()
            self._count += 1
        return future

    def _loop(self) -> None:
        get = self._work.get
        idle = self._idle.append
        while True:
            item = get()
            if item is None:
                return
            _run(*item)
            del item  # nothing of a finished call outlives it here
            idle(None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Let every thread end once the queued calls ran; never waits for running ones."""
        self._closed = True
        for _ in range(self._count):
            self._work.put(None)
        self._count = 0


def _run(future: Future[Any], fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # handed to the awaiting side, as any executor does
        future.set_exception(exc)
    else:
        future.set_result(result)
