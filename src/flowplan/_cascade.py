"""Skip and cancel propagation in a run: what a task that did not succeed does to the rest.

Place in the data flow: plan → **interpreter** (the scheduling machine ``_machine._Run`` calls
these when a task ends without succeeding, when a fail-fast stop or an interrupt cancels what
has not started, and when a triggered task has no dependency left) → snapshot. Every pending
task below a failure or skip is recorded SKIPPED, below a cancellation CANCELLED, with the root
cause; a task with a trigger rule or an optional dependency (``_triggers``) is decided once all
its dependencies have ended instead; a task planned IN_DOUBT (``_effects``) stays in doubt.
Functions of the run (private, mutable, single-threaded like ``_Run``), iterative (no recursion
limit on deep chains).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowplan._triggers import decide
from flowplan.events import TaskCancelled, TaskInDoubt, TaskSkipped
from flowplan.graph import TaskGraph
from flowplan.snapshot import TaskStatus
from flowplan.transitions import advance

if TYPE_CHECKING:
    from flowplan._machine import _Run

__all__ = [
    "cancel_pending",
    "gated",
    "keep_doubt",
    "record_terminal",
    "skip_downstream",
    "survivors_of",
    "trigger",
]

_SKIPPED = TaskStatus.SKIPPED.value
_CANCELLED = TaskStatus.CANCELLED.value


def survivors_of(graph: TaskGraph, triggered: frozenset[str]) -> frozenset[str]:
    """The ``all_done`` tasks among ``triggered``: cleanup that outlives a fail-fast stop.

    Args:
        graph: The run's graph.
        triggered: Its tasks with a trigger rule or an optional dependency.

    Returns:
        The names whose trigger rule is ``all_done``.
    """
    specs = graph.specs
    return frozenset(n for n in triggered if specs[n].trigger == "all_done")


def skip_downstream(
    run: _Run, name: str, root: str, verb: str, *, evaluate: bool = True
) -> list[str]:
    """Skip every pending task below ``name``; below a cancelled task, cancel them.

    A task in ``at_zero`` — one with a trigger rule (``_triggers``), or one a ``when=``
    gate's skip reached — is not skipped outright: it counts the dependency as ended, and
    once all have ended its rule decides (deterministically, a failure named before a
    gate): it may become ready (returned) or be skipped with the rule's reason and root
    cause. Below a cancellation (a fail-fast stop) only ``all_done`` tasks are decided so;
    the rest are cancelled. With ``evaluate`` off or after an interrupt, no rule is
    consulted.

    Args:
        run: The run's scheduling machine.
        name: The task that ended without succeeding.
        root: The cascade's root cause.
        verb: How ``name`` ended (a status value: ``"failed"``, ``"skipped"``, ...).
        evaluate: Whether trigger rules may still decide the tasks below.

    Returns:
        The tasks that became ready (triggered tasks whose rule lets them run).
    """
    evaluate = evaluate and run.fatal is None
    at_zero = run.at_zero if evaluate else set()
    records = run.records
    graph = run.graph
    ready: list[str] = []
    stack = [(name, verb, root, verb == _CANCELLED)]
    while stack:
        upstream, how, cause, cancel = stack.pop()
        skipped_root = evaluate and not cancel and gated(run, cause)
        # below a cancellation (the run stopped) only cleanup is still decided
        deciding = run.survivors if cancel else at_zero
        for succ in graph.successors[upstream]:
            if succ in run.run_set and succ not in records:
                if skipped_root:  # decide once every dependency has ended: a failure may come
                    at_zero.add(succ)
                if deciding and succ in deciding and evaluate:
                    left = run.waiting[succ] - 1
                    run.waiting[succ] = left
                    if left == 0:
                        verdict = decide(graph, succ, run.view)
                        if verdict is None:
                            ready.append(succ)
                        else:
                            reason, why = verdict
                            skip = TaskSkipped(run.run_id, run.clock(), succ, reason, why)
                            record_terminal(run, succ, skip)
                            stack.append((succ, "was skipped", why, False))
                    continue
                reason = f"upstream {upstream!r} {how}"
                event: TaskSkipped | TaskCancelled
                if cancel:  # it never started because the run stopped: not a skip
                    event = TaskCancelled(run.run_id, run.clock(), succ, reason, cause)
                else:
                    event = TaskSkipped(run.run_id, run.clock(), succ, reason, cause)
                record_terminal(run, succ, event)
                below = "was cancelled" if cancel else "was skipped"
                stack.append((succ, below, cause, cancel))
    return ready


def gated(run: _Run, root: str) -> bool:
    """Whether ``root`` (a cascade's root cause) is a skip, not a failure.

    Args:
        run: The run's scheduling machine.
        root: The cascade's root cause.

    Returns:
        True when ``root``'s record is SKIPPED.
    """
    record = run.record(root)
    return record is not None and record.status is TaskStatus.SKIPPED


def trigger(run: _Run, name: str) -> list[str]:
    """``name`` (a triggered task) has no dependency left to wait for: apply its rule.

    Args:
        run: The run's scheduling machine.
        name: The triggered task.

    Returns:
        ``[name]`` when the rule lets it run; else it is skipped (and what is below it) and
        the tasks that became ready meanwhile are returned.
    """
    verdict = decide(run.graph, name, run.view)
    if verdict is None:
        return [name]
    reason, root = verdict
    record_terminal(run, name, TaskSkipped(run.run_id, run.clock(), name, reason, root))
    return skip_downstream(run, name, root, _SKIPPED)


def keep_doubt(run: _Run, event: TaskSkipped | TaskCancelled) -> TaskInDoubt | None:
    """A skip or cancellation of a task planned IN_DOUBT leaves it in doubt.

    Its earlier attempt may have taken effect and nothing settled it in this run, so its
    record must stay IN_DOUBT (a SKIPPED or CANCELLED record would let the next resume run
    it again silently).

    Args:
        run: The run's scheduling machine.
        event: The skip or cancellation about to be recorded.

    Returns:
        The event to record instead, or None when the task was not planned in doubt.
    """
    earlier = run.plan.in_doubt.get(event.task)
    if earlier is None:
        return None
    why = run.doubt_reason(event.task)  # an in-doubt element has no decision of its own
    reason = f"{why}; not settled in this run ({event.reason})"
    return TaskInDoubt(run.run_id, event.time, event.task, earlier.attempts, reason)


def record_terminal(run: _Run, name: str, skip: TaskSkipped | TaskCancelled) -> None:
    """Record a task that never started as skipped or cancelled (or kept in doubt).

    Args:
        run: The run's scheduling machine.
        name: The task.
        skip: Its skip or cancellation.
    """
    doubt = keep_doubt(run, skip) if run.plan.in_doubt else None
    event = skip if doubt is None else doubt
    record = advance(run.record(name), event)
    run.records[name] = record
    if run.store is not None:
        run.store.save_record(run.run_id, record)
    if run.dispatch:
        run.dispatch(event)
    run.unfinished -= 1
    if name not in run.graph.detached:
        run.main_left -= 1


def cancel_pending(run: _Run, root: str, reason: str, *, everything: bool = False) -> list[str]:
    """Cancel tasks that have not started (main ones; with ``everything``, detached too).

    Tasks already handed to a worker are left alone: they cancel themselves on start
    (``_Run.should_cancel``), or finish if they were already running. Without
    ``everything`` (a fail-fast stop), ``all_done`` tasks are left alone too: cleanup still
    runs once its dependencies have ended.

    Args:
        run: The run's scheduling machine.
        root: The stop's root cause.
        reason: Why the tasks are cancelled.
        everything: An interrupt: cancel detached and ``all_done`` tasks too.

    Returns:
        The tasks that became ready (cleanup tasks whose last dependency was just cancelled).
    """
    detached = run.graph.detached
    survivors = () if everything else run.survivors
    ready: list[str] = []
    held = set(run.held)
    chain_prev = run.chain_prev
    handed: set[str] = set()  # given to a worker, directly or behind its chain predecessor
    for name in run.plan.to_run:  # topological: a chain predecessor comes first
        if name in run.records:
            continue
        if chain_prev and chain_prev.get(name) in handed:
            handed.add(name)
            continue
        if name in detached and not everything:
            continue
        if run.waiting[name] == 0 and name not in held:
            handed.add(name)
            continue
        if survivors and name in survivors:
            continue
        event = TaskCancelled(run.run_id, run.clock(), name, reason, root)
        record_terminal(run, name, event)
        # the (detached) tasks below it can never run now; without this the run never ends
        ready.extend(skip_downstream(run, name, root, _CANCELLED))
    if everything:
        run.held = []
    return ready
