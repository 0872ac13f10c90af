"""Planning: ``plan(graph, snapshot)`` decides, per task, *run*, *reuse* or *not needed*, and why.

Place in the data flow: spec → graph → **plan** → interpreter → snapshot. A pure function: the
same graph, snapshot and options give the same :class:`Plan`. Resume is nothing but planning
again from the last snapshot — succeeded tasks are reused, everything else runs.
"""

from __future__ import annotations

import collections
import enum
import uuid
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from flowplan._effects import in_doubt_reason, recomputable, released_reason
from flowplan._fanout_plan import doubtful_elements, prior_elements
from flowplan._gc import gc_paused
from flowplan._liveness import check_liveness
from flowplan._stored import Unstructured
from flowplan.errors import InvalidOptionError, UnknownTaskError
from flowplan.graph import TaskGraph
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus
from flowplan.spec import TaskSpec

if TYPE_CHECKING:
    import networkx as nx

    from flowplan._cache_plan import CachePlan
    from flowplan._estimate import DurationSource, Estimate
    from flowplan.cache import ResultCache

__all__ = ["Action", "Decision", "Plan", "plan"]


class Action(enum.Enum):
    """What the interpreter will do with a task.

    ``IN_DOUBT``: an ``effect="at_most_once"`` task whose earlier attempt started with no
    recorded outcome. It is scheduled (in ``to_run``) but not run: the run calls its
    ``reconcile`` callback if it has one (which may let it run), else records it IN_DOUBT.
    """

    RUN = "run"
    REUSE = "reuse"
    NOT_NEEDED = "not_needed"
    IN_DOUBT = "in_doubt"


@attrs.frozen
class Decision:
    """One task's action and the reason for it, in words."""

    task: str
    action: Action
    reason: str


class _Decisions(Mapping[str, Decision]):
    """``Plan.decisions``: each task's action and reason kept in two plain dicts (no object per
    task: a 100,000-task plan builds no ``Decision`` until one is read), read as
    name → :class:`Decision` in topological order."""

    __slots__ = ("_actions", "_reasons")

    def __init__(self, actions: dict[str, Action], reasons: dict[str, str]) -> None:
        self._actions = actions
        self._reasons = reasons

    def __getitem__(self, name: str) -> Decision:
        return Decision(name, self._actions[name], self._reasons[name])

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[str]:
        return iter(self._actions)

    def __len__(self) -> int:
        return len(self._actions)

    def __repr__(self) -> str:
        return f"<{len(self)} decisions>"


def _name(task: object) -> str:
    if isinstance(task, str):
        return task
    if isinstance(task, TaskSpec):
        return task.name
    raise UnknownTaskError(
        f"expected a task (a TaskSpec) or a task name, got {task!r} ({type(task).__name__}); "
        "pass the decorated task or its name",
        name=repr(task),
    )


