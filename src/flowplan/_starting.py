"""Starting a task: the arguments, program and durable start a driver asks the machine for.

Place in the data flow: plan → **interpreter** (drivers in ``interpreter.py``, ``simulate.py``
and the remote executors call these on the scheduling machine ``_machine._Run``, which inherits
them from :class:`TaskStarter`) → snapshot. A ready task's keyword arguments are read from its
dependencies' records (a triggered task receives ``None`` for one that did not succeed, a
fan-out element its element); a plain task gets just its body's arguments, a chained one its
predecessor's value; a task with gates, retries or effects gets its :func:`task_program`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from flowplan._effects import in_doubt_reason
from flowplan._program import RunBudget, task_program
from flowplan._triggers import received
from flowplan.events import TaskStarted
from flowplan.graph import TaskGraph
from flowplan.plan import Plan
from flowplan.snapshot import TaskRecord, _Ok
from flowplan.transitions import advance

if TYPE_CHECKING:
    from flowplan._cache_plan import CacheRun
    from flowplan._fanout import FanOut
    from flowplan.store import StateStore

__all__ = ["QUEUED_RELEASED", "TaskStarter", "input_values"]

QUEUED_RELEASED: Final = 8
"""How many successes of chained tasks whose values are released (``retain_result=False``)
may wait in the thread driver's queue at once: what bounds a chain's memory on threads."""


def input_values(records: Mapping[str, TaskRecord | _Ok], names: Iterable[str]) -> dict[str, Any]:
    """name → value of each of ``names``' records (an ``_Ok`` tuple's value is its first item);
    a plain loop, as cheap as the comprehension it replaces on the per-task path."""
    values: dict[str, Any] = {}
    for name in names:
        record = records[name]
        values[name] = record[0] if isinstance(record, tuple) else record.value
    return values


class TaskStarter:
    """The methods of ``_Run`` a driver calls to start a task (a base class of ``_Run`` only).

    The attributes are declared here for the type checker; ``_Run.__init__`` sets them all.
    """

    plan: Plan
    graph: TaskGraph
    run_id: str
    records: dict[str, TaskRecord | _Ok]
    view: Mapping[str, TaskRecord]  # the same records, each tuple read as its TaskRecord
    context: object
    clock: Callable[[], float]
    store: StateStore | None
    budget: RunBudget | None
    seed: str
    step_keys: Mapping[str, str]
    plain: frozenset[str]
    triggered: frozenset[str]
    run_set: set[str]
    chain_next: dict[str, str]
    chain_prev: dict[str, str]
    lagged: frozenset[str]
    lag: threading.Semaphore | None
    consumers_left: dict[str, int]
    durable_starts: frozenset[str]
    fanout: FanOut | None
    caching: CacheRun | None

    def record(self, name: str) -> TaskRecord | None:
        """``name``'s record so far (an ``_Ok`` tuple read as its record), or ``None``."""
        record = self.records.get(name)
        return self.view[name] if isinstance(record, tuple) else record

    def inputs(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The keyword arguments for ``name``'s body, and for its gates."""
        spec = self.graph.specs[name]
        records = self.records
        if name in self.triggered:  # a dependency that did not succeed is received as None
            view = self.view
            gate_kwargs = {dep: received(view[dep]) for dep in self.graph.predecessors[name]}
        else:
            gate_kwargs = input_values(records, self.graph.predecessors[name])
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
            kwargs = {spec.upstream_param: input_values(records, preds)}
        else:
            kwargs = input_values(records, self.graph.inputs[name])
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
        if not self.consumers_left:  # no value is released in this run
            return
        released = self.consumers_left.keys()
        lagged = frozenset(n for n in released if n in self.chain_next or n in self.chain_prev)
        if lagged:  # released values: their successes may not pile up in the driver's queue
            self.lagged = lagged
            self.lag = threading.Semaphore(QUEUED_RELEASED)

    def program(self, name: str) -> tuple[Any, dict[str, Any]]:
        """The :func:`task_program` of ``name`` (gates, retries, effects), and its kwargs."""
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
            in_doubt_reason=self.doubt_reason(name),
        )
        return prog, kwargs

    def doubt_reason(self, name: str) -> str:
        """Why the plan found ``name`` in doubt (an element: from its record), else ``""``."""
        plan = self.plan
        earlier = plan.in_doubt.get(name)
        if earlier is None:
            return ""
        if name in plan.decisions:
            return plan.decisions[name].reason
        reason = in_doubt_reason(self.graph.specs[name], earlier)
        if reason is None and earlier.released:  # an element of a released fan-out task
            parent = name.rpartition("[")[0]
            reason = plan.decisions[parent].reason if parent in plan.decisions else None
        return reason or ""

    def attempt_note(self, name: str, attempt: int) -> Callable[[int], None] | None:
        """For an ``at_most_once`` attempt sent to a child process: what records the child's
        pid in the store before the attempt reaches it (``None``: nothing to record).

        A resume that takes over a dead owner then refuses to start while that child lives
        (:meth:`flowplan.store.SqliteStateStore.note_attempt_process`).
        """
        store = self.store
        note = getattr(store, "note_attempt_process", None)
        if note is None or name not in self.durable_starts:
            return None
        lineage = self.plan.lineage_id or self.run_id

        def noted(pid: int) -> None:
            note(lineage, name, attempt, pid)

        return noted

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
        store.save_record(self.run_id, advance(self.record(name), event))
        flush = getattr(store, "flush", None)
        if flush is not None:
            flush()
