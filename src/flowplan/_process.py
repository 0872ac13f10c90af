"""Process isolation: an executor whose attempts run in child processes that can be killed.

Place in the data flow: an executor the interpreter recognises as remote
(``executes_remotely = True``): task programs stay in the driver, each attempt is one pickled
payload. Each of ``max_workers`` slots is a driver thread owning one child process at a time
(``spawn`` by default: no inherited locks or threads). :meth:`ProcessExecutor.abandon` — called
by the interpreter when an attempt times out — kills that child for real; the slot starts a
fresh one for its next attempt, so a retry never shares a process with the attempt it replaces.

A child never outlives its parent (:func:`_die_with_parent`): on Linux the kernel kills it
when the parent dies (``PR_SET_PDEATHSIG``), and on every platform a watcher thread in the
child ends it when its *lifeline* — a pipe whose only writer is the parent — closes. So a
killed driver leaves no orphan that goes on to perform an effect its resume performs again.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, InvalidStateError
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from flowplan.errors import FlowplanError

if TYPE_CHECKING:  # multiprocessing is imported on first use: it costs `import flowplan` ~40 ms
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

__all__ = ["AttemptKilledError", "ProcessExecutor", "WorkerDiedError"]

P = ParamSpec("P")
T = TypeVar("T")


class WorkerDiedError(FlowplanError, RuntimeError):
    """The child process running an attempt died (crashed, or killed from outside)."""


class AttemptKilledError(FlowplanError, RuntimeError):
    """The attempt's process was killed on purpose (its attempt timed out or was abandoned)."""


def dumps(obj: object) -> bytes:
    """Pickle ``obj`` with cloudpickle when installed (lambdas, closures), else pickle."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle ships with the ``process`` extra
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


ORPHANED_EXIT = 70
"""A child's exit code when it ended because its parent died."""


def _set_death_signal() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent thread dies.

    The signal fires when the *thread* that started the child ends: each slot thread owns its
    child for the slot's whole life and stops it before ending, so that is the parent's death.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the lifeline remains
        return


def _die_with_parent(lifeline: Connection, parent: int, inherited: int) -> None:
    """End this child process as soon as its parent is gone (see the module docstring).

    ``lifeline`` is the read end of a pipe only the parent writes to (it never does): its end
    of file means the parent died. The check of ``parent`` (its pid; 0: not known, under
    ``forkserver``) catches a parent that died before the death signal was set (the child then
    has another parent already). ``inherited`` is the lifeline's write end a forked child
    inherited (``-1``: none), closed here so that only the parent holds it.
    """
    _set_death_signal()
    if parent and os.getppid() != parent:  # orphaned before the death signal was armed
        os._exit(ORPHANED_EXIT)
    if inherited >= 0:
        with contextlib.suppress(OSError):
            os.close(inherited)

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(ORPHANED_EXIT)  # the parent is gone: no attempt of ours may go on

    threading.Thread(target=watch, name="flowplan-lifeline", daemon=True).start()


def _child(
    conn: Connection, lifeline: Connection | None = None, parent: int = 0, inherited: int = -1
) -> None:
    """A worker process: run calls from ``conn`` until it closes; die with the parent."""
    if lifeline is not None:
        _die_with_parent(lifeline, parent, inherited)
    conn.send_bytes(b"ready")  # imported and listening: attempts' clocks may start
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            fn, args, kwargs = pickle.loads(data)
            result: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except BaseException as exc:
            result = (False, exc)
        try:
            reply = dumps(result)
        except Exception as exc:
            reply = dumps((False, RuntimeError(f"the result cannot be pickled: {exc!r}")))
        conn.send_bytes(reply)


Note = Callable[[int], None]
"""Called with the pid of the child process a call is about to be sent to."""
_Job = tuple[Future[Any], bytes, Note | None]


