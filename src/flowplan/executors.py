"""Executors the interpreter can run attempts on.

Place in the data flow: used by the interpreter. Any ``concurrent.futures.Executor`` works; this
module adds :class:`InlineExecutor`, which runs each submission at once in the calling thread —
deterministic, single-threaded runs for tests and the lowest per-task overhead — and executors
that run attempts in other processes (:class:`RemoteExecutor`): :class:`ProcessExecutor`
(killable child processes) and :class:`DaskExecutor` (a ``distributed`` cluster).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

from flowplan._dask import DaskExecutor
from flowplan._process import AttemptKilledError, ProcessExecutor, WorkerDiedError
from flowplan.errors import InvalidOptionError

__all__ = [
    "AttemptKilledError",
    "DaskExecutor",
    "InlineExecutor",
    "ProcessExecutor",
    "RemoteExecutor",
    "WorkerDiedError",
    "validate_max_workers",
]

P = ParamSpec("P")
T = TypeVar("T")


@runtime_checkable
class RemoteExecutor(Protocol):
    """An executor that runs work in other processes (the marker the interpreter reads).

    With such an executor (``executes_remotely = True``; ``ProcessPoolExecutor`` is recognised
    too) a task's program — gates, retries, backoff, timeouts, events — stays in the calling
    process, and each attempt is submitted as one picklable payload to a module-level function.
    Optional methods: ``abandon(future) -> bool`` (stop a timed-out attempt; ``True`` when it
    no longer runs) and ``forget(future)`` (release an abandoned attempt nobody waits for).
    """

    executes_remotely: bool

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future``."""
        ...  # pragma: no cover


def validate_max_workers(value: object, option: str = "max_workers") -> int:
    """Check a worker count: a whole number >= 1.

    Raises:
        InvalidOptionError: naming the option and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptionError(
            f"{option} must be a whole number >= 1, got {value!r} ({type(value).__name__}); "
            f"use {option}=1 to run one task at a time",
            option=option,
            value=value,
        )
    return value


class InlineExecutor(Executor):
    """Run every submitted call immediately, in the submitting thread.

    >>> InlineExecutor().submit(pow, 2, 10).result()
    1024
    """

    def __init__(self) -> None:
        self._shutdown = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` now; return a completed future."""
        if self._shutdown:
            raise RuntimeError("cannot submit to an InlineExecutor after shutdown()")
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse further submissions (nothing is ever pending)."""
        self._shutdown = True
