"""Per-task process isolation (``isolation="process"``) on runs that share memory.

Place in the data flow: inside the interpreter. When a run's executor shares memory (inline,
threads, asyncio), the tasks declared ``isolation="process"`` run their attempts in child
processes: remote-attempt mode for those tasks only. Their programs — gates, retries, backoff,
events, the store — stay in the driver, as for every task; each attempt is one pickled payload
for :func:`~flowplan._remote.run_attempt` on a :class:`~flowplan.executors.ProcessExecutor`
the run owns. The pool is created on the first isolated attempt, sized by ``process_workers``
(default: ``min(os.cpu_count(), isolated tasks planned)``), and shut down when the run ends —
also when it is interrupted, killing the attempts still running. A timed-out attempt's process
is killed; its retry runs in another process. With a remote executor every attempt already
runs in another process, so nothing here is used.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flowplan._fanout import origin
from flowplan._process import ProcessExecutor
from flowplan._program import Outcome, Raised, TimedOut
from flowplan._remote import (
    has_cloudpickle,
    is_remote,
    outcome_of,
    overdue,
    payload,
    pickle_functions,
    run_attempt,
)
from flowplan.errors import SerializationError
from flowplan.executors import validate_max_workers

if TYPE_CHECKING:
    from flowplan._machine import _Run
    from flowplan.spec import TaskSpec

__all__ = ["Isolated", "isolate"]


def isolate(run: _Run, executor: object, process_workers: int | None) -> Isolated | None:
    """Prepare ``run``'s isolated tasks; ``None`` when there are none to isolate.

    Checks, before anything runs, that every planned ``isolation="process"`` task can be sent
    to a child process. Nothing is isolated on a remote executor (it runs every attempt in
    another process already).

    Args:
        run: the run about to start.
        executor: the run's executor (``None``: the default thread pool).
        process_workers: child processes at most (default: ``min(os.cpu_count(), isolated
            tasks planned)``, a fan-out task counting as ``os.cpu_count()`` tasks).

    Returns:
        The run's :class:`Isolated` attempts, or ``None``.

    Raises:
        InvalidOptionError: ``process_workers`` is not a whole number >= 1.
        SerializationError: naming every isolated task whose function (or the run's context,
            for tasks that receive it) cannot be pickled.
    """
    if process_workers is not None:
        validate_max_workers(process_workers, "process_workers")
    if executor is not None and is_remote(executor):
        return None
    specs = run.graph.specs
    names = [name for name in run.plan.to_run if specs[name].isolation == "process"]
    if not names:
        return None
    blobs, problems = pickle_functions(run, names)
    if problems:
        hint = "" if has_cloudpickle() else " (install cloudpickle for lambdas and closures)"
        raise SerializationError(
            f"{len(problems)} task(s) declared isolation='process' cannot be sent to a child "
            f"process: the task function (and the run's context, if the task receives it) "
            f"must pickle{hint}; define the task at module level, or drop "
            "isolation='process' to run it in this process:\n  " + "\n  ".join(problems),
            value_type="function",
        )
    cpus = os.cpu_count() or 1
    # one child per isolated task; a fan-out task may open many elements at once
    wanted = sum(cpus if specs[name].fan_out is not None else 1 for name in names)
    workers = process_workers or min(cpus, wanted)
    return Isolated(run, blobs, workers)


class Isolated:
    """A run's isolated tasks and the process pool their attempts run on (created lazily).

    Thread-safe: the thread driver's workers call :meth:`call` concurrently.

    Attributes:
        names: the isolated tasks of the run.
        workers: the pool's size.
    """

    def __init__(self, run: _Run, blobs: Mapping[str, bytes], workers: int) -> None:
        self._run = run
        self.names = frozenset(blobs)
        self.workers = workers
        self._blobs = dict(blobs)
        self._lock = threading.Lock()
        self._pool: ProcessExecutor | None = None
        self._closed = False
        self._reason: BaseException | None = None
        self._in_flight: set[Future[Any]] = set()

    def covers(self, name: str) -> bool:
        """Whether ``name``'s attempts run in a child process (an element instance of an
        isolated fan-out task too)."""
        return origin(self._run, name) in self.names

    @property
    def started(self) -> bool:
        """Whether the pool was created (some isolated attempt was submitted)."""
        return self._pool is not None

    def _submit(
        self, spec: TaskSpec[..., Any], kwargs: Mapping[str, Any], run_id: str, attempt: int
    ) -> tuple[ProcessExecutor, Future[Any]]:
        fn_blob = self._blobs[origin(self._run, spec.name)]
        blob = payload(spec, fn_blob, dict(kwargs), run_id, attempt)
        with self._lock:
            if self._closed:
                raise self._reason or RuntimeError("the run ended: its process pool is shut down")
            if self._pool is None:
                self._pool = ProcessExecutor(self.workers)
            pool = self._pool
            note = self._run.attempt_note(spec.name, attempt)  # at_most_once: the child's pid
            future = pool.submit_noted(note, run_attempt, blob)
            self._in_flight.add(future)
        future.add_done_callback(self._landed)
        return pool, future

    def _landed(self, future: Future[Any]) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def call(
        self, spec: TaskSpec[..., Any], kwargs: Mapping[str, Any], run_id: str, attempt: int
    ) -> Outcome:
        """Run one attempt in a child process and wait for it (thread and inline drivers).

        Same contract as :func:`flowplan._program.call`; on timeout the child is killed. An
        interrupt while waiting kills the child and is returned as the attempt's outcome.
        """
        start = time.perf_counter()
        try:
            pool, future = self._submit(spec, kwargs, run_id, attempt)
        except BaseException as exc:  # inputs that cannot pickle, or the run already ended
            return Raised(exc, 0.0)
        submitted = time.monotonic()
        timeout = spec.timeout_s
        try:
            while not future.done():
                wait = None
                if timeout is not None:
                    wait = overdue(pool, future, timeout, submitted)
                    if wait <= 0:
                        pool.abandon(future)  # kills the child: the attempt stops for real
                        return TimedOut((time.perf_counter() - start) * 1000)
                concurrent.futures.wait((future,), timeout=wait)
        except BaseException as exc:  # e.g. KeyboardInterrupt in the inline driver
            pool.abandon(future)
            return Raised(exc, (time.perf_counter() - start) * 1000)
        return self._outcome(future)

    async def acall(
        self, spec: TaskSpec[..., Any], kwargs: Mapping[str, Any], run_id: str, attempt: int
    ) -> Outcome:
        """Run one attempt in a child process from asyncio (``aexecute``).

        A cancelled run kills the attempt's child.
        """
        start = time.perf_counter()
        try:
            pool, future = self._submit(spec, kwargs, run_id, attempt)
        except BaseException as exc:
            return Raised(exc, 0.0)
        submitted = time.monotonic()
        timeout = spec.timeout_s
        waiter = asyncio.wrap_future(future)
        try:
            while not future.done():
                wait = None
                if timeout is not None:
                    wait = overdue(pool, future, timeout, submitted)
                    if wait <= 0:
                        pool.abandon(future)
                        return TimedOut((time.perf_counter() - start) * 1000)
                await asyncio.wait({waiter}, timeout=wait)
        except asyncio.CancelledError:
            pool.abandon(future)
            raise
        return self._outcome(future)

    def _outcome(self, future: Future[Any]) -> Outcome:
        outcome = outcome_of(future)
        reason = self._reason
        if reason is not None and isinstance(outcome, Raised):
            return Raised(reason, outcome.duration_ms)  # killed because the run was stopped
        return outcome

    def close(self, reason: BaseException | None = None, *, wait: bool = True) -> None:
        """End the run's pool: kill attempts still running, stop the children (idempotent).

        Args:
            reason: what stopped the run, if it was stopped (an interrupt, a store error);
                attempts asked for afterwards, and attempts it killed, end with it.
            wait: wait for the child processes to exit.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._reason = reason
            pool = self._pool
            running = list(self._in_flight)
        if pool is None:
            return
        for future in running:
            pool.abandon(future)
        pool.shutdown(wait=wait, cancel_futures=True)
