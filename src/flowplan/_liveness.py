"""The planner's liveness proof: no task of a plan can wait forever.

Place in the data flow: graph → **plan** (``plan()`` calls :func:`check_liveness` on what it
decided) → interpreter. The interpreter starts a task once each dependency in the run has
ended (and, for a trigger rule, asks the rule then); a dependency outside the run is read
from its reused record. So a run ends with every task terminal when, for every scheduled
task, each dependency is either scheduled in the same run or reused as a success whose value
is still held, and a main task never waits on a detached one (those run after the main DAG).
Scheduled tasks always end: each one either runs to a terminal record, is skipped or
cancelled when a dependency ends otherwise, or is decided by its trigger rule once every
dependency has ended. A violation is a planner bug and raises :class:`LivenessError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flowplan.errors import LivenessError
from flowplan.graph import TaskGraph
from flowplan.snapshot import TaskRecord, TaskStatus

__all__ = ["check_liveness"]


def check_liveness(
    graph: TaskGraph, to_run: Iterable[str], reused: Mapping[str, TaskRecord]
) -> None:
    """Prove that every task in ``to_run`` can start once what it waits on has ended.

    O(tasks + edges), and O(1) when every task of the graph is scheduled (nothing to prove:
    each dependency is in the run, and the graph already refuses main → detached edges).

    Args:
        graph: the planned graph.
        to_run: the scheduled task names.
        reused: the records carried into the run.

    Raises:
        LivenessError: naming the task, the dependency it would wait on forever, and why.
    """
    scheduled = to_run if isinstance(to_run, frozenset | set) else frozenset(to_run)
    if len(scheduled) == len(graph.order):
        return
    detached = graph.detached
    for name in graph.order:
        if name not in scheduled:
            continue
        for dep in graph.predecessors[name]:
            if dep in scheduled:
                if dep in detached and name not in detached:
                    why = "it is detached and runs only after the main DAG, which it blocks"
                    _fail(name, dep, why)
                continue
            record = reused.get(dep)
            if record is None:
                _fail(name, dep, "it is neither scheduled nor reused, so it never ends")
            elif record.status is not TaskStatus.SUCCEEDED:
                _fail(name, dep, f"its reused record is {record.status.value}, not succeeded")
            elif record.released:
                _fail(name, dep, "its reused value was released (retain_result=False)")


def _fail(task: str, dependency: str, why: str) -> None:
    raise LivenessError(
        f"plan bug: task {task!r} would wait forever on {dependency!r}: {why}; please report "
        "it — as a workaround, plan without targets/overrides or rerun the dependency",
        task=task,
        dependency=dependency,
    )
