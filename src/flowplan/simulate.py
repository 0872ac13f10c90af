"""Simulation: a plan's control flow on a fake clock, with scripted outcomes instead of bodies.

Place in the data flow: a third driver of the interpreter's scheduling machine, beside
:func:`~flowplan.interpreter.execute` and :func:`~flowplan.interpreter.aexecute`. Each task's
:func:`~flowplan._program.task_program` runs as in a real run — gates, retries and backoff,
skips, fail-fast, detached tasks, resume — but every ``Call`` is answered from the script
(:class:`Value`, :class:`Fail`, :class:`Timeout`) and every backoff ``Sleep`` advances a
:class:`FakeClock`. Task bodies never run; gates (``when``, ``validate``) and ``retry_until``
are user code and *are* called, on the scripted values: keep them cheap, pure predicates.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from flowplan._fanout import origin, split_element
from flowplan._machine import _Run
from flowplan._program import Outcome, Raised, Returned, TimedOut, run_program
from flowplan._suggest import did_you_mean
from flowplan.errors import InvalidOptionError, UnknownTaskError
from flowplan.events import Event, RunFinished, TaskEvent
from flowplan.plan import Plan
from flowplan.policies import RetryBudget
from flowplan.snapshot import Snapshot
from flowplan.spec import TaskSpec

__all__ = ["Fail", "FakeClock", "Script", "Simulation", "Step", "Timeout", "Value", "simulate"]


class FakeClock:
    """A clock that only moves when told to: ``clock()`` reads it, :meth:`advance` moves it.

    >>> clock = FakeClock(100.0)
    >>> clock.advance(2.5)
    >>> clock()
    102.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now: float = float(start)

    def __call__(self) -> float:
        """The current time, in seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        self.now += seconds


def _check_duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidOptionError(
            f"duration_s must be a number of seconds >= 0, got {value!r}",
            option="duration_s",
            value=value,
        )
    return float(value)


@attrs.frozen
class Step:
    """A scripted outcome of one attempt: :class:`Value`, :class:`Fail` or :class:`Timeout`."""


@attrs.frozen
class Value(Step):
    """Scripted outcome: the attempt returns ``value`` after ``duration_s`` fake seconds."""

    value: Any = None
    duration_s: float = attrs.field(default=0.0, converter=_check_duration)


def _exception(value: object) -> BaseException:
    if isinstance(value, type) and issubclass(value, BaseException):
        return value()
    if isinstance(value, BaseException):
        return value
    raise InvalidOptionError(
        f"Fail() takes an exception or an exception class, got {value!r} "
        f"({type(value).__name__}); e.g. Fail(ConnectionError('down'))",
        option="error",
        value=value,
    )


@attrs.frozen
class Fail(Step):
    """Scripted outcome: the attempt raises ``error`` (an instance, or a class called with no
    arguments) after ``duration_s`` fake seconds."""

    error: BaseException = attrs.field(converter=_exception)
    duration_s: float = attrs.field(default=0.0, converter=_check_duration)


@attrs.frozen
class Timeout(Step):
    """Scripted outcome: the attempt exceeds the task's ``timeout_s`` (the clock advances by
    that much). Only for tasks that have a timeout."""


Steps: TypeAlias = Step | Sequence[Step]
Script: TypeAlias = Mapping[Any, Steps]
"""Per task (a :class:`~flowplan.spec.TaskSpec` or a task name: checked when simulating): one
outcome for every attempt, or a sequence of outcomes, one per
attempt (the last one repeats when the task makes more attempts than the sequence has)."""


@attrs.frozen
class Simulation:
    """What a simulation produced: the snapshot a real run would end with, and its events."""

    snapshot: Snapshot
    events: tuple[Event, ...]


def _steps(plan: Plan, script: Script) -> dict[str, tuple[Step, ...]]:
    """Check the script against the plan's graph; return each task's outcomes."""
    specs = plan.graph.specs
    steps: dict[str, tuple[Step, ...]] = {}
    for key, given in script.items():
        outcome: object = given
        name: object = key.name if isinstance(key, TaskSpec) else key
        task = _scripted_task(plan, name)
        if not isinstance(name, str) or task is None:
            hint, best = did_you_mean(str(name), specs)
            raise UnknownTaskError(
                f"the script names {name!r}, which is not a task of this plan; {hint}",
                name=str(name),
                known=tuple(specs),
                suggestion=best,
            )
        items: tuple[object, ...]
        if isinstance(outcome, Step):
            items = (outcome,)
        elif isinstance(outcome, Sequence) and not isinstance(outcome, str | bytes):
            items = tuple(outcome)
        else:
            items = (outcome,)  # reported as not an outcome below
        for item in items:
            if not isinstance(item, Value | Fail | Timeout):  # a bare Step() is not one
                raise InvalidOptionError(
                    f"task {name!r}: a script entry must be Value(...), Fail(...), Timeout() "
                    f"or a list of them, got {item!r} ({type(item).__name__})",
                    option="script",
                    value=item,
                    task=name,
                )
            if isinstance(item, Timeout) and specs[task].timeout_s is None:
                raise InvalidOptionError(
                    f"task {name!r} has no timeout_s, so Timeout() cannot happen; give the "
                    "task a timeout_s or script Fail(TimeoutError()) for its own timeout",
                    option="script",
                    value=item,
                    task=name,
                )
        if not items:
            raise InvalidOptionError(
                f"task {name!r}: the script's sequence is empty; give at least one outcome",
                option="script",
                value=outcome,
                task=name,
            )
        steps[name] = items  # type: ignore[assignment]  # each item was checked above
    return steps


def _scripted_task(plan: Plan, name: object) -> str | None:
    """The task a script key names: a task, or for an element (``process[2]``) of a fan-out
    task, that task; ``None`` for anything else."""
    specs = plan.graph.specs
    if not isinstance(name, str):
        return None
    if name in specs:
        return name
    element = split_element(name)  # no "p[01]" or "p[1]]"
    if element is not None and element[0] in plan.graph.fan_out_tasks():
        return element[0]
    return None


def _answer(step: Step, spec: TaskSpec[..., Any], clock: FakeClock) -> Outcome:
    """The outcome of a scripted attempt; the clock advances by its duration."""
    if not isinstance(step, Value | Fail):
        seconds = spec.timeout_s or 0.0
        clock.advance(seconds)
        return TimedOut(seconds * 1000)
    clock.advance(step.duration_s)
    if isinstance(step, Value):
        return Returned(step.value, step.duration_s * 1000)
    return Raised(step.error, step.duration_s * 1000)


def simulate(
    plan: Plan,
    script: Script | None = None,
    *,
    clock: FakeClock | None = None,
    seed: object = None,
    fail_fast: bool = True,
    context: object = None,
    retry_budget: RetryBudget | None = None,
) -> Simulation:
    """Run ``plan``'s control flow with scripted outcomes, on a fake clock, without bodies.

    The simulation is sequential, like a run on an
    :class:`~flowplan.executors.InlineExecutor`: tasks run one at a time in ready order, and
    event times are the fake clock's (attempt durations and backoff delays advance it; nothing
    sleeps). Two simulations of the same plan with the same script and seed give equal event
    lists.

    Args:
        plan: what to run (from :func:`~flowplan.plan.plan`, maybe on an earlier snapshot:
            reused tasks stay reused, as on resume). A plan made with ``cache=`` is looked up
            as in a run, but scripted values are never written to the cache.
        script: per task (spec or name), a :class:`Value`, :class:`Fail` or :class:`Timeout`
            for every attempt, or a sequence of them, one per attempt (the last repeats). A task
            not in the script returns ``Value(None)``. An element of a fan-out task is named
            ``"task[2]"``; the fan-out task's own entry is the default of its elements.
        clock: the fake clock (default: ``FakeClock(0.0)``); it is left at the run's end time.
        seed: seeds the backoff jitter (default: the plan's run id, as in a real run).
        fail_fast: as in :func:`~flowplan.interpreter.execute`.
        context: the object a task's context parameter would receive (not used: bodies never
            run; accepted so calls mirror ``execute``).
        retry_budget: a run-wide retry cap, as in :func:`~flowplan.interpreter.execute`.

    Returns:
        A :class:`Simulation`: the final snapshot and every event, in order.

    Raises:
        UnknownTaskError: the script names a task the plan's graph does not have (with a
            "did you mean").
        InvalidOptionError: a script entry is not an outcome, or ``Timeout()`` for a task
            without ``timeout_s``.

    >>> from flowplan import Registry, TaskGraph, plan as make_plan, task
    >>> reg = Registry()
    >>> @task(registry=reg, retry=2, retry_backoff_base_ms=500)
    ... def fetch() -> int:
    ...     raise AssertionError("never runs in a simulation")
    >>> sim = simulate(make_plan(TaskGraph.build([fetch])),
    ...                {fetch: [Fail(ConnectionError), Value(42)]})
    >>> sim.snapshot[fetch].attempts, sim.snapshot.value(fetch), sim.snapshot[fetch].retry_delays
    (2, 42, (0.5,))
    """
    steps = _steps(plan, script or {})
    fake = clock if clock is not None else FakeClock()
    if not isinstance(fake, FakeClock):
        raise InvalidOptionError(
            f"clock must be a FakeClock, got {fake!r} ({type(fake).__name__})",
            option="clock",
            value=fake,
        )
    events: list[Event] = []
    started_at = fake()

    class _Recorder:
        def on_event(self, event: Event) -> None:
            if isinstance(event, RunFinished):  # its duration is wall time: use the fake one
                event = attrs.evolve(event, duration_ms=(fake() - started_at) * 1000)
            events.append(event)

    run = _Run(
        plan,
        fail_fast=fail_fast,
        hooks=[_Recorder()],
        store=None,
        context=context,
        clock=fake,
        retry_budget=retry_budget,
    )
    if seed is not None:
        run.seed = str(seed)
    if run.caching is not None:  # look results up as a run would, never store scripted ones
        run.caching.read_only = True
    _drive(run, steps, fake)
    snapshot = run.finish()
    return Simulation(snapshot, tuple(events))


def _drive(run: _Run, steps: Mapping[str, tuple[Step, ...]], clock: FakeClock) -> None:
    """The simulation's driver: the inline driver's loop, with scripted attempts."""
    pending: collections.deque[TaskEvent] = collections.deque()
    ready = collections.deque(run.start())
    while run.unfinished > 0:
        if pending:
            ready.extend(run.apply(pending.popleft()))
        elif ready:
            _job(run, ready.popleft(), steps, clock, pending.append)
        else:  # pragma: no cover - a scheduling bug must not pass as a hang
            raise RuntimeError(f"flowplan bug: {run.unfinished} task(s) can never become ready")


def _job(
    run: _Run,
    name: str,
    steps: Mapping[str, tuple[Step, ...]],
    clock: FakeClock,
    emit: Callable[[TaskEvent], None],
) -> None:
    """Drive one task's program, answering its calls from the script."""
    cancelled = run.should_cancel(name)
    if cancelled is not None:
        emit(cancelled)
        return
    program, _ = run.program(name)
    spec = run.graph.specs[name]
    script = steps.get(name) or steps.get(origin(run, name), (Value(None),))
    run_program(
        program,
        answer=lambda request: _answer(script[min(request.attempt, len(script)) - 1], spec, clock),
        sleep=clock.advance,
        emit=emit,
    )
