"""The interpreter: executes a :class:`~flowplan.plan.Plan` into a new snapshot.

Place in the data flow: spec → graph → plan → **interpreter** → snapshot → store/hooks. The
drivers live here: :func:`execute` over any ``concurrent.futures`` executor (local threads, the
inline executor, or — through ``_remote.py`` — executors that run attempts in other processes)
and :func:`aexecute` on asyncio. All of them feed one scheduling state machine
(:class:`~flowplan._machine._Run`: a ready queue, not layers — an unrelated slow task never
delays a ready one). The machine keeps private mutable bookkeeping for speed (O(1) per event);
what the drivers return and what hooks see are immutable values.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import queue
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from flowplan._daemon_threads import DaemonThreads
from flowplan._fanout import origin
from flowplan._isolation import isolate
from flowplan._machine import _Done, _Run
from flowplan._program import (
    Call,
    Outcome,
    Raised,
    Sleep,
    acall,
    call,
    run_program,
    still_running,
    task_program,
)
from flowplan._remote import acall_remote, blocked, drive, fn_blobs, is_remote
from flowplan._starting import input_values
from flowplan._workers import Workers
from flowplan.attempt import _current
from flowplan.events import (
    TaskEvent,
    TaskFailed,
    TaskStarted,
    _make_started,
    _make_succeeded,
)
from flowplan.executors import InlineExecutor, validate_max_workers
from flowplan.hooks import Hook
from flowplan.plan import Plan
from flowplan.policies import RetryBudget
from flowplan.snapshot import ErrorInfo, Snapshot
from flowplan.transitions import advance

if TYPE_CHECKING:
    from flowplan.spec import TaskSpec
    from flowplan.store import StateStore

__all__ = ["aexecute", "execute"]


def _job(run: _Run, name: str, emit: Callable[[TaskEvent], None]) -> None:
    """Worker side: drive one task's program synchronously, emitting its events."""
    try:
        cancelled = run.should_cancel(name)
        if cancelled is not None:
            emit(cancelled)
            return
        if name in run.plan.in_doubt:  # settled only once its abandoned attempt ended
            prior = still_running(run.graph.specs[name], run.run_id)
            if prior is not None:
                prior.wait()
        program, kwargs = run.program(name)
        spec = run.graph.specs[name]
        isolated = run.isolated
        attempt = isolated.call if isolated is not None and isolated.covers(name) else call

        dispatch = run.dispatch

        def answer(request: Call) -> Outcome:
            if run.fatal is not None:  # interrupted meanwhile: no new attempt (a retry) starts
                return Raised(run.fatal, 0.0)
            run.durable_start(name, request.attempt)  # at_most_once: committed before the body
            if dispatch.scopes:  # hooks that wrap the body (e.g. its OpenTelemetry span)
                with dispatch.attempt_scope(run.run_id, name, request.attempt):
                    return attempt(spec, kwargs, run.run_id, request.attempt)
            return attempt(spec, kwargs, run.run_id, request.attempt)

        run_program(
            program,
            answer=answer,
            sleep=time.sleep,
            emit=emit,
        )
    except BaseException as exc:  # a bug or an interrupt outside the body: never hang the run
        info = ErrorInfo.from_exception(exc, kind="crashed")
        emit(
            TaskFailed(
                run.run_id,
                run.clock(),
                name,
                0,
                info,
                f"flowplan crashed: {exc!r}",
                fatal=not isinstance(exc, Exception),
            )
        )


