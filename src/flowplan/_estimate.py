"""Estimates: how long a plan will take, what bounds it, and how wide it runs.

Place in the data flow: beside the **plan** (``Plan.estimate``). Durations come from past runs
(snapshots, or a store's history: the median of each task's past successes) or are given; tasks
the plan reuses or does not need cost nothing. Without a worker limit the estimate is the
longest path through the tasks that run (the critical path); with ``max_workers`` the tasks are
scheduled on a fake clock as the interpreter's ready queue would run them, ``max_workers`` at a
time, in ready order. Pure arithmetic over the graph: nothing runs and nothing is imported.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import attrs

from flowplan.errors import InvalidOptionError, StoreError
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus

if TYPE_CHECKING:
    from flowplan.plan import Plan

__all__ = [
    "DEFAULT_DURATION_S",
    "DurationSource",
    "Estimate",
    "RunHistory",
    "estimate_plan",
    "format_seconds",
    "past_durations",
    "store_history",
]

DEFAULT_DURATION_S = 1.0
"""The duration assumed for a task no source knows, when no other task is known either."""

DurationSource: TypeAlias = Mapping[str, float] | Snapshot | Iterable[Snapshot]
"""Where durations come from: task name → seconds, one past run, or several (median)."""


class RunHistory(Protocol):
    """A store whose past runs can be listed and loaded (``SqliteStateStore``)."""

    def list_runs(self, dag_name: str | None = None) -> Any:  # a list of RunInfo
        """The store's runs, newest first."""

    def load(self, run_id: str) -> Snapshot:
        """One run's snapshot."""


@attrs.frozen
class Estimate:
    """How long a plan is expected to take, and why.

    Attributes:
        makespan_s: seconds from the run's start to the end of its last task.
        critical_path: the chain of tasks that bounds the run, in order (empty when nothing
            runs); with ``max_workers``, the chain of waits that ends with the last task,
            which may include waits for a free worker.
        width: the most tasks the estimated schedule runs at once (tasks of no duration
            occupy no time); without ``max_workers``, more workers than this would not
            shorten the run.
        start_s: each scheduled task's expected start, in seconds from the run's start.
        finish_s: each scheduled task's expected finish, in seconds from the run's start.
        durations_s: the duration used for each scheduled task.
        assumed: the scheduled tasks no source knew; each was given ``default_s``.
        default_s: the duration assumed for unknown tasks (the median of the known tasks'
            durations, else 1 s, unless given).
        max_workers: the worker limit scheduled for, or ``None`` for unlimited.
    """

    makespan_s: float
    critical_path: tuple[str, ...]
    width: int
    start_s: Mapping[str, float] = attrs.field(hash=False, repr=False)
    finish_s: Mapping[str, float] = attrs.field(hash=False, repr=False)
    durations_s: Mapping[str, float] = attrs.field(hash=False, repr=False)
    assumed: frozenset[str] = attrs.field(repr=False)
    default_s: float = attrs.field(repr=False)
    max_workers: int | None = None

    def describe(self) -> str:
        """The estimate in one line, e.g. ``about 4 min 10 s; critical path: extract → load``.

        >>> Estimate(250.0, ("extract", "load"), 1, {}, {}, {}, frozenset(), 1.0).describe()
        'about 4 min 10 s; critical path: extract → load'
        """
        path = " → ".join(self.critical_path) if self.critical_path else "(nothing runs)"
        text = f"about {format_seconds(self.makespan_s)}; critical path: {path}"
        if self.assumed:
            text += (
                f" ({len(self.assumed)} task(s) never seen before counted as "
                f"{format_seconds(self.default_s)} each)"
            )
        return text


def format_seconds(seconds: float) -> str:
    """A duration in words: ``250 ms``, ``12.5 s``, ``4 min 10 s``, ``2 h 5 min``.

    >>> format_seconds(0.25), format_seconds(12.5), format_seconds(250), format_seconds(7500)
    ('250 ms', '12.5 s', '4 min 10 s', '2 h 5 min')
    """
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _seconds_of(record: TaskRecord) -> float | None:
    """How long a succeeded task took (first start to success, retries included), or ``None``
    when the record is no run of it (reused, cached, overridden, or not a success)."""
    if record.status is not TaskStatus.SUCCEEDED or record.cached or record.overridden:
        return None
    if record.started_at is not None and record.finished_at is not None:
        return max(0.0, record.finished_at - record.started_at)
    return record.duration_ms / 1000


