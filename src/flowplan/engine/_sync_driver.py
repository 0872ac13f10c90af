"""The Engine's driver for runs whose tasks are all sync: the core's thread driver, awaited.

Place in the data flow: façade (flowrun's API over plan → **execute** → store). A run with no
``async def`` task to run gains nothing from the event loop, and paid for it one loop hop (a
coroutine, an asyncio Task and a thread hand-off) per task. :func:`arun_sync` runs the same
scheduling machine (:class:`~flowplan._machine._Run`) as :func:`flowplan.execute`'s thread
driver, in one daemon thread, and awaits it:

* attempts run on the Engine's executor, at most ``limit`` at once (:class:`_Capped`,
  the per-run ``max_parallel`` over a pool shared by runs);
* cancelling the awaiting coroutine stops the driver as a cancelled :func:`flowplan.aexecute`
  stops: finished tasks keep their records, running ones are recorded as interrupted (and
  abandoned), the rest cancelled, ``RunFinished`` is emitted — all before the cancellation
  propagates — and the exception carries the snapshot as ``flowplan_snapshot``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from flowplan._isolation import isolate
from flowplan._machine import _Done, _Run
from flowplan.events import TaskEvent, TaskFailed
from flowplan.hooks import Hook
from flowplan.interpreter import _apply, _job, _plain_job
from flowplan.plan import Plan
from flowplan.policies import RetryBudget
from flowplan.snapshot import ErrorInfo, Snapshot

if TYPE_CHECKING:
    from flowplan.store import StateStore

__all__ = ["arun_sync"]

_Work = tuple[Callable[..., None], tuple[Any, ...]]


class _Capped:
    """Start calls on ``inner`` with at most ``limit`` running at once; the rest wait here.

    A thread of ``inner`` that finishes a call runs the next waiting one itself (no second
    hand-off, no future per call: the thread driver's jobs report through its queue and
    never raise).
    """

    def __init__(self, inner: Executor, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._running = 0
        self._waiting: collections.deque[_Work] = collections.deque()
        self._lock = threading.Lock()

    def start(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` now or when a slot frees (``RuntimeError``: ``inner`` is shut
        down)."""
        with self._lock:
            if self._running >= self._limit:
                self._waiting.append((fn, args))
                return
            self._running += 1
        try:
            self._inner.submit(self._work, fn, args)
        except BaseException:
            with self._lock:
                self._running -= 1
            raise

    def _work(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        work: _Work | None = (fn, args)
        while work is not None:
            try:
                work[0](*work[1])
            finally:
                with self._lock:
                    if self._waiting:
                        work = self._waiting.popleft()
                    else:
                        self._running -= 1
                        work = None


class _Stop:
    """A queue item ending the run from outside: the driver raises ``exc``."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _drive(
    run: _Run,
    pool: _Capped,
    events: queue.SimpleQueue[TaskEvent | _Done | _Stop],
) -> Snapshot:
    """:func:`flowplan.execute`'s loop over an executor, also ended by a :class:`_Stop`."""
    plain = run.plain
    emit = events.put
    clock = run.clock

    def submit(names: list[str]) -> None:
        for name in names:
            try:
                pool.start(_plain_job if name in plain else _job, run, name, emit)
            except RuntimeError as exc:  # executor shut down under us
                info = ErrorInfo.from_exception(exc, kind="crashed")
                emit(TaskFailed(run.run_id, clock(), name, 0, info, f"cannot submit: {exc}"))

    try:
        submit(run.start())
        while run.unfinished > 0:
            item = events.get()
            if type(item) is _Stop:
                raise item.exc
            assert not isinstance(item, _Stop)
            submit(_apply(run, item))
            if run.fatal is not None:
                _interrupted(run, events)
    except BaseException as exc:  # a stop, an interrupt, or a store that cannot write
        run.abort(exc)
    finally:
        if run.isolated is not None:  # kills isolated attempts an interrupted run left running
            run.isolated.close(run.fatal)
    return run.finish()


def _interrupted(run: _Run, events: queue.SimpleQueue[TaskEvent | _Done | _Stop]) -> None:
    """A task interrupted the run: apply what already finished, then raise the interrupt
    (or a stop that came meanwhile) for the driver to end the run (as ``execute`` does)."""
    while run.unfinished > 0:
        try:
            item = events.get(block=False)
        except queue.Empty:
            break
        if type(item) is _Stop:
            raise item.exc
        assert not isinstance(item, _Stop)
        _apply(run, item)
    if run.unfinished > 0:
        assert run.fatal is not None
        raise run.fatal


async def arun_sync(
    planned: Plan,
    *,
    executor: Executor,
    limit: int,
    hooks: Iterable[Hook],
    store: StateStore,
    context: object,
    retry_budget: RetryBudget | None,
    process_workers: int | None,
) -> Snapshot:
    """Run ``planned`` (sync tasks only) on the thread driver in a daemon thread; await it.

    The arguments are :func:`flowplan.aexecute`'s (``fail_fast`` is off: a failure skips
    its downstream tasks only). Raises what the run raises (a task's interrupt, a store that
    cannot write), and the ``CancelledError`` of a cancelled caller once the run is recorded.
    """
    run = _Run(
        planned,
        fail_fast=False,
        hooks=hooks,
        store=store,
        context=context,
        clock=time.time,
        retry_budget=retry_budget,
    )
    run.isolated = isolate(run, executor, process_workers)  # before anything runs
    events: queue.SimpleQueue[TaskEvent | _Done | _Stop] = queue.SimpleQueue()
    driven: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()
    pool = _Capped(executor, limit)

    def target() -> None:
        try:
            driven.set_result(_drive(run, pool, events))
        except BaseException as exc:
            driven.set_exception(exc)

    driven.set_running_or_notify_cancel()  # a cancelled waiter must not cancel the driver
    threading.Thread(target=target, name=f"flowplan-run-{run.run_id[:8]}", daemon=True).start()
    try:
        return await asyncio.wrap_future(driven)
    except asyncio.CancelledError as cancelled:
        if not driven.done():
            events.put(_Stop(cancelled))
            driven.result()  # the driver records the run, then raises ``cancelled``
        raise