def _plain_job(run: _Run, name: str, emit: Callable[[Any], None]) -> None:
    """Worker side of a plain task (no gates, one attempt, no timeout, sync): no generator.

    Success is emitted as a ``_Done`` item on quiet runs, else as TaskStarted (before the body)
    and TaskSucceeded; a failure replays the outcome through :func:`task_program`, so failures
    are recorded exactly as on the general path. With ``run.chain_next`` (thread driver) the
    worker then runs the task's only successor itself — its only dependency just succeeded, so
    it is ready — unless the run stopped meanwhile (then it emits the successor's
    cancellation, as a worker does for any task it was handed).
    """
    run_id = run.run_id
    clock = run.clock
    quiet = run.quiet
    specs = run.graph.specs
    chain_next = run.chain_next
    lagged = run.lagged  # released values: wait for the driver before queueing more of them
    scoped = bool(run.dispatch.scopes)  # hooks that wrap each body (e.g. an OpenTelemetry span)
    kwargs: dict[str, Any] | None = None
    try:
        while True:
            if run.stopped is not None or run.fatal is not None:
                cancelled = run.should_cancel(name)
                if cancelled is not None:
                    emit(cancelled)
                    return
            if kwargs is None:
                kwargs = run.kwargs(name)
            fn = specs[name].fn
            started_at = clock()
            if quiet:
                run.running.add(name)
            else:
                emit(_make_started(run_id, started_at, name, 1))
            token = _current.set((run_id, name))  # current_attempt() builds the context
            start = time.perf_counter()
            try:
                if scoped:
                    with run.dispatch.attempt_scope(run_id, name, 1):
                        value = fn(**kwargs)
                else:
                    value = fn(**kwargs)
            except BaseException as exc:
                duration = (time.perf_counter() - start) * 1000
                _current.reset(token)
                _plain_failed(run, name, started_at, Raised(exc, duration), emit)
                return
            duration = (time.perf_counter() - start) * 1000
            _current.reset(token)
            if lagged and name in lagged:
                run.wait_for_driver()
            if quiet:
                emit((name, started_at, clock(), value, duration))
            else:
                step_key = run.step_keys.get(name)
                emit(_make_succeeded(run_id, clock(), name, 1, value, duration, step_key))
            nxt = chain_next.get(name)
            if nxt is None:
                return
            kwargs = run.chain_kwargs(nxt, name, value)
            del value
            name = nxt
    except BaseException as exc:  # a bug or an interrupt outside the body: never hang the run
        info = ErrorInfo.from_exception(exc, kind="crashed")
        emit(
            TaskFailed(
                run_id,
                clock(),
                name,
                0,
                info,
                f"flowplan crashed: {exc!r}",
                fatal=not isinstance(exc, Exception),
            )
        )


def _plain_failed(
    run: _Run, name: str, started_at: float, outcome: Outcome, emit: Callable[[Any], None]
) -> None:
    """Emit a plain task's failure events: its program, fed the attempt's outcome."""
    program = task_program(
        run.graph.specs[name],
        {},
        run_id=run.run_id,
        step_key=run.step_keys.get(name),
        clock=run.clock,
    )
    started = next(program)  # the TaskStarted the fast path emitted (or skipped, if quiet)
    assert isinstance(started, TaskStarted)
    if run.quiet:
        emit(TaskStarted(run.run_id, started_at, name, 1))
    request = next(program)
    assert isinstance(request, Call)
    try:
        request = program.send(outcome)
        while True:
            assert not isinstance(request, Call | Sleep)  # one attempt: no retry, no backoff
            emit(request)
            request = program.send(None)
    except StopIteration:
        return


def _apply(run: _Run, item: TaskEvent | _Done) -> list[str]:
    """Apply an event or a quiet ``_Done`` item; return the names that became ready."""
    if type(item) is tuple:
        ready = run.done(*item)
    else:
        assert not isinstance(item, tuple)
        ready = run.apply(item)
    if run.lag is not None:
        run.unlag(item)
    return ready


def _run_inline(run: _Run) -> None:
    """Drive ``run`` in this thread, one task at a time (the :class:`InlineExecutor` path).

    Each task's events are applied before the next task starts, so fail-fast and interruptions
    stop exactly the tasks that have not started. No futures, no queue hop: the cheapest path.
    """
    events: collections.deque[TaskEvent | _Done] = collections.deque()
    emit = events.append
    plain = run.plain
    ready = collections.deque(run.start())
    while run.unfinished > 0:
        if events:
            ready.extend(_apply(run, events.popleft()))
        elif ready:
            name = ready.popleft()
            if name in plain:
                _plain_job(run, name, emit)
            else:
                _job(run, name, emit)
        else:  # pragma: no cover - a scheduling bug must not pass as a hang or an IndexError
            raise RuntimeError(f"flowplan bug: {run.unfinished} task(s) can never become ready")