def past_durations(snapshots: Iterable[Snapshot]) -> dict[str, float]:
    """Each task's median duration over its successes in ``snapshots`` (seconds).

    >>> done = TaskRecord("a", TaskStatus.SUCCEEDED, started_at=10.0, finished_at=12.0)
    >>> past_durations([Snapshot("r1", {"a": done})])
    {'a': 2.0}
    """
    seen: dict[str, list[float]] = {}
    for snapshot in snapshots:
        for name, record in snapshot.records.items():
            seconds = _seconds_of(record)
            if seconds is not None:
                seen.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in seen.items()}


def store_history(
    store: RunHistory, *, dag_name: str | None = None, last: int = 20
) -> tuple[Snapshot, ...]:
    """The snapshots of the ``last`` newest runs in ``store`` (of ``dag_name`` when given);
    runs that cannot be loaded are left out."""
    if last < 1:
        raise InvalidOptionError(
            f"last must be at least 1, got {last!r}", option="last", value=last
        )
    snapshots: list[Snapshot] = []
    for info in list(store.list_runs(dag_name))[:last]:
        try:
            snapshots.append(store.load(info.run_id))
        except StoreError:  # one damaged run costs only itself
            continue
    return tuple(snapshots)


def _durations(source: DurationSource) -> dict[str, float]:
    if isinstance(source, Snapshot):
        return past_durations([source])
    if isinstance(source, Mapping):
        known: dict[str, float] = {}
        for name, seconds in source.items():
            value: object = seconds
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidOptionError(
                    f"task {name!r}: a duration must be a finite number of seconds >= 0, got "
                    f"{value!r} ({type(value).__name__})",
                    option="durations",
                    value=value,
                    task=str(name),
                )
            known[str(name)] = float(value)
        return known
    snapshots = list(source)
    for item in snapshots:
        if not isinstance(item, Snapshot):
            raise InvalidOptionError(
                "durations must be a mapping of task name → seconds, a Snapshot or snapshots, "
                f"got an iterable holding {item!r} ({type(item).__name__})",
                option="durations",
                value=item,
            )
    return past_durations(snapshots)


def estimate_plan(
    plan: Plan,
    source: DurationSource,
    *,
    max_workers: int | None = None,
    default_s: float | None = None,
) -> Estimate:
    """Estimate ``plan``'s run from ``source``'s durations; see :meth:`Plan.estimate`."""
    workers: object = max_workers
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise InvalidOptionError(
            f"max_workers must be a positive int or None, got {max_workers!r}",
            option="max_workers",
            value=max_workers,
        )
    known = _durations(source)
    graph = plan.graph
    scheduled = plan.to_run
    if default_s is None:
        relevant = [known[n] for n in graph.order if n in known]
        default_s = statistics.median(relevant) if relevant else DEFAULT_DURATION_S
    durations = {name: known.get(name, default_s) for name in scheduled}
    assumed = frozenset(name for name in scheduled if name not in known)
    if max_workers is None:
        start, finish, via = _unlimited(plan, durations)
    else:
        start, finish, via = _limited(plan, durations, max_workers)
    makespan = max(finish.values(), default=0.0)
    return Estimate(
        makespan_s=makespan,
        critical_path=_path(finish, via, scheduled),
        width=_width(start, finish),
        start_s=MappingProxyType(start),
        finish_s=MappingProxyType(finish),
        durations_s=MappingProxyType(durations),
        assumed=assumed,
        default_s=default_s,
        max_workers=max_workers,
    )


_Schedule: TypeAlias = tuple[dict[str, float], dict[str, float], dict[str, str | None]]


