"""The scheduling state machine of one run: a ready queue, not layers.

Place in the data flow: plan → **interpreter** (this machine + the drivers in
``interpreter.py``) → snapshot. :class:`_Run` keeps the run's private, mutable bookkeeping
(pending dependency counts, records, held detached tasks, fail-fast and interrupt state) and
turns each event into the names that became ready — O(1) amortised per event. Drivers
(sync executors, asyncio, remote executors, the simulator) feed it events; it never runs user
code itself.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from flowplan._cache_plan import CacheRun
from flowplan._effects import check_store, forget_lineage, in_doubt_reason, register_lineage
from flowplan._fanout import FanOut
from flowplan._program import (
    RunBudget,
    task_program,
)
from flowplan._triggers import decide, received
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
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from flowplan.hooks import Hook, HookDispatcher
from flowplan.plan import Plan
from flowplan.policies import RetryBudget
from flowplan.snapshot import ErrorInfo, Snapshot, TaskRecord, TaskStatus, _make_record
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
        # Tasks with a trigger rule or an optional dependency (``_triggers``): they wait for
        # every dependency to end, then their rule decides. Empty in the common case.
        self.triggered = graph.triggered_tasks()
        # ... and the tasks decided once no dependency is left: the triggered ones, plus those
        # a ``when=`` gate's skip reached (so a failure still to come is named, not the gate).
        self.at_zero: set[str] = set(self.triggered)
        self.survivors: frozenset[str] = frozenset()  # all_done: they outlive a fail-fast stop
        if self.triggered:
            self.plain = self.plain - self.triggered
            specs = graph.specs
            self.survivors = frozenset(n for n in self.triggered if specs[n].trigger == "all_done")
        self.step_keys = plan.step_keys
        # Thread driver only (set there): a plain task → its only successor when that
        # successor has no other dependency; the worker runs it next itself (no round-trip).
        self.chain_next: dict[str, str] = {}
        self.chain_prev: dict[str, str] = {}
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
        # Result caching (``_cache_plan``): ready eligible tasks are looked up, successes
        # written back. None (no cost) when the plan has no cache.
        self.caching: CacheRun | None = None
        self.looking = False  # inside _cache_lookups: _gate defers newly ready tasks to it
        self.found: list[str] = []
        if plan.cache_plan is not None:
            self.caching = CacheRun(plan.cache_plan, plan.graph, context)
            self.caching.seed(plan.reused)
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
        if old is None and type(event) is TaskCancelled and self.plan.in_doubt:
            event = self._keep_doubt(event) or event  # cancelled on start (should_cancel)
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
            record = self._cache_write(record)
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
        if self.caching is not None:
            record = self._cache_write(record)
        self.records[name] = record
        return self._finished(name, record, None)

    def _finished(self, name: str, record: TaskRecord, event: TaskEvent | None) -> list[str]:
        graph = self.graph
        self.unfinished -= 1
        ready: list[str] = []
        detached = name in graph.detached
        if not detached:
            self.main_left -= 1
        if record.status is _SUCCEEDED:
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
                        ready.extend(self._trigger(succ))
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
            root = record.root_cause or name
            verb = record.status.value
            fatal = isinstance(event, TaskFailed) and event.fatal and self.fatal is None
            ready.extend(self._skip_downstream(name, root, verb, evaluate=not fatal))
            failed = record.status is TaskStatus.FAILED
            if fatal:
                assert isinstance(event, TaskFailed)
                exc = record.error.exception if record.error else None
                self.fatal = exc if exc is not None else KeyboardInterrupt()
                self.fatal_in = name
                self._cancel_pending(root, f"the run was interrupted in {name!r}", everything=True)
            elif failed and self.fail_fast and not detached and self.stopped is None:
                self.stopped = name
                ready.extend(self._cancel_pending(root, f"fail-fast: {name!r} failed"))
        if self.fanout is not None and name in self.fanout.owner:  # an element ended
            return self._gate(ready) + self.fanout.finished(name)
        return self._gate(ready)

    def _gate(self, ready: list[str]) -> list[str]:
        """Hold detached tasks until the main DAG is done; release them then."""
        if self.caching is not None and ready:
            ready = self._cache_lookups(ready)
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

    def _cache_write(self, record: TaskRecord) -> TaskRecord:
        """Write a success back to the result cache (before its successors read its key and
        before the store saves it); the record's reason says what caching did."""
        assert self.caching is not None
        note = self.caching.write(record)
        return record if note is None else attrs.evolve(record, reason=note)

    def _cache_lookups(self, ready: list[str]) -> list[str]:
        """Reuse cached results of ready cache-eligible tasks; return the tasks to run.

        Iterative: tasks a hit makes ready are looked up in the same loop (nested ``_gate``
        calls only collect them), so a long chain of hits never deepens the stack.
        """
        if self.looking:
            self.found.extend(ready)
            return []
        caching = self.caching
        assert caching is not None
        out: list[str] = []
        work = ready[::-1]
        self.looking = True
        try:
            while work:
                name = work.pop()
                stopped = self.stopped is not None and name not in self.survivors
                if self.fatal is not None or stopped:
                    out.append(name)  # the driver cancels it
                    continue
                found = caching.lookup(name, self.records, self.step_keys.get(name))
                if found is None:
                    out.append(name)
                    continue
                if isinstance(found, TaskRecord):
                    self.apply(TaskReused(self.run_id, self.clock(), name, found))
                else:  # strict cache, an input with no stable fingerprint
                    info = ErrorInfo.from_exception(found, kind="cache")
                    self.apply(TaskFailed(self.run_id, self.clock(), name, 0, info, str(found)))
                work.extend(self.found[::-1])
                self.found.clear()
        finally:
            self.looking = False
        return out

    def _skip_downstream(
        self, name: str, root: str, verb: str, *, evaluate: bool = True
    ) -> list[str]:
        """Skip every pending task below ``name``; below a cancelled task, cancel them.

        A task in ``at_zero`` — one with a trigger rule (``_triggers``), or one a ``when=``
        gate's skip reached — is not skipped outright: it counts the dependency as ended, and
        once all have ended its rule decides (deterministically, a failure named before a
        gate): it may become ready (returned) or be skipped with the rule's reason and root
        cause. Below a cancellation (a fail-fast stop) only ``all_done`` tasks are decided so;
        the rest are cancelled. With ``evaluate`` off or after an interrupt, no rule is
        consulted.
        """
        evaluate = evaluate and self.fatal is None
        at_zero = self.at_zero if evaluate else set()
        records = self.records
        ready: list[str] = []
        stack = [(name, verb, root, verb == TaskStatus.CANCELLED.value)]
        while stack:
            upstream, how, cause, cancel = stack.pop()
            gated = evaluate and not cancel and self._gated(cause)
            # below a cancellation (the run stopped) only cleanup is still decided
            deciding = self.survivors if cancel else at_zero
            for succ in self.graph.successors[upstream]:
                if succ in self.run_set and succ not in records:
                    if gated:  # decide once every dependency has ended: a failure may come
                        at_zero.add(succ)
                    if deciding and succ in deciding and evaluate:
                        left = self.waiting[succ] - 1
                        self.waiting[succ] = left
                        if left == 0:
                            verdict = decide(self.graph, succ, records)
                            if verdict is None:
                                ready.append(succ)
                            else:
                                reason, why = verdict
                                skip = TaskSkipped(self.run_id, self.clock(), succ, reason, why)
                                self._record_terminal(succ, skip)
                                stack.append((succ, "was skipped", why, False))
                        continue
                    reason = f"upstream {upstream!r} {how}"
                    event: TaskSkipped | TaskCancelled
                    if cancel:  # it never started because the run stopped: not a skip
                        event = TaskCancelled(self.run_id, self.clock(), succ, reason, cause)
                    else:
                        event = TaskSkipped(self.run_id, self.clock(), succ, reason, cause)
                    self._record_terminal(succ, event)
                    below = "was cancelled" if cancel else "was skipped"
                    stack.append((succ, below, cause, cancel))
        return ready

    def _gated(self, root: str) -> bool:
        """Whether ``root`` (a cascade's root cause) is a skip, not a failure."""
        record = self.records.get(root)
        return record is not None and record.status is TaskStatus.SKIPPED

    def _trigger(self, name: str) -> list[str]:
        """``name`` (a triggered task) has no dependency left to wait for: apply its rule.

        Returns ``[name]`` when the rule lets it run, else skips it (and what is below it) and
        returns the tasks that became ready meanwhile.
        """
        verdict = decide(self.graph, name, self.records)
        if verdict is None:
            return [name]
        reason, root = verdict
        self._record_terminal(name, TaskSkipped(self.run_id, self.clock(), name, reason, root))
        return self._skip_downstream(name, root, TaskStatus.SKIPPED.value)

    def _keep_doubt(self, event: TaskSkipped | TaskCancelled) -> TaskInDoubt | None:
        """A skip or cancellation of a task planned IN_DOUBT leaves it in doubt (else None).

        Its earlier attempt may have taken effect and nothing settled it in this run, so its
        record must stay IN_DOUBT (a SKIPPED or CANCELLED record would let the next resume run
        it again silently).
        """
        earlier = self.plan.in_doubt.get(event.task)
        if earlier is None:
            return None
        why = self._doubt(event.task)  # an in-doubt element has no decision of its own
        reason = f"{why}; not settled in this run ({event.reason})"
        return TaskInDoubt(self.run_id, event.time, event.task, earlier.attempts, reason)

    def _record_terminal(self, name: str, skip: TaskSkipped | TaskCancelled) -> None:
        doubt = self._keep_doubt(skip) if self.plan.in_doubt else None
        event = skip if doubt is None else doubt
        record = advance(self.records.get(name), event)
        self.records[name] = record
        if self.store is not None:
            self.store.save_record(self.run_id, record)
        if self.dispatch:
            self.dispatch(event)
        self.unfinished -= 1
        if name not in self.graph.detached:
            self.main_left -= 1

    def _cancel_pending(self, root: str, reason: str, *, everything: bool = False) -> list[str]:
        """Cancel tasks that have not started (main ones; with ``everything``, detached too).

        Tasks already handed to a worker are left alone: they cancel themselves on start
        (:meth:`should_cancel`), or finish if they were already running. Without
        ``everything`` (a fail-fast stop), ``all_done`` tasks are left alone too: cleanup still
        runs once its dependencies have ended. Returns the tasks that became ready (such
        cleanup tasks whose last dependency was just cancelled).
        """
        detached = self.graph.detached
        survivors = () if everything else self.survivors
        ready: list[str] = []
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
            if survivors and name in survivors:
                continue
            event = TaskCancelled(self.run_id, self.clock(), name, reason, root)
            self._record_terminal(name, event)
            # the (detached) tasks below it can never run now; without this the run never ends
            ready.extend(self._skip_downstream(name, root, TaskStatus.CANCELLED.value))
        if everything:
            self.held = []
        return ready

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
        if (
            self.stopped is not None
            and name not in self.graph.detached
            and name not in self.survivors
        ):
            reason = f"fail-fast: {self.stopped!r} failed"
            return TaskCancelled(self.run_id, self.clock(), name, reason, self.stopped)
        return None

    def inputs(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The keyword arguments for ``name``'s body, and for its gates."""
        spec = self.graph.specs[name]
        records = self.records
        if name in self.triggered:  # a dependency that did not succeed is received as None
            gate_kwargs = {dep: received(records[dep]) for dep in self.graph.predecessors[name]}
        else:
            gate_kwargs = {dep: records[dep].value for dep in self.graph.predecessors[name]}
        if spec.upstream_param is not None:
            kwargs: dict[str, Any] = {spec.upstream_param: dict(gate_kwargs)}
        else:
            kwargs = {dep: gate_kwargs[dep] for dep in self.graph.inputs[name]}
        if spec.context_param is not None:
            kwargs[spec.context_param] = self.context
        if self.fanout is not None:  # an element instance receives its element
            self.fanout.bind(name, kwargs, gate_kwargs)
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
        if self.caching is not None:  # a chained successor would skip its cache lookup
            return
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
            step_key=self.step_keys.get(name),
            clock=self.clock,
            budget=self.budget,
            seed=self.seed,
            in_doubt=self.plan.in_doubt.get(name),
            in_doubt_reason=self._doubt(name),
        )
        return prog, kwargs

    def _doubt(self, name: str) -> str:
        """Why the plan found ``name`` in doubt (an element: from its record), else ``""``."""
        plan = self.plan
        earlier = plan.in_doubt.get(name)
        if earlier is None:
            return ""
        if name in plan.decisions:
            return plan.decisions[name].reason
        return in_doubt_reason(self.graph.specs[name], earlier) or ""

    def durable_start(self, name: str, attempt: int) -> None:
        """Before an ``at_most_once`` attempt's body runs: commit its start to the store.

        Called by the driver from the worker about to run the attempt (events may still be
        queued): the RUNNING record is saved and the store's open batch flushed, so a crash
        from here on leaves a record that makes the task IN_DOUBT on resume.
        """
        store = self.store
        if store is None or name not in self.durable_starts:
            return
        event = TaskStarted(self.run_id, self.clock(), name, attempt)
        store.save_record(self.run_id, advance(self.records.get(name), event))
        flush = getattr(store, "flush", None)
        if flush is not None:
            flush()

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
        names = self.plan.to_run if self.fanout is None else self.fanout.ordered(self.plan.to_run)
        for name in names:
            old = self.records.get(name)  # None: pending, or running on a quiet fast path
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
                event = self._keep_doubt(event) or event
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
        names = self.plan.to_run if self.fanout is None else self.fanout.ordered(self.plan.to_run)
        for name in names:
            ordered[name] = records.get(name) or TaskRecord(name, _PENDING)
        self.records = records = ordered
        lineage = None if self.lineage == self.run_id else self.lineage
        snapshot = Snapshot(self.run_id, records, lineage_id=lineage)
        forget_lineage(self.run_id)
        by_status = collections.Counter([r.status for r in records.values()])
        counts = {status.value: count for status, count in by_status.items()}
        bad = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.IN_DOUBT)
        detached = self.graph.detached
        if detached:
            failed = any(rec.status in bad for name, rec in records.items() if name not in detached)
        else:
            failed = any(by_status[status] for status in bad)
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