def _run_inline_storeless(run: _Run) -> None:
    """:func:`_run_inline` for runs without a store: a plain task's success is applied as soon
    as its body returns, with no ``_Done`` item and no queue hop.

    The same order and records as :func:`_run_inline` (which applies each ``_Done`` before
    starting the next task); failures, gates, retries and stopped runs take the general paths.
    With hooks, a plain task's ``TaskStarted`` goes to them just before its body runs and its
    ``TaskSucceeded`` once the body returned, and its record is built once (SUCCEEDED), as on a
    quiet run: the RUNNING record in between is one nobody can observe (the body runs in this
    thread; an interrupt finds the task in ``run.running``). An interrupt outside a task body
    (e.g. Ctrl-C between tasks) ends the run through :meth:`_Run.abort`, so every task is
    recorded.
    """
    events: collections.deque[TaskEvent | _Done] = collections.deque()
    emit = events.append
    plain = run.plain
    specs = run.graph.specs
    clock = run.clock
    done = run.done
    kwargs_of = run.kwargs
    running = run.running
    run_id = run.run_id
    perf_counter = time.perf_counter
    current = _current
    step_keys = run.step_keys
    # hooks wanting a task's start and success, and no store (else _run_inline)
    dispatch = None if run.quiet else run.dispatch
    # A quiet run with none of the features _Run._finished handles besides counting (trigger
    # rules, fan-out, caching, released values, detached tasks) applies a plain success here.
    graph = run.graph
    direct = dispatch is None and not (
        run.triggered or run.fanout or run.caching or run.consumers_left or graph.detached
    )
    records = run.records
    waiting = run.waiting
    at_zero = run.at_zero  # grows when a gate's skip reaches a task: then done() decides
    successors = graph.successors
    inputs = graph.inputs
    bare_plain = plain & graph.bare_tasks()  # plain, and kwargs are their inputs' values
    ready = collections.deque(run.start())
    try:
        while run.unfinished > 0:
            if events:  # a non-plain task's events, or a failure's
                ready.extend(_apply(run, events.popleft()))
                continue
            if not ready:  # pragma: no cover - a scheduling bug must not pass as a hang
                raise RuntimeError(f"flowplan bug: {run.unfinished} task(s) can never become ready")
            name = ready.popleft()
            if name in bare_plain and run.stopped is None and run.fatal is None:
                kwargs = input_values(records, inputs[name])
            elif name not in plain:
                _job(run, name, emit)
                continue
            elif run.stopped is not None or run.fatal is not None:
                _plain_job(run, name, emit)  # it records the cancellation
                continue
            else:
                kwargs = kwargs_of(name)
            started_at = clock()
            running.add(name)
            if dispatch is not None:
                dispatch(_make_started(run_id, started_at, name, 1))
            token = current.set((run_id, name))  # current_attempt() builds the context
            start = perf_counter()
            try:
                value = specs[name].fn(**kwargs)
            except BaseException as exc:
                duration = (perf_counter() - start) * 1000
                current.reset(token)
                if dispatch is not None:  # its TaskStarted was delivered: record it, once
                    running.discard(name)
                    run.records[name] = advance(None, TaskStarted(run_id, started_at, name, 1))
                _plain_failed(run, name, started_at, Raised(exc, duration), emit)
                continue
            duration = (perf_counter() - start) * 1000
            current.reset(token)
            finished_at = clock()
            if not direct or at_zero:
                if dispatch is not None:
                    step_key = step_keys.get(name)
                    dispatch(
                        _make_succeeded(run_id, finished_at, name, 1, value, duration, step_key)
                    )
                ready.extend(done(name, started_at, finished_at, value, duration))
                continue
            # == done(): the record (an _Ok tuple), then each successor's count (_Run._finished)
            running.discard(name)
            records[name] = (value, started_at, finished_at, duration, step_keys.get(name))
            run.unfinished -= 1
            run.main_left -= 1
            for succ in successors[name]:
                left = waiting.get(succ)
                if left is not None:
                    waiting[succ] = left = left - 1
                    if left == 0 and succ not in records:
                        ready.append(succ)
    except BaseException as exc:  # outside any body: record every task, then re-raise
        run.abort(exc)


