"""The scheduling state machine of one run: a ready queue, not layers.

Place in the data flow: plan → **interpreter** (this machine + the drivers in
``interpreter.py``) → snapshot. :class:`_Run` keeps the run's private, mutable bookkeeping
(pending dependency counts, records, held detached tasks, fail-fast and interrupt state) and
turns each event into the names that became ready — O(1) amortised per event. Drivers
(sync executors, asyncio, remote executors, the simulator) feed it events; it never runs user
code itself. Its parts live next to it: ``_starting`` (what a driver needs to start a task,
inherited), ``_cascade`` (skip/cancel propagation, trigger rules, in-doubt kept),
``_cache_run`` (cache lookups and write-back), ``_fanout`` (element instances).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from flowplan._cache_plan import CacheRun
from flowplan._cache_run import cache_lookups, cache_write
from flowplan._cascade import cancel_pending, keep_doubt, skip_downstream, survivors_of, trigger
from flowplan._effects import check_store, forget_lineage, register_lineage
from flowplan._fanout import FanOut
from flowplan._program import RunBudget
from flowplan._starting import TaskStarter
from flowplan._tally import record_order, task_counts
from flowplan.errors import SerializationError
from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskInDoubt,
    TaskReleased,
    TaskReused,
    TaskStarted,
    TaskSucceeded,
)
from flowplan.hooks import Hook, HookDispatcher
from flowplan.plan import Plan
from flowplan.policies import RetryBudget
from flowplan.snapshot import (
    ErrorInfo,
    Snapshot,
    TaskRecord,
    TaskStatus,
    _Ok,
    _Records,
    ok_record,
)
from flowplan.transitions import advance

if TYPE_CHECKING:
    from flowplan._isolation import Isolated
    from flowplan.store import StateStore

__all__ = ["_Done", "_Run"]

_PENDING = TaskStatus.PENDING
_RUNNING = TaskStatus.RUNNING
_SUCCEEDED = TaskStatus.SUCCEEDED

_Done = tuple[str, float, float, Any, float]
"""A plain task's success as one queue item, for quiet runs (no hooks, no store): name,
started_at, finished_at, value, duration_ms. Its record equals the fold of the TaskStarted and
TaskSucceeded events it stands for."""


class _Run(TaskStarter):
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
        self.records: dict[str, TaskRecord | _Ok] = dict(plan.reused)
        self.view = _Records(self.records)  # the same, each _Ok tuple read as its record
        # Quiet: nobody observes a task's start and success (no store, no hook wanting them),
        # so a plain task's success is applied as one ``_Done`` item without building its two
        # events. Decided once per run; other events still go to the hooks wanting them.
        dispatch = self.dispatch
        self.quiet = store is None and not (
            dispatch and (dispatch.wants(TaskStarted) or dispatch.wants(TaskSucceeded))
        )
        self.plain = graph.plain_tasks()  # run without the task_program generator
        if plan.in_doubt:  # settled by their program first (a released value's task, too)
            self.plain = self.plain - plan.in_doubt.keys()
        # Tasks with a trigger rule or an optional dependency (``_triggers``): they wait for
        # every dependency to end, then their rule decides. Empty in the common case.
        self.triggered = graph.triggered_tasks()
        # ... and the tasks decided once no dependency is left: the triggered ones, plus those
        # a ``when=`` gate's skip reached (so a failure still to come is named, not the gate).
        self.at_zero: set[str] = set(self.triggered)
        self.survivors: frozenset[str] = frozenset()  # all_done: they outlive a fail-fast stop
        if self.triggered:
            self.plain = self.plain - self.triggered
            self.survivors = survivors_of(graph, self.triggered)
        # Durable stores record each task's step key, so a later plan can tell when a reused
        # task's code changed: computed here once per graph, and only for such a store.
        self.step_keys = plan.step_keys
        if not self.step_keys and getattr(store, "keeps_step_keys", False):
            with contextlib.suppress(Exception):  # an exotic callable: the run goes on unkeyed
                self.step_keys = graph.step_keys()
        # Thread driver only (set there): a plain task → its only successor when that
        # successor has no other dependency; the worker runs it next itself (no round-trip).
        self.chain_next: dict[str, str] = {}
        self.chain_prev: dict[str, str] = {}
        # ... and, set with them, the chained tasks whose values are released
        # (retain_result=False) and the tokens bounding how many of their successes wait in
        # the driver's queue: a worker running a chain ahead of the driver must not pile up
        # values that are about to be released (see wait_for_driver / unlag).
        self.lagged: frozenset[str] = frozenset()
        self.lag: threading.Semaphore | None = None
        # Quiet thread runs: plain tasks a worker is running (no RUNNING record exists).
        self.running: set[str] = set()
        # Set by the driver: the isolation="process" tasks and their process pool, if any.
        self.isolated: Isolated | None = None
        to_run = plan.to_run
        run_set = set(to_run)
        self.run_set = run_set
        preds = graph.predecessors
        if len(run_set) == len(graph.specs):  # a fresh full run: every dependency runs
            self.waiting = {n: len(preds[n]) for n in to_run}
        else:
            self.waiting = {n: sum(p in run_set for p in preds[n]) for n in to_run}
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
        # Fan-out tasks (``_fanout``) open into element instances at run time; None (no cost)
        # when the graph has none.
        self.fanout: FanOut | None = None
        if fan_out := graph.fan_out_tasks():
            self.fanout = FanOut(self, fan_out)
        # Effects (``_effects``): resumed runs keep their lineage id for idempotency keys; a
        # store that cannot record starts refuses at_most_once tasks before anything runs.
        self.lineage = plan.lineage_id or plan.run_id
        self.durable_starts = check_store(plan, store)
        register_lineage(self.run_id, self.lineage)
        # Result caching (``_cache_plan``, ``_cache_run``): ready eligible tasks are looked up,
        # successes written back. None (no cost) when the plan has no cache.
        self.caching: CacheRun | None = None
        self.looking = False  # inside cache_lookups: _gate defers newly ready tasks to it
        self.found: list[str] = []
        if plan.cache_plan is not None:
            self.caching = CacheRun(plan.cache_plan, plan.graph, context)
            self.caching.seed(plan.reused)
        self.started = time.perf_counter()
        self.refused: BaseException | None = None  # the store's refusal to begin the run
        # When start() began the run, on the records' clock: what started earlier was reused.
        self.started_at: float | None = None

    # -- events ---------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if self.store is not None and isinstance(event, RunStarted):
            try:
                self.store.begin_run(self.plan)
            except BaseException as exc:  # e.g. RunOwnedError: the run never began
                self.store = None  # nothing more of it is written: the store is another's
                self.refused = exc
                raise
        if self.dispatch:
            self.dispatch(event)

    def apply(self, event: TaskEvent) -> list[str]:
        """Apply a task event; return the names that became ready to run."""
        name = event.task
        old = self.record(name)
        if old is None and type(event) is TaskCancelled and self.plan.in_doubt:
            event = keep_doubt(self, event) or event  # cancelled on start (should_cancel)
        released = isinstance(event, TaskReleased)
        if (
            old is not None
            and old.status is not _PENDING
            and old.status is not _RUNNING
            and not released
        ):
            return []  # e.g. a task cancelled while its worker was about to start it
        record = advance(old, event)
        if self.caching is not None and type(event) is TaskSucceeded:
            record = cache_write(self, record)
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
        ok = (value, started_at, finished_at, duration_ms, self.step_keys.get(name))
        if self.caching is None:  # kept as an _Ok tuple: its TaskRecord is built when read
            self.records[name] = ok
            return self._finished(name, None, None)
        record = cache_write(self, ok_record(name, ok))
        self.records[name] = record
        return self._finished(name, record, None)

    def _finished(self, name: str, record: TaskRecord | None, event: TaskEvent | None) -> list[str]:
        """Count ``name``'s end (``record`` ``None``: a quiet success kept as a tuple); return
        the names that became ready."""
        graph = self.graph
        self.unfinished -= 1
        ready: list[str] = []
        detached = name in graph.detached
        if not detached:
            self.main_left -= 1
        if record is None or record.status is _SUCCEEDED:
            at_zero = self.at_zero
            waiting = self.waiting
            records = self.records
            chained = self.chain_next.get(name) if self.chain_next else None
            for succ in graph.successors[name]:
                left = waiting.get(succ)
                if left is None:  # not planned to run
                    continue
                left -= 1
                waiting[succ] = left
                if (
                    left == 0
                    and succ not in records
                    and succ != chained  # its worker runs it already
                ):
                    if at_zero and succ in at_zero:
                        ready.extend(trigger(self, succ))
                    else:
                        ready.append(succ)
            consumers_left = self.consumers_left
            if consumers_left:  # some value may be released (retain_result=False)
                if name in consumers_left and consumers_left[name] == 0:
                    self._release(name)
                for pred in graph.predecessors[name]:
                    if pred in consumers_left:
                        consumers_left[pred] -= 1
                        if consumers_left[pred] == 0:
                            self._release(pred)
        else:
            assert record is not None
            root = record.root_cause or name
            verb = record.status.value
            fatal = isinstance(event, TaskFailed) and event.fatal and self.fatal is None
            ready.extend(skip_downstream(self, name, root, verb, evaluate=not fatal))
            failed = record.status is TaskStatus.FAILED
            if fatal:
                assert isinstance(event, TaskFailed)
                exc = record.error.exception if record.error else None
                self.fatal = exc if exc is not None else KeyboardInterrupt()
                self.fatal_in = name
                cancel_pending(self, root, f"the run was interrupted in {name!r}", everything=True)
            elif failed and self.fail_fast and not detached and self.stopped is None:
                self.stopped = name
                ready.extend(cancel_pending(self, root, f"fail-fast: {name!r} failed"))
        if self.fanout is not None and name in self.fanout.owner:  # an element ended
            return self._gate(ready) + self.fanout.finished(name)
        return self._gate(ready)

    def _gate(self, ready: list[str]) -> list[str]:
        """Hold detached tasks until the main DAG is done; release them then."""
        if self.caching is not None and ready:
            ready = cache_lookups(self, ready)
        detached = self.graph.detached
        out = [n for n in ready if n not in detached] if detached else ready
        if detached:
            self.held.extend(n for n in ready if n in detached)
            if self.main_left == 0 and self.held:
                out.extend(self.held)
                self.held = []
        if self.fatal is not None:
            return []
        return out if self.fanout is None else self.fanout.expand(out)

    def _release(self, name: str) -> None:
        record = self.record(name)
        if record is not None and record.has_value:
            self.apply(TaskReleased(self.run_id, self.clock(), name))

    def wait_for_driver(self) -> None:
        """Worker side, before queueing the success of a task in ``lagged``: take a token,
        waiting while too many such successes are queued (an aborted run waits for nothing)."""
        lag = self.lag
        assert lag is not None
        while not lag.acquire(timeout=0.1):
            if self.fatal is not None:
                return

    def unlag(self, item: TaskEvent | _Done) -> None:
        """Driver side, once ``item`` is applied: give back the token of a lagged success."""
        if type(item) is tuple:
            name: str | None = item[0]
        else:
            assert not isinstance(item, tuple)
            name = item.task if type(item) is TaskSucceeded else None
        if name in self.lagged:
            assert self.lag is not None
            self.lag.release()

    # -- starting tasks -------------------------------------------------------------------
    def start(self) -> list[str]:
        """Emit the run's first events; return the tasks ready at once."""
        plan = self.plan
        self.started_at = now = self.clock()
        self.emit(RunStarted(self.run_id, now, plan.to_run, tuple(plan.reused), plan.resumed_from))
        changed = plan.code_changed
        for name, record in plan.reused.items():
            event = TaskReused(self.run_id, self.clock(), name, record, changed.get(name))
            if self.store is not None:
                self.store.save_record(self.run_id, record)
            if self.dispatch:
                self.dispatch(event)
        # ``waiting`` holds the planned tasks in plan order, none counted down yet
        return self._gate([n for n, left in self.waiting.items() if left == 0])

    def should_cancel(self, name: str) -> TaskCancelled | None:
        """For a task about to start: a cancellation if the run stopped meanwhile."""
        if self.fatal is not None:
            reason = f"the run was interrupted in {self.fatal_in!r}"
            return TaskCancelled(self.run_id, self.clock(), name, reason, self.fatal_in)
        if (
            self.stopped is not None
            and name not in self.graph.detached
            and name not in self.survivors
        ):
            reason = f"fail-fast: {self.stopped!r} failed"
            return TaskCancelled(self.run_id, self.clock(), name, reason, self.stopped)
        return None

    # -- finishing ------------------------------------------------------------------------
    def abort(self, exc: BaseException) -> NoReturn:
        """End a run stopped from outside its tasks, recording its state, and raise ``exc``.

        For an interrupt in the driver (``KeyboardInterrupt`` while waiting on workers, a
        cancelled ``aexecute``) or a store that cannot write: running tasks become FAILED
        (kind ``"interrupted"``: not succeeded, so they run again on resume), pending ones
        CANCELLED; ``RunFinished`` is emitted; ``exc`` is raised carrying the snapshot as
        ``flowplan_snapshot``. A store write that fails stops further writes (best effort).
        """
        if exc is self.refused:  # the store refused the run before it began: nothing ran
            forget_lineage(self.run_id)
            raise exc
        self.fatal = exc
        why = f"the run was interrupted by {type(exc).__name__}"
        info = ErrorInfo.from_exception(exc, kind="interrupted")
        names = self.plan.to_run if self.fanout is None else self.fanout.ordered(self.plan.to_run)
        for name in names:
            old = self.record(name)  # None: pending, or running on a quiet fast path
            if old is None and name in self.running:
                old = TaskRecord(name, _RUNNING, 1)
            event: TaskFailed | TaskCancelled | TaskInDoubt
            if old is not None and old.status is _RUNNING:
                reason = f"{why} while it ran; it runs again on resume" + (
                    "" if name not in self.durable_starts else " unless it is in doubt"
                )
                event = TaskFailed(self.run_id, self.clock(), name, old.attempts, info, reason)
            elif old is None or old.status is _PENDING:
                event = TaskCancelled(self.run_id, self.clock(), name, why, self.fatal_in or name)
                event = keep_doubt(self, event) or event
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
                self.store.finish_run(Snapshot(self.run_id, _Records(dict(self.records))), "failed")
            self.store = None
        self.finish()
        raise exc  # pragma: no cover - finish() raised it

    def finish(self) -> Snapshot:
        # Record order (``_tally.record_order``, the one every surface shows): the run's tasks,
        # reused or run, in graph order, each fan-out task's elements right after it (a task
        # that never got a record — an interrupted run — is PENDING). O(n), once per run.
        records = self.records
        plan = self.plan
        tasks: Iterable[str] = plan.to_run
        if plan.reused:
            scheduled = set(plan.to_run)
            tasks = [n for n in self.graph.order if n in plan.reused or n in scheduled]
        if self.fanout is not None:
            members = self.fanout.members.values()
            tasks = record_order(tasks, [name for names in members for name in names])
        ordered: dict[str, TaskRecord | _Ok] = {}
        for name in tasks:
            ordered[name] = records.get(name) or TaskRecord(name, _PENDING)
        self.records = ordered
        self.view = _Records(ordered)
        view = _Records(dict(ordered))  # the snapshot's own: nothing the run does reaches it
        lineage = None if self.lineage == self.run_id else self.lineage
        snapshot = Snapshot(self.run_id, view, lineage_id=lineage)
        forget_lineage(self.run_id)
        known = plan.reused.keys() | plan.elements.keys() if plan.reused or plan.elements else ()
        counts = task_counts(view, run_started_at=self.started_at, reused=known)
        bad = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.IN_DOUBT)
        detached = self.graph.detached
        if detached:
            failed = any(st in bad for name, st in view.statuses() if name not in detached)
        else:
            failed = any(counts.get(status.value) for status in bad)
        status = "failed" if failed else "succeeded"
        duration = (time.perf_counter() - self.started) * 1000
        if self.store is not None:
            self.store.finish_run(snapshot, status)
        self.emit(RunFinished(self.run_id, self.clock(), status, tuple(counts.items()), duration))
        if self.fatal is not None:
            self.fatal.flowplan_snapshot = snapshot  # type: ignore[attr-defined]
            raise self.fatal
        return snapshot