@attrs.frozen(eq=False)
class Plan:
    """An immutable execution plan: what runs, what is reused, what is not needed — and why.

    Attributes:
        graph: the graph planned.
        run_id: the id the run will carry.
        decisions: name → :class:`Decision`, in topological order.
        reused: name → the record carried into the run (succeeded earlier or overridden).
        to_run: the names the run schedules (RUN and IN_DOUBT), in topological order.
        step_keys: name → step key when keys are in use (journal, cache), else empty.
        in_doubt: name → the earlier record of each IN_DOUBT task, and of each in-doubt
            element (``process[2]``) of an ``at_most_once`` fan-out task that runs again.
        lineage_id: the id of the first run of this chain of resumes (``run_id`` for a fresh
            run); idempotency keys derive from it.
        elements: element name (``process[2]``) → the earlier record a resumed fan-out task
            reuses instead of running that element again (see ``fan_out=``).
        cache_plan: the result cache and the keys computed at plan time, when planned with
            ``cache=`` (see :mod:`flowplan.cache`), else ``None``.
        resumed_from: the run id of the snapshot planned from (a resume), else ``None``.
        code_changed: name → why, for each task whose earlier success was recorded under
            another step key than its code gives now ("its code changed", or "upstream
            'load' changed"): reused anyway (the reason says so, and the run's
            :class:`~flowplan.events.TaskReused` event carries it) unless planned with
            ``rerun_changed=True``, which runs them again.
    """

    graph: TaskGraph
    run_id: str
    decisions: Mapping[str, Decision] = attrs.field(repr=False)
    reused: Mapping[str, TaskRecord] = attrs.field(repr=False)
    to_run: tuple[str, ...]
    step_keys: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    in_doubt: Mapping[str, TaskRecord] = attrs.field(factory=dict, repr=False)
    lineage_id: str = attrs.field(default="", repr=False)
    elements: Mapping[str, TaskRecord] = attrs.field(factory=dict, repr=False)
    cache_plan: CachePlan | None = attrs.field(default=None, repr=False)
    resumed_from: str | None = attrs.field(default=None, repr=False)
    code_changed: Mapping[str, str] = attrs.field(factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"Plan(run_id={self.run_id!r}, {len(self.decisions)} tasks: {self._counts()})"

    def explain(
        self,
        task: str | TaskSpec[..., Any] | None = None,
        *,
        durations: DurationSource | None = None,
        max_workers: int | None = None,
    ) -> str:
        """Say, in plain words, what will happen to each task (or to one task) and why.

        The whole plan's explanation starts with a header (how many tasks run, are reused, are
        not needed, are in doubt; which run it resumes), then one line per task in graph order:
        ``ACTION name: reason``, with notes in brackets (a ``when=`` gate that may skip it, a
        detached task whose failure never fails the run). ``flowplan explain`` prints this
        same text.

        With ``durations`` (as for :meth:`estimate`), the whole plan's explanation ends with
        its estimate: ``estimate: about 4 min 10 s; critical path: extract → load``.

        >>> from flowplan.spec import TaskSpec
        >>> g = TaskGraph.build([TaskSpec("a", lambda: 1)])
        >>> print(plan(g, run_id="r").explain())
        1 to run, 0 to reuse, 0 not needed
        run a: no earlier record
        >>> print(plan(g, run_id="r").explain("a"))
        run a: no earlier record
        >>> print(plan(g, run_id="r").explain(durations={"a": 90}))
        1 to run, 0 to reuse, 0 not needed
        run a: no earlier record
        estimate: about 1 min 30 s; critical path: a

        Raises:
            UnknownTaskError: ``task`` is not in the plan ("did you mean ...").
        """
        if task is not None:
            name = _name(task)
            if name not in self.decisions:
                raise self.graph.unknown(name)
            return self._line(name)
        lines = [self._header(), *(self._line(name) for name in self.decisions)]
        if durations is not None:
            estimate = self.estimate(durations, max_workers=max_workers)
            lines.append(f"estimate: {estimate.describe()}")
        return "\n".join(lines)

    def _counts(self) -> str:
        """``"2 to run, 1 to reuse, 0 not needed"`` (``", 1 in doubt"`` when there are any)."""
        decisions = self.decisions
        actions = (  # a fresh plan's decisions build no Decision object per task
            decisions._actions.values()
            if isinstance(decisions, _Decisions)
            else (d.action for d in decisions.values())
        )
        counts = collections.Counter(actions)
        text = (
            f"{counts[Action.RUN]} to run, {counts[Action.REUSE]} to reuse, "
            f"{counts[Action.NOT_NEEDED]} not needed"
        )
        return text + (f", {n} in doubt" if (n := counts[Action.IN_DOUBT]) else "")

    def _header(self) -> str:
        source = self.resumed_from
        if source is None:
            return self._counts()
        shown = "from the journal" if source == "journal" else f"resuming {source[:12]}"
        stale = sum(1 for n in self.code_changed if n in self.reused)
        if stale:
            shown += (
                f"; {stale} reused task{'s' if stale > 1 else ''} changed since {source[:12]}: "
                "plan(..., rerun_changed=True) runs them again"
            )
        return f"{self._counts()} ({shown})"

    def _line(self, name: str) -> str:
        decision = self.decisions[name]
        line = f"{decision.action.value.replace('_', ' ')} {name}: {decision.reason}"
        notes = self._notes(name, decision)
        return f"{line} ({'; '.join(notes)})" if notes else line

    def _notes(self, name: str, decision: Decision) -> list[str]:
        """What the reason alone does not say about a task: one short clause each."""
        spec = self.graph.specs[name]
        notes = []
        if decision.action is Action.RUN and spec.when is not None:
            notes.append("skipped at run time if its when= gate is false")
        if spec.detached:
            notes.append("detached: its failure never fails the run")
        return notes

    def action(self, task: str | TaskSpec[..., Any]) -> Action:
        """The action planned for ``task``."""
        name = _name(task)
        if name not in self.decisions:
            raise self.graph.unknown(name)
        return self.decisions[name].action

    def estimate(
        self,
        durations: DurationSource,
        *,
        max_workers: int | None = None,
        default_s: float | None = None,
    ) -> Estimate:
        """Estimate how long this plan's run will take, its critical path and its width.

        Tasks the plan reuses or does not need cost nothing; every scheduled task costs its
        known duration, or ``default_s`` when no source knows it (listed in
        ``Estimate.assumed``). Without ``max_workers`` the estimate is the longest path through
        the scheduled tasks (unlimited workers); with it, the tasks are scheduled on a fake
        clock with that many workers, in the order the interpreter's ready queue starts them.
        Detached tasks start after the main tasks, as in a run.

        Args:
            durations: task name → seconds; a :class:`~flowplan.snapshot.Snapshot` of a past
                run; or several (each task's median over its past successes, from first start
                to success, retries included). For a store's history pass
                ``flowplan.store_history(store)`` (a ``SqliteStateStore``'s newest runs).
            max_workers: how many tasks run at once (``None``: unlimited).
            default_s: the duration of a task no source knows (default: the median of the
                known tasks' durations, or 1 s when none is known).

        Returns:
            A frozen :class:`~flowplan.Estimate`: ``makespan_s``, ``critical_path``,
            ``width``, and each scheduled task's ``start_s`` and ``finish_s``.

        Raises:
            InvalidOptionError: a duration that is not a number of seconds >= 0, or a
                ``max_workers`` that is not a positive int.

        >>> from flowplan.spec import Dependency
        >>> a = TaskSpec("a", lambda: 1)
        >>> b = TaskSpec("b", lambda a: a, deps=(Dependency("a", a),))
        >>> c = TaskSpec("c", lambda a: a, deps=(Dependency("a", a),))
        >>> estimate = plan(TaskGraph.build([a, b, c]), run_id="r").estimate(
        ...     {"a": 2.0, "b": 3.0, "c": 1.0})
        >>> estimate.makespan_s, estimate.critical_path, estimate.width
        (5.0, ('a', 'b'), 2)
        """
        from flowplan._estimate import estimate_plan

        return estimate_plan(self, durations, max_workers=max_workers, default_s=default_s)

    def to_networkx(self) -> nx.DiGraph[str]:
        """The planned graph as a new ``networkx.DiGraph`` (see
        :meth:`TaskGraph.to_networkx`) whose nodes also carry ``action`` — one of ``"run"``,
        ``"reuse"``, ``"not_needed"``, ``"in_doubt"`` — and ``reason``.

        >>> g = plan(TaskGraph.build([TaskSpec("a", lambda: 1)]), run_id="r").to_networkx()
        >>> node = g.nodes["a"]
        >>> node["action"], node["reason"]
        ('run', 'no earlier record')
        """
        from flowplan._networkx import plan_to_networkx

        return plan_to_networkx(self)


def _check_names(graph: TaskGraph, names: Iterable[str], what: str) -> None:
    for name in names:
        if name not in graph.specs:
            raise graph.unknown(name, what=what)


def _needed(graph: TaskGraph, targets: Iterable[str] | None) -> frozenset[str] | None:
    if targets is None:
        return None
    wanted = set(targets)
    if not wanted:
        raise graph.unknown("", what="target (the targets list is empty)")
    needed = set(wanted) | graph.ancestors(wanted)
    for name in graph.order:  # detached side effects of the needed tasks come along
        if name in graph.detached and name not in needed:
            preds = graph.predecessors[name]
            if preds and all(p in needed for p in preds):
                needed.add(name)
    return frozenset(needed)


_NO_RECORD = "no earlier record"


def _previous_reason(record: TaskRecord | None) -> str:
    if record is None:
        return _NO_RECORD
    if record.status is TaskStatus.FAILED:
        return f"failed earlier ({record.error})" if record.error else "failed earlier"
    if record.status is TaskStatus.SKIPPED:
        return f"was skipped earlier ({record.reason})" if record.reason else "was skipped"
    if record.status is TaskStatus.CANCELLED:
        return "was cancelled earlier"
    return f"was {record.status.value} when the earlier run stopped"


def plan(
    graph: TaskGraph,
    snapshot: Snapshot | None = None,
    *,
    targets: Iterable[str | TaskSpec[..., Any]] | None = None,
    rerun: Iterable[str | TaskSpec[..., Any]] = (),
    overrides: Mapping[Any, object] | None = None,
    step_keys: Mapping[str, str] | None = None,
    run_id: str | None = None,
    cache: ResultCache | None = None,
    rerun_changed: bool = False,
) -> Plan:
    """Plan a run of ``graph``, reusing what ``snapshot`` says succeeded.

    Args:
        graph: the validated graph.
        snapshot: an earlier run's snapshot (resume); ``None`` plans a fresh run.
        targets: run only these tasks and their upstream tasks (and detached tasks whose
            dependencies are all included); ``None`` runs the whole graph.
        rerun: run these tasks and everything downstream again even if they succeeded.
        overrides: name → value: reuse the value as if the task had succeeded.
        step_keys: name → current step key; a record made under another key is stale
            and runs again (journal and cache reuse).
        run_id: the run's id (default: a fresh random id).
        cache: a :class:`~flowplan.cache.ResultCache`: cache-eligible tasks (``cache=True`` or
            ``effect="pure"``) whose inputs are known now are looked up (a hit is reused, a
            miss says which key part changed); the others when their inputs are known. The
            run writes eligible tasks' results back.
        rerun_changed: run again (with everything downstream) the succeeded tasks whose
            recorded step key differs from the one their code gives now. Without it they are
            reused and listed in :attr:`Plan.code_changed`. Step keys are recorded by durable
            stores (the SQLite store, the journal); records without one are never compared,
            and with ``step_keys=`` a record under another key always runs again.

    An ``effect="at_most_once"`` task whose earlier record shows a started attempt with no
    outcome (RUNNING, FAILED as crashed/interrupted/timed out, or IN_DOUBT) is planned
    ``IN_DOUBT`` unless it is overridden or named in ``rerun`` (rerunning a task upstream of
    it leaves it in doubt).

    Returns:
        The :class:`Plan`.

    Raises:
        UnknownTaskError: a target, rerun or override names no task ("did you mean ...").
        UnfingerprintableInputError: with a strict cache, an input known at plan time has no
            stable fingerprint.
        InvalidOptionError: ``cache`` is not a :class:`~flowplan.cache.ResultCache`.
    """
    with gc_paused:  # many small objects, no task code; see flowplan._gc
        return _plan(
            graph,
            snapshot,
            targets=targets,
            rerun=rerun,
            overrides=overrides,
            step_keys=step_keys,
            run_id=run_id,
            cache=cache,
            rerun_changed=rerun_changed,
        )


def _plan(
    graph: TaskGraph,
    snapshot: Snapshot | None,
    *,
    targets: Iterable[str | TaskSpec[..., Any]] | None,
    rerun: Iterable[str | TaskSpec[..., Any]],
    overrides: Mapping[Any, object] | None,
    step_keys: Mapping[str, str] | None,
    run_id: str | None,
    cache: ResultCache | None,
    rerun_changed: bool = False,
) -> Plan:
    if not isinstance(rerun_changed, bool):
        raise InvalidOptionError(
            f"plan(rerun_changed=...) must be True or False, got {rerun_changed!r}",
            option="rerun_changed",
            value=rerun_changed,
        )
    target_names = None if targets is None else [_name(t) for t in targets]
    rerun_names = [_name(t) for t in rerun]
    override_values = {_name(t): v for t, v in (overrides or {}).items()}
    _check_names(graph, target_names or (), "target")
    _check_names(graph, rerun_names, "task to rerun")
    _check_names(graph, override_values, "task to override")
    records = snapshot.records if snapshot is not None else {}
    keys = step_keys or {}
    # Without explicit step keys, a success recorded under another key than the code gives
    # now is reported (and rerun on request); with them it simply runs again (_decide).
    changed = _code_changed(graph, records) if records and step_keys is None else {}
    if rerun_changed and changed:
        rerun_names = [*rerun_names, *(n for n in changed if n not in rerun_names)]
    reused: dict[str, TaskRecord] = {}
    in_doubt: dict[str, TaskRecord] = {}
    asked = set(rerun_names)
    rerun_closure = asked | graph.descendants(rerun_names) if rerun_names else set()
    fresh = not records and target_names is None and not rerun_names and not override_values
    if fresh:  # a fresh run of the whole graph: every task runs, for the same reason.
        actions = dict.fromkeys(graph.order, Action.RUN)
        reasons = dict.fromkeys(graph.order, _NO_RECORD)
    else:
        actions, reasons = _decide(
            graph,
            records,
            keys=keys,
            target_names=target_names,
            asked=asked,
            rerun_closure=rerun_closure,
            override_values=override_values,
            reused=reused,
            in_doubt=in_doubt,
        )

    for name, why in changed.items():
        if actions[name] is Action.REUSE:
            reasons[name] = (
                f"{reasons[name]}, but {why} since (step key differs; "
                "rerun_changed=True runs it again)"
            )
        elif rerun_changed and actions[name] is Action.RUN and name not in override_values:
            reasons[name] = f"{why} since it succeeded (rerun_changed=True)"

    # After the released values: a task recomputed for its consumers may be a cache hit.
    cache_plan = None
    if cache is not None:
        cache_plan = _apply_cache(
            graph,
            cache,
            actions,
            reasons,
            reused,
            in_doubt=in_doubt,
            rerun=rerun_closure,
            keys=keys,
        )

    if fresh and not reused:  # every task still runs (no cache hit)
        to_run = graph.order
    else:
        scheduled = (Action.RUN, Action.IN_DOUBT)  # an in-doubt task is settled in the run
        to_run = tuple(n for n in graph.order if actions[n] in scheduled)
    check_liveness(graph, to_run, reused)  # no task can wait forever (raises on a bug)
    new_id = run_id if run_id is not None else uuid.uuid4().hex
    elements = prior_elements(graph, records, reused, to_run, keys, rerun=rerun_closure)
    if elements:
        _note_elements(reasons, elements, "that succeeded earlier are reused")
    fan_out = graph.fan_out_tasks() if records else ()
    released = {  # fan-out tasks run again for a released value: their elements are judged
        n
        for n in fan_out
        if n in actions
        and actions[n] is Action.RUN
        and not recomputable(graph.specs[n])
        and (record := records.get(n)) is not None
        and record.status is TaskStatus.SUCCEEDED
        and record.released
        and not record.has_value
        and n not in rerun_closure
        and (n not in keys or record.step_key in (None, keys[n]))  # else its code changed
    }
    if doubtful := doubtful_elements(
        graph, records, to_run, rerun=rerun_closure, released=released
    ):
        _note_elements(reasons, doubtful, "are in doubt")
        in_doubt.update(doubtful)
    return Plan(
        graph=graph,
        run_id=new_id,
        decisions=_Decisions(actions, reasons),
        reused=MappingProxyType(reused),
        to_run=to_run,
        step_keys=MappingProxyType(dict(keys)),
        elements=MappingProxyType(elements),
        cache_plan=cache_plan,
        in_doubt=MappingProxyType(in_doubt),
        lineage_id=_lineage(snapshot, new_id),
        resumed_from=snapshot.run_id if snapshot is not None else None,
        code_changed=MappingProxyType(changed),
    )


def _code_changed(graph: TaskGraph, records: Mapping[str, TaskRecord]) -> dict[str, str]:
    """Each task whose earlier success carries another step key than its code gives now →
    why (its own code, or an upstream task's). The graph's step keys are computed (once per
    graph) only when some such record carries a key."""
    current: Mapping[str, str] | None = None
    changed: dict[str, str] = {}
    for name in graph.order:
        record = records.get(name)
        if (
            record is None
            or record.step_key is None
            or record.status is not TaskStatus.SUCCEEDED
            or record.overridden
        ):
            continue
        if current is None:
            try:
                current = graph.step_keys()
            except Exception:  # an exotic callable cannot be fingerprinted: nothing to compare
                return {}
        if record.step_key == current[name]:
            continue
        changed[name] = _what_changed(graph, records, name, current, record.step_key)
    return changed


def _what_changed(
    graph: TaskGraph,
    records: Mapping[str, TaskRecord],
    name: str,
    current: Mapping[str, str],
    recorded: str,
) -> str:
    """Why ``name``'s step key differs: its own code (or version), or an upstream task's key
    (when its key under the upstream keys recorded then is the one recorded)."""
    from flowplan.keys import step_key

    then: dict[str, str] = {}
    for dep in graph.predecessors[name]:
        dep_record = records.get(dep)
        if dep_record is None or dep_record.step_key is None:
            return "its code changed"
        then[dep] = dep_record.step_key
    spec = graph.specs[name]
    if then and step_key(spec.fn, dep_keys=then, version=spec.version) == recorded:
        upstream = next((dep for dep in sorted(then) if then[dep] != current[dep]), None)
        if upstream is not None:
            return f"upstream {upstream!r} changed"
    return "its version changed" if spec.version is not None else "its code changed"


def _decide(
    graph: TaskGraph,
    records: Mapping[str, TaskRecord],
    *,
    keys: Mapping[str, str],
    target_names: list[str] | None,
    asked: set[str],
    rerun_closure: set[str],
    override_values: dict[str, object],
    reused: dict[str, TaskRecord],
    in_doubt: dict[str, TaskRecord],
) -> tuple[dict[str, Action], dict[str, str]]:
    """Each task's action and reason, task by task (fills ``reused`` and ``in_doubt``).

    ``asked``: the tasks named in ``rerun=``; ``rerun_closure``: they and their descendants.
    """
    needed = _needed(graph, target_names)
    actions: dict[str, Action] = {}
    reasons: dict[str, str] = {}
    run, reuse = Action.RUN, Action.REUSE
    for name in graph.order:
        if needed is not None and name not in needed:
            actions[name] = Action.NOT_NEEDED
            reasons[name] = "not upstream of any target"
            continue
        record = records.get(name)
        if record is not None and type(record.value) is Unstructured:
            record = _restored(graph, record)  # a typed value as stored: rebuild its type
        key = keys.get(name)
        if name in override_values:
            reused[name] = TaskRecord(
                name,
                TaskStatus.SUCCEEDED,
                value=override_values[name],
                has_value=True,
                overridden=True,
                step_key=key,
            )
            actions[name] = reuse
            reasons[name] = "overridden with a supplied value"
        elif name in rerun_closure:
            # "it did not take effect" is only said by naming the task in rerun=
            doubt = None if name in asked else _doubt(graph.specs[name], record)
            if doubt is None:
                actions[name] = run
                reasons[name] = "rerun requested" if name in asked else "an upstream task is rerun"
            else:  # in doubt below a rerun task: still not run silently
                assert record is not None
                in_doubt[name] = record
                actions[name] = Action.IN_DOUBT
                reasons[name] = (
                    f"{doubt}; an upstream task is rerun, but only rerun=[{name!r}] runs it again"
                )
        elif record is not None and record.status is TaskStatus.SUCCEEDED:
            if key is not None and record.step_key is not None and record.step_key != key:
                actions[name] = run
                reasons[name] = "its code, version or an upstream step changed"
            else:
                source = "an earlier run"
                if record.cached:  # a result-cache hit has a reason; a journal replay has none
                    source = f"{source} ({record.reason})" if record.reason else "journal"
                reused[name] = record
                actions[name] = reuse
                reasons[name] = f"succeeded in {source}"
        elif (doubt := _doubt(graph.specs[name], record)) is not None:
            assert record is not None
            in_doubt[name] = record
            actions[name] = Action.IN_DOUBT
            reasons[name] = doubt
        else:
            actions[name] = run
            reasons[name] = _previous_reason(record)

    # A released value (retain_result=False) that is gone cannot feed a task that runs: a
    # pure task is recomputed; any other is in doubt like a lost outcome (see _effects).
    scheduled = (run, Action.IN_DOUBT)
    for name in reversed(graph.order):
        if actions[name] is reuse and reused[name].released and not reused[name].has_value:
            consumers = [s for s in graph.successors[name] if actions[s] in scheduled]
            if consumers:
                spec = graph.specs[name]
                record = reused.pop(name)
                reasons[name] = released_reason(spec, consumers[0])
                if recomputable(spec) or spec.fan_out is not None:  # elements: doubtful_elements
                    actions[name] = run
                else:
                    in_doubt[name] = record
                    actions[name] = Action.IN_DOUBT
    return actions, reasons


def _restored(graph: TaskGraph, record: TaskRecord) -> TaskRecord:
    """``record``'s stored typed value structured back to its task's declared type (or a
    FAILED record saying why it cannot be, so the task runs again)."""
    from flowplan.store._typed import record_type, restored_or_failed

    return restored_or_failed(record, record_type(graph, record.name))


def _doubt(spec: TaskSpec[..., Any], record: TaskRecord | None) -> str | None:
    """Why ``record`` leaves ``spec`` in doubt (see :func:`in_doubt_reason`), or ``None``; a
    fan-out task is never in doubt itself: its elements are judged instead."""
    return None if spec.fan_out is not None else in_doubt_reason(spec, record)


def _lineage(snapshot: Snapshot | None, new_id: str) -> str:
    """The lineage a plan continues: the snapshot's, or ``new_id`` for a fresh run.

    A journal replay (``JournalStore.load``: run id ``"journal"``) is no run of its own: it
    holds steps of any earlier run, so planning from it starts a new lineage (else every run
    replayed from a journal would share one lineage, hence one idempotency key per input).
    """
    if snapshot is None or (snapshot.run_id == "journal" and snapshot.lineage_id is None):
        return new_id
    return snapshot.lineage


def _apply_cache(
    graph: TaskGraph,
    cache: ResultCache,
    actions: dict[str, Action],
    reasons: dict[str, str],
    reused: dict[str, TaskRecord],
    *,
    in_doubt: dict[str, TaskRecord],
    rerun: set[str],
    keys: Mapping[str, str],
) -> CachePlan:
    """Look cache-eligible tasks up (see :func:`flowplan._cache_plan.plan_cache`): a hit turns
    a *run* decision into *reuse* — or an *in doubt* one whose only doubt is a released value
    that is gone (the cache holds it); a miss or a later lookup is added to the reason."""
    from flowplan._cache_plan import plan_cache  # lazily: cache → store → plan is a cycle
    from flowplan.cache import ResultCache

    given: object = cache  # typed as a ResultCache, but plan() is called with anything
    if not isinstance(given, ResultCache):
        path = repr(cache) if isinstance(cache, str) else "path"
        fix = f"flowplan.SqliteCache({path})"
        raise InvalidOptionError(
            "plan(cache=...) expects a ResultCache (strict, get, put, latest), got "
            f"{cache!r} ({type(cache).__name__}); pass {fix} or flowplan.MemoryCache()",
            option="cache",
            value=cache,
        )
    gone = {n for n, r in in_doubt.items() if r.released and r.status is TaskStatus.SUCCEEDED}
    to_run = [n for n, a in actions.items() if a is Action.RUN or n in gone]
    cache_plan, hits, why_run = plan_cache(
        graph, cache, run=to_run, reused=reused, rerun=rerun, step_keys=keys
    )
    for name, record in hits.items():
        in_doubt.pop(name, None)
        reused[name] = record
        actions[name] = Action.REUSE
        reasons[name] = record.reason or "cache hit"
    for name, why in why_run.items():
        reasons[name] = f"{reasons[name]}; {why}"
    return cache_plan


def _note_elements(reasons: dict[str, str], elements: Mapping[str, TaskRecord], what: str) -> None:
    """Say in a fan-out task's reason how many of its elements are reused (or in doubt)."""
    counts: dict[str, int] = {}
    for name in elements:
        parent = name.rpartition("[")[0]
        counts[parent] = counts.get(parent, 0) + 1
    for parent, count in counts.items():
        reasons[parent] = f"{reasons[parent]}; {count} element(s) {what}"