def execute(
    plan: Plan,
    *,
    executor: Executor | None = None,
    max_workers: int | None = None,
    fail_fast: bool = True,
    hooks: Iterable[Hook] = (),
    store: StateStore | None = None,
    context: object = None,
    clock: Callable[[], float] = time.time,
    retry_budget: RetryBudget | None = None,
    process_workers: int | None = None,
) -> Snapshot:
    """Run ``plan`` on a ``concurrent.futures`` executor and return the new snapshot.

    Args:
        plan: what to run (from :func:`~flowplan.plan.plan`).
        executor: where attempts run (default: a thread pool owned by this call;
            :class:`~flowplan.executors.InlineExecutor` for a single-threaded run). With a
            remote one (:class:`~flowplan.executors.ProcessExecutor`,
            :class:`~flowplan.executors.DaskExecutor`, ``ProcessPoolExecutor``) task programs
            stay here and each attempt is sent as one pickled payload.
        max_workers: the owned thread pool's size (ignored with ``executor``).
        fail_fast: on a main task's failure, start nothing new (detached tasks still run).
        hooks: observers of the event stream.
        store: a state store that records every task as it finishes.
        context: the object injected into tasks' context parameter.
        clock: wall-clock source for event times.
        retry_budget: a run-wide cap on retries (:class:`~flowplan.policies.RetryBudget`);
            once spent, a failing attempt fails for good with a reason naming the budget.
        process_workers: the size of the process pool the run owns for its
            ``isolation="process"`` tasks, created on their first attempt and shut down when
            the run ends (default: ``min(os.cpu_count(), isolated tasks planned)``; unused
            with a remote executor, which isolates every attempt already).

    Returns:
        The :class:`~flowplan.snapshot.Snapshot` with every planned task terminal.

    Raises:
        SerializationError: before anything runs, naming each task that must be sent to
            another process (every task on a remote executor, isolated tasks otherwise) and
            cannot be pickled.

    >>> from flowplan import task, TaskGraph, plan as make_plan, InlineExecutor, Registry
    >>> reg = Registry()
    >>> @task(registry=reg)
    ... def one() -> int:
    ...     return 1
    >>> snap = execute(make_plan(TaskGraph.build([one])), executor=InlineExecutor())
    >>> snap.value(one)
    1
    """
    if max_workers is not None:
        validate_max_workers(max_workers)
    run = _Run(
        plan,
        fail_fast=fail_fast,
        hooks=hooks,
        store=store,
        context=context,
        clock=clock,
        retry_budget=retry_budget,
    )
    run.isolated = isolated = isolate(run, executor, process_workers)  # before anything runs
    if executor is not None and is_remote(executor):  # attempts ship; programs stay here
        drive(run, executor)
        return run.finish()
    if isinstance(executor, InlineExecutor):
        try:
            if store is None and not run.dispatch.scopes:  # scoped bodies: the general loop
                _run_inline_storeless(run)
            else:
                _run_inline(run)
        finally:
            if isolated is not None:
                isolated.close(run.fatal)
        return run.finish()
    events: queue.SimpleQueue[TaskEvent | _Done] = queue.SimpleQueue()
    emit = events.put
    plain = run.plain
    if store is None:  # a store may turn a success into a failure: never run ahead of it
        run.link_chains()
    if executor is None:  # the run owns its threads: no future per task
        return _run_owned(run, Workers(run, emit, (plain, _plain_job, _job), max_workers), events)
    pool = executor

    def submit(names: list[str]) -> None:
        for name in names:
            try:
                pool.submit(_plain_job if name in plain else _job, run, name, emit)
            except RuntimeError as exc:  # executor shut down under us
                info = ErrorInfo.from_exception(exc, kind="crashed")
                emit(TaskFailed(run.run_id, clock(), name, 0, info, f"cannot submit: {exc}"))

    try:
        submit(run.start())
        while run.unfinished > 0:
            submit(_apply(run, events.get()))
            if run.fatal is not None:
                _interrupted(run, events)
    except BaseException as exc:  # an interrupt in this thread, or a store that cannot write
        run.abort(exc)
    finally:
        if isolated is not None:  # kills isolated attempts an interrupted run left running
            isolated.close(run.fatal)
    return run.finish()