class ProcessExecutor(Executor):
    """Run submitted calls in child processes; a call can be killed for real.

    Calls and their results must pickle (``cloudpickle`` is used when installed, so lambdas
    and closures work). With :func:`~flowplan.execute`, the task program stays in the calling
    process and only each attempt is sent; an attempt that exceeds its ``timeout_s`` has its
    process killed, and a retry runs in a fresh process.

    Args:
        max_workers: how many child processes run at once (default: the CPU count).
        mp_context: a ``multiprocessing`` start method name or context (default ``"spawn"``).

    >>> with ProcessExecutor(1) as pool:
    ...     pool.submit(pow, 2, 10).result()
    1024
    """

    executes_remotely = True

    def __init__(
        self, max_workers: int | None = None, *, mp_context: str | BaseContext | None = None
    ) -> None:
        import multiprocessing

        from flowplan.executors import validate_max_workers

        self.max_workers: int = (
            validate_max_workers(max_workers) if max_workers is not None else os.cpu_count() or 1
        )
        if mp_context is None or isinstance(mp_context, str):
            self._ctx: Any = multiprocessing.get_context(mp_context or "spawn")
        else:
            self._ctx = mp_context
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: dict[Future[Any], BaseProcess] = {}
        self._began: dict[Future[Any], float] = {}
        self._threads: list[threading.Thread] = []
        self._lifelines: dict[BaseProcess, Connection] = {}  # each child's lifeline write end
        self._shutdown = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` in a child process.

        Raises:
            RuntimeError: after :meth:`shutdown`.
            Exception: whatever pickling the call raises (nothing is scheduled then).
        """
        return self.submit_noted(None, fn, *args, **kwargs)

    def submit_noted(
        self, note: Note | None, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        """:meth:`submit`, calling ``note(pid)`` just before the call is sent to the child
        process ``pid`` (the driver records which process runs an ``at_most_once`` attempt).

        If ``note`` raises, the call is not sent: its future ends with that error.
        """
        data = dumps((fn, args, kwargs))
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a ProcessExecutor after shutdown()")
            if not self._threads:
                for i in range(self.max_workers):
                    thread = threading.Thread(
                        target=self._slot, name=f"flowplan-process-{i}", daemon=True
                    )
                    thread.start()
                    self._threads.append(thread)
        self._jobs.put((future, data, note))
        return future

    def began(self, future: Future[Any]) -> float | None:
        """When the call was sent to a ready child (``time.monotonic()``), or ``None`` while
        it waits for a slot or a child's start-up: queue time never counts against a timeout.
        """
        if future.done():
            return 0.0
        with self._lock:
            return self._began.get(future)

    def abandon(self, future: Future[Any]) -> bool:
        """Stop the call behind ``future``: cancel it if queued, kill its process if running.

        Returns ``True``: afterwards the call no longer runs.
        """
        if future.cancel():
            return True
        # Settle first: a slot that has not sent the call yet sees it done and skips it.
        self._settle(future, False, AttemptKilledError("the attempt's process was killed"))
        with self._lock:
            process = self._running.pop(future, None)
        if process is not None:
            process.kill()
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; child processes exit once the queued calls are done."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _slot(self) -> None:
        process: BaseProcess | None = None
        conn: Connection | None = None
        try:
            while True:
                item = self._jobs.get()
                if item is None:
                    return
                future, data, note = item
                if not future.set_running_or_notify_cancel():
                    continue
                if process is None or conn is None or not process.is_alive():
                    try:
                        process, conn = self._start(process, conn)
                    except BaseException as exc:  # e.g. spawn without a __main__ guard
                        process = conn = None
                        self._settle(future, False, WorkerDiedError(
                            f"cannot start a worker process: {exc}"
                        ))  # fmt: skip
                        continue
                with self._lock:
                    self._running[future] = process
                if future.done():  # abandoned before it was sent
                    with self._lock:
                        self._running.pop(future, None)
                    continue
                if note is not None:
                    try:
                        note(process.pid or 0)
                    except BaseException as exc:  # e.g. the store cannot write: never sent
                        with self._lock:
                            self._running.pop(future, None)
                        self._settle(future, False, exc)
                        continue
                with self._lock:
                    self._began[future] = time.monotonic()
                try:
                    conn.send_bytes(data)
                    reply = conn.recv_bytes()
                except (EOFError, OSError):
                    process.join(5)
                    code = process.exitcode
                    process, conn = self._close(process, conn)
                    self._settle(future, False, WorkerDiedError(
                        f"the worker process died (exit code {code}) while running the call"
                    ))  # fmt: skip
                    continue
                finally:
                    with self._lock:
                        self._running.pop(future, None)
                        self._began.pop(future, None)
                ok, value = pickle.loads(reply)
                self._settle(future, ok, value)
        finally:
            if process is not None:
                self._close(process, conn)

    def _start(
        self, old: BaseProcess | None, conn: Connection | None
    ) -> tuple[BaseProcess, Connection]:
        if old is not None:
            self._close(old, conn)
        parent, child = self._ctx.Pipe()
        # The lifeline: the child reads, this process holds the only write end (a forked
        # child inherits it too, so "fork" contexts rely on the Linux death signal alone).
        lifeline, keep = self._ctx.Pipe(duplex=False)
        method = self._ctx.get_start_method()
        parent_pid = 0 if method == "forkserver" else os.getpid()  # forkserver: not our child
        inherited = keep.fileno() if method == "fork" else -1
        process: BaseProcess = self._ctx.Process(
            target=_child,
            args=(child, lifeline, parent_pid, inherited),
            name="flowplan-worker",
            daemon=True,
        )
        try:
            process.start()
        finally:
            child.close()
            lifeline.close()
        with self._lock:
            self._lifelines[process] = keep  # closed with the child
        try:
            parent.recv_bytes()  # the child's start-up never counts against a timeout
        except BaseException:
            self._close(process, parent)
            raise
        return process, parent

    def _close(self, process: BaseProcess, conn: Connection | None) -> tuple[None, None]:
        if conn is not None:
            conn.close()  # the child's recv ends: it exits
        process.join(1)
        if process.is_alive():
            process.kill()
            process.join()
        with self._lock:
            lifeline = self._lifelines.pop(process, None)
        if lifeline is not None:
            lifeline.close()
        return None, None

    @staticmethod
    def _settle(future: Future[Any], ok: bool, value: Any) -> None:
        try:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        except InvalidStateError:
            pass  # abandoned (killed) meanwhile
