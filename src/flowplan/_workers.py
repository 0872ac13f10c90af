"""The thread driver's own worker pool: long-lived worker loops fed task names by a queue.

Place in the data flow: interpreter (thread driver) → **workers** → task bodies. When
:func:`~flowplan.interpreter.execute` owns its pool (no ``executor=`` given), it hands ready
task names to a :class:`Workers` instead of calling ``ThreadPoolExecutor.submit`` per task: no
``Future`` per task, no per-task lock or condition, and no semaphore round-trip. It behaves as
the ``ThreadPoolExecutor`` it replaces: at most ``max_workers`` threads, started lazily (a new
one only when no started one is idle), FIFO, named ``flowplan_<n>``; :meth:`Workers.shutdown`
lets queued names run, while ``cancel=True`` drops them unstarted (an aborted run).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Workers"]

Job = Callable[[Any, str, Callable[[Any], None]], None]


class Workers:
    """A run-owned thread pool that runs ``job(run, name, emit)`` for each submitted name."""

    __slots__ = ("_closed", "_count", "_emit", "_idle", "_jobs", "_max", "_run", "_work")

    def __init__(
        self,
        run: Any,
        emit: Callable[[Any], None],
        jobs: tuple[frozenset[str], Job, Job],
        max_workers: int | None,
    ) -> None:
        """Prepare a pool; no thread starts before the first :meth:`submit`.

        Args:
            run: the run handed to every job.
            emit: where jobs put their events.
            jobs: (plain names, the job for those, the job for every other name).
            max_workers: the most threads (default: ``ThreadPoolExecutor``'s,
                ``min(32, os.cpu_count() + 4)``); validated by the caller.
        """
        self._run = run
        self._emit = emit
        self._jobs = jobs
        self._max = max_workers if max_workers is not None else min(32, (os.cpu_count() or 1) + 4)
        self._work: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        # One token per worker that went back to waiting (list append/pop are atomic): the
        # submitter takes one per name, and starts a thread when none is left.
        self._idle: list[None] = []
        self._count = 0
        self._closed = False

    def submit(self, names: list[str]) -> None:
        """Queue ``names`` to run, starting threads as needed.

        Args:
            names: task names, run in this order (FIFO) as workers free up.
        """
        put = self._work.put
        idle = self._idle
        for name in names:
            put(name)
            if idle:
                idle.pop()
            elif self._count < self._max:
                self._start()

    def _start(self) -> None:
        # Daemons: a run that ends early (an interrupt) abandons the tasks still running, and
        # they must not keep the process from exiting.
        thread = threading.Thread(target=self._loop, name=f"flowplan_{self._count}", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread": the running ones take the queue
            if self._count == 0:
                raise  # none runs: the run ends through its abort path
            self._max = self._count
            return
        self._count += 1

    def _loop(self) -> None:
        get = self._work.get
        idle = self._idle.append
        run = self._run
        emit = self._emit
        plain, plain_job, job = self._jobs
        while True:
            name = get()
            if name is None or self._closed:
                return
            (plain_job if name in plain else job)(run, name, emit)
            idle(None)

    def shutdown(self, *, cancel: bool = False) -> None:
        """Let every worker end once the queue is drained (``cancel``: drop queued names).

        Does not wait for running jobs (as ``ThreadPoolExecutor.shutdown(wait=False)``).

        Args:
            cancel: queued names never start (they stay unrecorded for the run to record).
        """
        if cancel:
            self._closed = True
        for _ in range(self._count):
            self._work.put(None)
        self._count = 0