def _interrupted(run: _Run, events: queue.SimpleQueue[TaskEvent | _Done]) -> None:
    """A task interrupted the run (``KeyboardInterrupt``/``SystemExit``): end it now.

    What already finished (its events are queued) is applied; if tasks still run, the
    interrupt is raised for the driver to end the run through :meth:`_Run.abort`: running
    tasks are recorded as interrupted and abandoned (their threads are daemons; a result they
    produce later is dropped), never waited for.
    """
    while run.unfinished > 0:
        try:
            item = events.get(block=False)
        except queue.Empty:
            break
        _apply(run, item)
    if run.unfinished > 0:
        assert run.fatal is not None
        raise run.fatal


def _run_owned(
    run: _Run, workers: Workers, events: queue.SimpleQueue[TaskEvent | _Done]
) -> Snapshot:
    """The thread driver on the run's own :class:`~flowplan._workers.Workers` (no futures).

    The scheduling loop applies each queued item in this thread and hands the names that
    became ready to the workers. An interrupt here, or a store that cannot write, drops the
    queued names unstarted and ends the run through :meth:`_Run.abort`.
    """
    get = events.get
    done = run.done
    apply = run.apply
    submit = workers.submit
    lag = run.lag  # chained released values: each applied success gives a token back
    try:
        submit(run.start())
        while run.unfinished > 0:
            item = get()
            if type(item) is tuple:
                ready = done(*item)
            else:
                assert not isinstance(item, tuple)
                ready = apply(item)
            if lag is not None:
                run.unlag(item)
            if ready:
                submit(ready)
            elif run.fatal is not None:  # a task interrupted the run (nothing becomes ready)
                _interrupted(run, events)
    except BaseException as exc:  # an interrupt in this thread, or a store that cannot write
        workers.shutdown(cancel=True)  # queued tasks never start
        run.abort(exc)
    finally:
        workers.shutdown()
        if run.isolated is not None:  # kills isolated attempts an interrupted run left running
            run.isolated.close(run.fatal)
    return run.finish()


