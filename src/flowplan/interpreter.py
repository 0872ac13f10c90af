"""The interpreter: executes a :class:`~flowplan.plan.Plan` into a new snapshot.

Place in the data flow: spec → graph → plan → **interpreter** → snapshot → store/hooks. One
scheduling state machine (:class:`_Run`: a ready queue, not layers — an unrelated slow task never
delays a ready one) and two thin drivers: :func:`execute` over any ``concurrent.futures``
executor, and :func:`aexecute` on asyncio. The machine keeps private mutable bookkeeping for
speed (O(1) per event); what it returns and what hooks see are immutable values.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn

from flowplan._program import (
    Call,
    Outcome,
    Raised,
    RunBudget,
    Sleep,
    acall,
    call,
    task_program,
)
from flowplan._remote import acall_remote, drive, fn_blobs, is_remote
from flowplan.attempt import _current
from flowplan.errors import SerializationError
from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskReleased,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from flowplan.executors import InlineExecutor, validate_max_workers
from flowplan.hooks import Hook, HookDispatcher
from flowplan.plan import Plan
from flowplan.policies import RetryBudget
from flowplan.snapshot import ErrorInfo, Snapshot, TaskRecord, TaskStatus, _make_record
from flowplan.transitions import advance

if TYPE_CHECKING:
    from flowplan.store import StateStore

__all__ = ["aexecute", "execute"]

_PENDING = TaskStatus.PENDING
_RUNNING = TaskStatus.RUNNING
_SUCCEEDED = TaskStatus.SUCCEEDED

_Done = tuple[str, float, float, Any, float]
"""A plain task's success as one queue item, for quiet runs (no hooks, no store): name,
started_at, finished_at, value, duration_ms. Its record equals the fold of the TaskStarted and
TaskSucceeded events it stands for."""


class _Run:
    """The scheduling state machine of one run (private, mutable, single-threaded)."""

    def __init__(
        self,
        plan: Plan,
        *,
        fail_fast: bool,
        hooks: Iterable[Hook],
        store: StateStore | None,
        context: object,
        clock: Callable[[], float],
        retry_budget: RetryBudget | None = None,
    ) -> None:
        graph = plan.graph
        self.plan = plan
        self.graph = graph
        self.run_id = plan.run_id
        self.fail_fast = fail_fast
        self.dispatch = HookDispatcher(hooks)
        self.store = store
        self.context = context
        self.clock = clock
        # The run's shared retry counter, and the jitter seed (the run id; a simulation may
        # set another).
        self.budget = (
            None if retry_budget is None else RunBudget(retry_budget, tasks=len(plan.to_run))
        )
        self.seed = self.run_id
        # Reused records, then terminal (and, with hooks or a store, RUNNING) records as tasks
        # progress. A planned task with no record is PENDING: no record is built for it until
        # finish() (one record per task on the fast path instead of three).
        self.records: dict[str, TaskRecord] = dict(plan.reused)
        # Quiet: nobody observes events (no hooks, no store), so a plain task's success is
        # applied as one ``_Done`` item without building its two events.
        self.quiet = store is None and not self.dispatch
        self.plain = graph.plain_tasks()  # run without the task_program generator
        self.step_keys = plan.step_keys
        # Thread driver only (set there): a plain task → its only successor when that
        # successor has no other dependency; the worker runs it next itself (no round-trip).
        self.chain_next: dict[str, str] = {}
        self.chain_prev: dict[str, str] = {}
        # Quiet thread runs: plain tasks a worker is running (no RUNNING record exists).
        self.running: set[str] = set()
        to_run = plan.to_run
        run_set = set(to_run)
        self.run_set = run_set
        self.waiting = {n: sum(p in run_set for p in graph.predecessors[n]) for n in to_run}
        self.unfinished = len(to_run)
        self.main_left = sum(1 for n in to_run if n not in graph.detached)
        self.held: list[str] = []
        self.stopped: str | None = None  # root cause of a fail-fast stop
        self.fatal: BaseException | None = None
        self.fatal_in: str | None = None  # the task that interrupted the run
        self.consumers_left: dict[str, int] = {}
        for name in graph.order:
            if not graph.specs[name].retain_result:
                # Only consumers in this run release a value: one no consumer here reads (a
                # target, or consumers left out of the plan) is kept for whoever reads it next.
                left = sum(s in run_set for s in graph.successors[name])
                if left:
                    self.consumers_left[name] = left
        self.started = time.perf_counter()

    # -- events ---------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if self.store is not None and isinstance(event, RunStarted):
            self.store.begin_run(self.plan)
        if self.dispatch:
            self.dispatch(event)

    def apply(self, event: TaskEvent) -> list[str]:
        """Apply a task event; return the names that became ready to run."""
        name = event.task
        old = self.records.get(name)
        released = isinstance(event, TaskReleased)
        if (
            old is not None
            and old.status is not _PENDING
            and old.status is not _RUNNING
            and not released
        ):
            return []  # e.g. a task cancelled while its worker was about to start it
        record = advance(old, event)
        if self.store is not None and (
            record.status is not _RUNNING or isinstance(event, TaskStarted)
        ):
            try:
                self.store.save_record(self.run_id, record)
            except SerializationError as exc:
                event = TaskFailed(
                    self.run_id,
                    event.time,
                    name,
                    record.attempts,
                    ErrorInfo.from_exception(exc, kind="serialization"),
                    f"its value cannot be stored: {exc}",
                    record.duration_ms,
                )
                record = advance(old, event)
                self.store.save_record(self.run_id, record)
        self.records[name] = record
        if self.dispatch:
            self.dispatch(event)
        if released or record.status is _RUNNING:
            return []
        return self._finished(name, record, event)

    def done(
        self, name: str, started_at: float, finished_at: float, value: Any, duration_ms: float
    ) -> list[str]:
        """Apply a quiet plain task's success (a ``_Done`` item); return the ready names."""
        self.running.discard(name)
        if name in self.records:
            return []  # e.g. the run was aborted meanwhile
        record = _make_record(  # == TaskRecord(...) with every field, built faster
            name,
            _SUCCEEDED,
            1,
            value,
            True,
            None,
            started_at,
            finished_at,
            duration_ms,
            None,
            None,
            False,
            self.step_keys.get(name),
            (),
            False,
            False,
        )
        self.records[name] = record
        return self._finished(name, record, None)

    def _finished(self, name: str, record: TaskRecord, event: TaskEvent | None) -> list[str]:
        graph = self.graph
        self.unfinished -= 1
        ready: list[str] = []
        detached = name in graph.detached
        if not detached:
            self.main_left -= 1
        if record.status is TaskStatus.SUCCEEDED:
            for succ in graph.successors[name]:
                if succ in self.waiting:
                    left = self.waiting[succ] - 1
                    self.waiting[succ] = left
                    if (
                        left == 0
                        and succ not in self.records
                        and self.chain_next.get(name) != succ  # its worker runs it already
                    ):
                        ready.append(succ)
            if name in self.consumers_left and self.consumers_left[name] == 0:
                self._release(name)
            for pred in graph.predecessors[name]:
                if pred in self.consumers_left:
                    self.consumers_left[pred] -= 1
                    if self.consumers_left[pred] == 0:
                        self._release(pred)
        else:
            root = record.root_cause or name
            verb = record.status.value
            ready.extend(self._skip_downstream(name, root, verb))
            failed = record.status is TaskStatus.FAILED
            if isinstance(event, TaskFailed) and event.fatal and self.fatal is None:
                exc = record.error.exception if record.error else None
                self.fatal = exc if exc is not None else KeyboardInterrupt()
                self.fatal_in = name
                self._cancel_pending(root, f"the run was interrupted in {name!r}", everything=True)
            elif failed and self.fail_fast and not detached and self.stopped is None:
                self.stopped = name
                self._cancel_pending(root, f"fail-fast: {name!r} failed")
        return self._gate(ready)

    def _gate(self, ready: list[str]) -> list[str]:
        """Hold detached tasks until the main DAG is done; release them then."""
        detached = self.graph.detached
        out = [n for n in ready if n not in detached] if detached else ready
        if detached:
            self.held.extend(n for n in ready if n in detached)
            if self.main_left == 0 and self.held:
                out.extend(self.held)
                self.held = []
        if self.fatal is not None:
            return []
        return out

    def _skip_downstream(self, name: str, root: str, verb: str) -> list[str]:
        """Skip every pending task below ``name``; below a cancelled task, cancel them."""
        cancel = verb == TaskStatus.CANCELLED.value
        stack = [(name, verb)]
        while stack:
            upstream, how = stack.pop()
            for succ in self.graph.successors[upstream]:
                if succ in self.run_set and succ not in self.records:
                    reason = f"upstream {upstream!r} {how}"
                    event: TaskSkipped | TaskCancelled
                    if cancel:  # it never started because the run stopped: not a skip
                        event = TaskCancelled(self.run_id, self.clock(), succ, reason, root)
                    else:
                        event = TaskSkipped(self.run_id, self.clock(), succ, reason, root)
                    self._record_terminal(succ, event)
                    stack.append((succ, "was cancelled" if cancel else "was skipped"))
        return []

    def _record_terminal(self, name: str, event: TaskSkipped | TaskCancelled) -> None:
        record = advance(self.records.get(name), event)
        self.records[name] = record
        if self.store is not None:
            self.store.save_record(self.run_id, record)
        if self.dispatch:
            self.dispatch(event)
        self.unfinished -= 1
        if name not in self.graph.detached:
            self.main_left -= 1

    def _cancel_pending(self, root: str, reason: str, *, everything: bool = False) -> None:
        """Cancel tasks that have not started (main ones; with ``everything``, detached too).

        Tasks already handed to a worker are left alone: they cancel themselves on start
        (:meth:`should_cancel`), or finish if they were already running.
        """
        detached = self.graph.detached
        held = set(self.held)
        chain_prev = self.chain_prev
        handed: set[str] = set()  # given to a worker, directly or behind its chain predecessor
        for name in self.plan.to_run:  # topological: a chain predecessor comes first
            if name in self.records:
                continue
            if chain_prev and chain_prev.get(name) in handed:
                handed.add(name)
                continue
            if name in detached and not everything:
                continue
            if self.waiting[name] == 0 and name not in held:
                handed.add(name)
                continue
            event = TaskCancelled(self.run_id, self.clock(), name, reason, root)
            self._record_terminal(name, event)
            # the (detached) tasks below it can never run now; without this the run never ends
            self._skip_downstream(name, root, TaskStatus.CANCELLED.value)
        if everything:
            self.held = []

    def _release(self, name: str) -> None:
        record = self.records.get(name)
        if record is not None and record.has_value:
            self.apply(TaskReleased(self.run_id, self.clock(), name))

    # -- starting tasks -------------------------------------------------------------------
    def start(self) -> list[str]:
        """Emit the run's first events; return the tasks ready at once."""
        plan = self.plan
        self.emit(RunStarted(self.run_id, self.clock(), plan.to_run, tuple(plan.reused)))
        for name, record in plan.reused.items():
            event = TaskReused(self.run_id, self.clock(), name, record)
            if self.store is not None:
                self.store.save_record(self.run_id, record)
            if self.dispatch:
                self.dispatch(event)
        return self._gate([n for n in plan.to_run if self.waiting[n] == 0])

    def should_cancel(self, name: str) -> TaskCancelled | None:
        """For a task about to start: a cancellation if the run stopped meanwhile."""
        if self.fatal is not None:
            reason = f"the run was interrupted in {self.fatal_in!r}"
            return TaskCancelled(self.run_id, self.clock(), name, reason, self.fatal_in)
        if self.stopped is not None and name not in self.graph.detached:
            reason = f"fail-fast: {self.stopped!r} failed"
            return TaskCancelled(self.run_id, self.clock(), name, reason, self.stopped)
        return None

    def inputs(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The keyword arguments for ``name``'s body, and for its gates."""
        spec = self.graph.specs[name]
        records = self.records
        gate_kwargs = {dep: records[dep].value for dep in self.graph.predecessors[name]}
        if spec.upstream_param is not None:
            kwargs: dict[str, Any] = {spec.upstream_param: dict(gate_kwargs)}
        else:
            kwargs = {dep: gate_kwargs[dep] for dep in self.graph.inputs[name]}
        if spec.context_param is not None:
            kwargs[spec.context_param] = self.context
        return kwargs, gate_kwargs

    def kwargs(self, name: str) -> dict[str, Any]:
        """The keyword arguments for ``name``'s body (no gate arguments: plain tasks)."""
        spec = self.graph.specs[name]
        records = self.records
        kwargs: dict[str, Any]
        if spec.upstream_param is not None:
            preds = self.graph.predecessors[name]
            kwargs = {spec.upstream_param: {dep: records[dep].value for dep in preds}}
        else:
            kwargs = {dep: records[dep].value for dep in self.graph.inputs[name]}
        if spec.context_param is not None:
            kwargs[spec.context_param] = self.context
        return kwargs

    def chain_kwargs(self, name: str, upstream: str, value: Any) -> dict[str, Any]:
        """The keyword arguments of ``name``, whose only dependency ``upstream`` gave ``value``."""
        spec = self.graph.specs[name]
        kwargs: dict[str, Any]
        if spec.upstream_param is not None:
            kwargs = {spec.upstream_param: {upstream: value}}
        elif self.graph.inputs[name]:
            kwargs = {upstream: value}
        else:
            kwargs = {}
        if spec.context_param is not None:
            kwargs[spec.context_param] = self.context
        return kwargs

    def link_chains(self) -> None:
        """Pair each plain task with its only successor when it is that successor's only
        dependency (both plain, both main or both detached); see :func:`_plain_job`."""
        graph = self.graph
        plain = self.plain
        detached = graph.detached
        run_set = self.run_set
        for name in self.plan.to_run:
            succs = graph.successors[name]
            if len(succs) != 1 or name not in plain:
                continue
            succ = succs[0]
            if (
                succ in plain
                and succ in run_set
                and len(graph.predecessors[succ]) == 1
                and (name in detached) == (succ in detached)
            ):
                self.chain_next[name] = succ
                self.chain_prev[succ] = name

    def program(self, name: str) -> tuple[Any, dict[str, Any]]:
        kwargs, gate_kwargs = self.inputs(name)
        spec = self.graph.specs[name]
        prog = task_program(
            spec,
            gate_kwargs,
            run_id=self.run_id,
            step_key=self.plan.step_keys.get(name),
            clock=self.clock,
            budget=self.budget,
            seed=self.seed,
        )
        return prog, kwargs

    # -- finishing ------------------------------------------------------------------------
    def abort(self, exc: BaseException) -> NoReturn:
        """End a run stopped from outside its tasks, recording its state, and raise ``exc``.

        For an interrupt in the driver (``KeyboardInterrupt`` while waiting on workers, a
        cancelled ``aexecute``) or a store that cannot write: running tasks become FAILED
        (kind ``"interrupted"``: not succeeded, so they run again on resume), pending ones
        CANCELLED; ``RunFinished`` is emitted; ``exc`` is raised carrying the snapshot as
        ``flowplan_snapshot``. A store write that fails stops further writes (best effort).
        """
        self.fatal = exc
        why = f"the run was interrupted by {type(exc).__name__}"
        info = ErrorInfo.from_exception(exc, kind="interrupted")
        for name in self.plan.to_run:
            old = self.records.get(name)  # None: pending, or running on a quiet fast path
            if old is None and name in self.running:
                old = TaskRecord(name, _RUNNING, 1)
            event: TaskFailed | TaskCancelled
            if old is not None and old.status is _RUNNING:
                reason = f"{why} while it ran; it runs again on resume"
                event = TaskFailed(self.run_id, self.clock(), name, old.attempts, info, reason)
            elif old is None or old.status is _PENDING:
                event = TaskCancelled(self.run_id, self.clock(), name, why, self.fatal_in or name)
            else:
                continue
            record = advance(old, event)
            self.records[name] = record
            if self.store is not None:
                try:
                    self.store.save_record(self.run_id, record)
                except Exception:  # the store is what failed: keep the original error
                    self.store = None
            if self.dispatch:
                self.dispatch(event)
        if self.store is not None:
            with contextlib.suppress(Exception):  # the original error is the one to raise
                self.store.finish_run(Snapshot(self.run_id, self.records), "failed")
            self.store = None
        self.finish()
        raise exc  # pragma: no cover - finish() raised it

    def finish(self) -> Snapshot:
        # Record order: reused ones, then the planned ones in plan order (a task that never
        # got a record — an interrupted run — is PENDING). O(n), once per run.
        records = self.records
        ordered = {name: records[name] for name in self.plan.reused}  # maybe released since
        for name in self.plan.to_run:
            ordered[name] = records.get(name) or TaskRecord(name, _PENDING)
        self.records = records = ordered
        snapshot = Snapshot(self.run_id, records)
        counts: dict[str, int] = collections.Counter(r.status.value for r in self.records.values())
        failed = any(
            rec.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
            for name, rec in self.records.items()
            if name not in self.graph.detached
        )
        status = "failed" if failed else "succeeded"
        duration = (time.perf_counter() - self.started) * 1000
        if self.store is not None:
            self.store.finish_run(snapshot, status)
        self.emit(
            RunFinished(self.run_id, self.clock(), status, tuple(sorted(counts.items())), duration)
        )
        if self.fatal is not None:
            self.fatal.flowplan_snapshot = snapshot  # type: ignore[attr-defined]
            raise self.fatal
        return snapshot


def _job(run: _Run, name: str, emit: Callable[[TaskEvent], None]) -> None:
    """Worker side: drive one task's program synchronously, emitting its events."""
    try:
        cancelled = run.should_cancel(name)
        if cancelled is not None:
            emit(cancelled)
            return
        program, kwargs = run.program(name)
        spec = run.graph.specs[name]
        request = next(program)
        while True:
            outcome: Outcome | None = None
            if isinstance(request, Call):
                outcome = call(spec, kwargs, run.run_id, request.attempt)
            elif isinstance(request, Sleep):
                time.sleep(request.seconds)
            else:
                emit(request)
            request = program.send(outcome)
    except StopIteration:
        return
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
                emit(TaskStarted(run_id, started_at, name, 1))
            token = _current.set((run_id, name))  # current_attempt() builds the context
            start = time.perf_counter()
            try:
                value = fn(**kwargs)
            except BaseException as exc:
                duration = (time.perf_counter() - start) * 1000
                _current.reset(token)
                _plain_failed(run, name, started_at, Raised(exc, duration), emit)
                return
            duration = (time.perf_counter() - start) * 1000
            _current.reset(token)
            if quiet:
                emit((name, started_at, clock(), value, duration))
            else:
                step_key = run.step_keys.get(name)
                emit(TaskSucceeded(run_id, clock(), name, 1, value, duration, step_key))
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
        return run.done(*item)
    assert not isinstance(item, tuple)
    return run.apply(item)


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
            item = events.popleft()
            if type(item) is tuple:
                ready.extend(run.done(*item))
            else:
                assert not isinstance(item, tuple)
                ready.extend(run.apply(item))
        elif ready:
            name = ready.popleft()
            if name in plain:
                _plain_job(run, name, emit)
            else:
                _job(run, name, emit)
        else:  # pragma: no cover - a scheduling bug must not pass as a hang or an IndexError
            raise RuntimeError(f"flowplan bug: {run.unfinished} task(s) can never become ready")


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

    Returns:
        The :class:`~flowplan.snapshot.Snapshot` with every planned task terminal.

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
    owned = executor is None
    if executor is not None and is_remote(executor):  # attempts ship; programs stay here
        drive(run, executor)
        return run.finish()
    pool: Executor = executor or ThreadPoolExecutor(max_workers, thread_name_prefix="flowplan")
    if isinstance(pool, InlineExecutor):
        try:
            _run_inline(run)
        finally:
            if owned:
                pool.shutdown(wait=False)
        return run.finish()
    events: queue.SimpleQueue[TaskEvent | _Done] = queue.SimpleQueue()
    emit = events.put
    plain = run.plain
    if store is None:  # a store may turn a success into a failure: never run ahead of it
        run.link_chains()

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
    except BaseException as exc:  # an interrupt in this thread, or a store that cannot write
        if owned:
            pool.shutdown(wait=False, cancel_futures=True)  # queued tasks never start
        run.abort(exc)
    finally:
        if owned:
            pool.shutdown(wait=False)
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
) -> Snapshot:
    """Run ``plan`` on the running asyncio loop and return the new snapshot.

    ``async def`` tasks are awaited on the loop (timeouts cancel them); sync tasks run on
    ``executor`` (default: the loop's default executor). ``max_workers`` caps how many tasks
    run at once (default: unlimited). ``retry_budget`` caps retries run-wide, as in
    :func:`execute`.
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
    limit = asyncio.Semaphore(max_workers) if max_workers is not None else None
    finished = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    stopped: list[BaseException] = []  # what ended the run early (a store error, a cancel)

    def run_sync(fn: Callable[[], Outcome]) -> asyncio.Future[Outcome]:
        return loop.run_in_executor(executor, fn)

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
        if run.unfinished == 0:
            finished.set()

    async def job(name: str) -> None:
        if limit is not None:
            await limit.acquire()
        try:
            cancelled = run.should_cancel(name)
            if cancelled is not None:
                emit(cancelled)
                return
            program, kwargs = run.program(name)
            spec = run.graph.specs[name]
            request = next(program)
            while True:
                outcome: Outcome | None = None
                if isinstance(request, Call):
                    if remote and not spec.is_async:
                        assert executor is not None
                        outcome = await acall_remote(
                            spec,
                            kwargs,
                            run.run_id,
                            request.attempt,
                            executor=executor,
                            fn_blob=blobs[name],
                        )
                    else:
                        outcome = await acall(spec, kwargs, run.run_id, request.attempt, run_sync)
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
    except BaseException as exc:  # cancelled or interrupted while waiting
        stopped.append(exc)
        raise
    finally:
        if stopped:  # nothing may keep running for a run that has ended
            for job_task in tasks:
                job_task.cancel()
    if stopped:
        run.abort(stopped[0])
    return run.finish()