def _unlimited(plan: Plan, durations: Mapping[str, float]) -> _Schedule:
    """As soon as possible: each task starts when its last scheduled dependency ends; detached
    tasks wait for the main tasks (they run after the main DAG)."""
    graph = plan.graph
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    main_end, main_last = 0.0, None
    for name in plan.to_run:  # topological order, main tasks before the detached ones below
        if name in graph.detached:
            continue
        begin, before = 0.0, None
        for dep in graph.predecessors[name]:
            end = finish.get(dep)
            if end is not None and (before is None or end > begin):
                begin, before = end, dep
        start[name], via[name] = begin, before
        finish[name] = begin + durations[name]
        if finish[name] >= main_end:
            main_end, main_last = finish[name], name
    for name in plan.to_run:
        if name not in graph.detached:
            continue
        begin, before = main_end, main_last
        for dep in graph.predecessors[name]:
            end = finish.get(dep)
            if end is not None and end > begin:
                begin, before = end, dep
        start[name], via[name] = begin, before
        finish[name] = begin + durations[name]
    return start, finish, via


def _limited(plan: Plan, durations: Mapping[str, float], workers: int) -> _Schedule:
    """A fake-clock run with ``workers`` workers: ready tasks start in ready order (ties in
    graph order) whenever a worker is free, as the interpreter's ready queue runs them."""
    graph = plan.graph
    scheduled = set(plan.to_run)
    position = {name: i for i, name in enumerate(plan.to_run)}
    waiting = {
        name: sum(1 for dep in graph.predecessors[name] if dep in scheduled) for name in plan.to_run
    }
    detached = [name for name in plan.to_run if name in graph.detached]
    main_left = len(plan.to_run) - len(detached)
    ready: list[tuple[float, int, str]] = [
        (0.0, position[n], n) for n in plan.to_run if waiting[n] == 0 and n not in graph.detached
    ]
    heapq.heapify(ready)
    held: list[str] = [n for n in detached if waiting[n] == 0]  # released when the main DAG ends
    running: list[tuple[float, int, str]] = []  # (finish, position, name)
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    became_ready: dict[str, str | None] = dict.fromkeys(plan.to_run)
    freed_by: str | None = None
    now = 0.0
    while ready or running or held:
        while ready and len(running) < workers:
            ready_at, _, name = heapq.heappop(ready)
            begin = max(now, ready_at)
            start[name] = begin
            # the wait that ended last: the dependency, or the task whose end freed a worker
            via[name] = became_ready[name] if ready_at >= now or freed_by is None else freed_by
            finish[name] = begin + durations[name]
            heapq.heappush(running, (finish[name], position[name], name))
        if not running:
            if held:  # the main DAG is done: detached tasks become ready
                for name in held:
                    heapq.heappush(ready, (now, position[name], name))
                held = []
                continue
            break
        now, _, done = heapq.heappop(running)
        freed_by = done
        if done not in graph.detached:
            main_left -= 1
        for nxt in graph.successors[done]:
            if nxt not in scheduled:
                continue
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                became_ready[nxt] = done
                if nxt in graph.detached and main_left > 0:
                    held.append(nxt)
                else:
                    heapq.heappush(ready, (now, position[nxt], nxt))
        if main_left == 0 and held:
            for name in held:
                heapq.heappush(ready, (now, position[name], name))
            held = []
    return start, finish, via


def _path(
    finish: Mapping[str, float], via: Mapping[str, str | None], order: tuple[str, ...]
) -> tuple[str, ...]:
    """The chain of waits ending with the task that finishes last (ties: the first in graph
    order)."""
    if not finish:
        return ()
    last = order[0]
    for name in order:  # the latest finish; the first in graph order on a tie
        if finish[name] > finish[last]:
            last = name
    chain = [last]
    seen = {last}
    step = via[last]
    while step is not None and step not in seen:
        chain.append(step)
        seen.add(step)
        step = via[step]
    chain.reverse()
    return tuple(chain)


def _width(start: Mapping[str, float], finish: Mapping[str, float]) -> int:
    """The most tasks running at one instant (an end and a start at the same instant do not
    overlap); tasks of no duration occupy no time, but a schedule with tasks is at least 1
    wide."""
    points: list[tuple[float, int]] = []
    for name, begin in start.items():
        if finish[name] > begin:
            points.append((begin, 1))
            points.append((finish[name], -1))
    points.sort()  # at one instant, ends (-1) before starts (+1)
    width = running = 0
    for _, delta in points:
        running += delta
        width = max(width, running)
    return max(width, 1 if start else 0)