async def aexecute(
    plan: Plan,
    *,
    executor: Executor | None = None,
    max_workers: int | None = None,
    fail_fast: bool = True,
    hooks: Iterable[Hook] = (),
    store: StateStore | None = None,
    context: object = None,
    clock: Callable[[], float] = time.time,
    retry_budget: RetryBudget | None = None,
    process_workers: int | None = None,
) -> Snapshot:
    """Run ``plan`` on the running asyncio loop and return the new snapshot.

    ``async def`` tasks are awaited on the loop (timeouts cancel them); sync tasks run on
    ``executor`` (default: daemon threads the run owns, so sync attempts an interrupted or
    cancelled run abandons never keep ``asyncio.run`` or the process from ending).
    ``max_workers`` caps how many tasks run at once (default: unlimited). ``retry_budget``
    caps retries run-wide, as in :func:`execute`. ``isolation="process"`` tasks (``async def``
    ones too) run their attempts in a process pool of ``process_workers`` the run owns, as in
    :func:`execute`.

    A task's ``KeyboardInterrupt``/``SystemExit``, or cancelling this coroutine, ends the run
    at once: tasks that finished keep their records, running ones are recorded as interrupted
    (async ones cancelled, sync ones abandoned), the rest cancelled; ``RunFinished`` is
    emitted and the exception propagates with the snapshot as ``flowplan_snapshot``.
    """
    if max_workers is not None:
        validate_max_workers(max_workers)
    run = _Run(
        plan,
        fail_fast=fail_fast,
        hooks=hooks,
        store=store,
        context=context,
        clock=clock,
        retry_budget=retry_budget,
    )
    loop = asyncio.get_running_loop()
    remote = executor is not None and is_remote(executor)
    blobs = fn_blobs(run, executor) if remote else {}  # unpicklable tasks fail before any runs
    isolated = isolate(run, executor, process_workers)
    limit = asyncio.Semaphore(max_workers) if max_workers is not None else None
    finished = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    stopped: list[BaseException] = []  # what ended the run early (a store error, a cancel)

    owned: list[DaemonThreads] = []  # sync attempts' threads when no executor is given
    dispatch = run.dispatch

    def run_sync(fn: Callable[[], Outcome]) -> asyncio.Future[Outcome]:
        if dispatch.scopes:  # the body's thread sees what the attempt's scope set (its span)
            fn = functools.partial(contextvars.copy_context().run, fn)
        if executor is not None:
            return loop.run_in_executor(executor, fn)
        if not owned:
            owned.append(DaemonThreads())
        return loop.run_in_executor(owned[0], fn)

    def emit(event: TaskEvent) -> None:
        if stopped:
            return  # the run already ended with an error: late events are dropped
        try:
            ready = run.apply(event)
        except BaseException as exc:  # e.g. a store that cannot write: end the run with it
            stopped.append(exc)
            finished.set()
            return
        spawn(ready)
        if run.unfinished == 0 or run.fatal is not None:  # done, or a task interrupted the run
            finished.set()

    async def attempt_once(
        name: str, spec: TaskSpec[..., Any], kwargs: dict[str, Any], attempt: int
    ) -> Outcome:
        if isolated is not None and isolated.covers(name):
            return await isolated.acall(spec, kwargs, run.run_id, attempt)
        if remote and (not spec.is_async or spec.isolation == "process"):
            assert executor is not None
            return await acall_remote(
                spec,
                kwargs,
                run.run_id,
                attempt,
                executor=executor,
                fn_blob=blobs[origin(run, name)],
                note=run.attempt_note(name, attempt),
            )
        return await acall(spec, kwargs, run.run_id, attempt, run_sync)

    async def job(name: str) -> None:
        if limit is not None:
            await limit.acquire()
        try:
            cancelled = run.should_cancel(name)
            if cancelled is not None:
                emit(cancelled)
                return
            if name in run.plan.in_doubt:  # settled only once its abandoned attempt ended
                prior = still_running(run.graph.specs[name], run.run_id)
                if prior is not None:
                    await asyncio.to_thread(prior.wait)
                remote_prior = blocked(run.run_id, name) if remote else None
                if remote_prior is not None:  # its outcome is not ours: just wait for it
                    await asyncio.wait({asyncio.wrap_future(remote_prior)})
            program, kwargs = run.program(name)
            spec = run.graph.specs[name]
            request = next(program)
            while True:
                outcome: Outcome | None = None
                if isinstance(request, Call):
                    run.durable_start(name, request.attempt)  # at_most_once: before the body
                    with (
                        dispatch.attempt_scope(run.run_id, name, request.attempt)
                        if dispatch.scopes
                        else contextlib.nullcontext()
                    ):
                        outcome = await attempt_once(name, spec, kwargs, request.attempt)
                elif isinstance(request, Sleep):
                    await asyncio.sleep(request.seconds)
                else:
                    emit(request)
                request = program.send(outcome)
        except StopIteration:
            return
        except BaseException as exc:
            info = ErrorInfo.from_exception(exc, kind="crashed")
            emit(
                TaskFailed(
                    run.run_id,
                    clock(),
                    name,
                    0,
                    info,
                    f"flowplan crashed: {exc!r}",
                    fatal=not isinstance(exc, Exception),
                )
            )
        finally:
            if limit is not None:
                limit.release()

    def spawn(names: list[str]) -> None:
        for name in names:
            task = loop.create_task(job(name), name=f"flowplan:{name}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    try:
        spawn(run.start())
        if run.unfinished == 0:
            finished.set()
        await finished.wait()
        if run.fatal is not None and run.unfinished > 0:  # a task interrupted the run:
            stopped.append(run.fatal)  # what still runs is interrupted, never waited for
    except BaseException as exc:  # cancelled (or interrupted) while waiting: recorded below
        stopped.append(exc)
    finally:
        if stopped:  # nothing may keep running for a run that has ended
            for job_task in tasks:
                job_task.cancel()
        if isolated is not None:
            isolated.close(stopped[0] if stopped else run.fatal, wait=False)
        if owned:  # idle threads end; running ones (an interrupted run's) are abandoned
            owned[0].shutdown(wait=False)
    if stopped:
        run.abort(stopped[0])
    return run.finish()
