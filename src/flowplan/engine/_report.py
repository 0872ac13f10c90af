"""Run reports in flowrun's shape, and the DAG tree ``display_dag`` prints.

Place in the data flow: façade (flowrun's API over plan → aexecute → **store**). A report is
read back from the store — :class:`~flowplan.store.RunInfo` plus the run's
:class:`~flowplan.snapshot.Snapshot` — never from live engine state, so reports of runs made by
another process (SQLite) look the same.

Status words are flowrun's: tasks are ``PENDING``, ``RUNNING``, ``SUCCESS``, ``FAILED`` or
``SKIPPED`` (flowplan's CANCELLED — a task that never started because the run stopped — is
reported as ``SKIPPED``). The run is ``FAILED`` if any task failed or was skipped because of a
failure, ``SUCCESS`` if every task succeeded, ``RUNNING`` otherwise. Two flowplan additions
refine that: a task skipped by its own ``when=`` gate (and tasks skipped below it) count as
done, not failed; detached tasks never fail the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowplan.graph import TaskGraph
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus
from flowplan.store import RunInfo

__all__ = ["STATUS_WORDS", "build_report", "render_tree", "run_status"]

STATUS_WORDS: Mapping[TaskStatus, str] = {
    TaskStatus.PENDING: "PENDING",
    TaskStatus.RUNNING: "RUNNING",
    TaskStatus.SUCCEEDED: "SUCCESS",
    TaskStatus.FAILED: "FAILED",
    TaskStatus.SKIPPED: "SKIPPED",
    TaskStatus.CANCELLED: "SKIPPED",
    TaskStatus.IN_DOUBT: "IN_DOUBT",
}


def _gated(record: TaskRecord, records: Mapping[str, TaskRecord]) -> bool:
    """Whether a SKIPPED record was caused by a ``when=`` gate rather than a failure."""
    root = records.get(record.root_cause) if record.root_cause else None
    return (
        record.status is TaskStatus.SKIPPED
        and root is not None
        and root.status is TaskStatus.SKIPPED
        and root.root_cause == root.name
    )


def run_status(info: RunInfo, snapshot: Snapshot) -> str:
    """The run's status word: ``"FAILED"``, ``"SUCCESS"`` or ``"RUNNING"`` (see module docs)."""
    records = snapshot.records
    done = True
    for name in info.tasks:
        if name in info.detached:
            continue
        record = records.get(name)
        status = record.status if record is not None else TaskStatus.PENDING
        if status is TaskStatus.SUCCEEDED:
            continue
        if record is not None and _gated(record, records):
            continue
        if status in (
            TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED, TaskStatus.IN_DOUBT
        ):  # fmt: skip
            return "FAILED"
        done = False
    return "SUCCESS" if done else "RUNNING"


def _task_entry(record: TaskRecord | None) -> dict[str, Any]:
    if record is None:
        return dict.fromkeys(("started_at", "finished_at", "error", "result"), None) | {
            "status": "PENDING",
            "attempt": 0,
        }
    error: str | None = None
    if record.status is TaskStatus.FAILED and record.error is not None:
        # a failure a flowrun-protocol store kept as text is shown as that text
        error = record.error.message if record.error.kind == "text" else str(record.error)
    elif record.status in (TaskStatus.SKIPPED, TaskStatus.CANCELLED, TaskStatus.IN_DOUBT):
        error = record.reason
    succeeded = record.status is TaskStatus.SUCCEEDED and record.has_value
    return {
        "status": STATUS_WORDS[record.status],
        "attempt": record.attempts,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "error": error,
        "result": record.value if succeeded else None,
    }


def build_report(info: RunInfo, snapshot: Snapshot) -> dict[str, Any]:
    """flowrun's run report: run fields plus one entry per planned task, in plan order.

    ``error`` is the failure as text (``"ValueError: boom"``) or, for a skipped task, why it
    was skipped; ``result`` is the value, or ``None`` when there is none or it was released
    (``retain_result=False``).
    """
    records = snapshot.records
    planned = set(info.tasks)
    names = list(info.tasks) + [n for n in records if n not in planned]
    return {
        "run_id": info.run_id,
        "dag_name": info.dag_name,
        "created_at": info.created_at,
        "finished_at": info.finished_at,
        "status": run_status(info, snapshot),
        "tasks": {name: _task_entry(records.get(name)) for name in names},
    }


def render_tree(dag_name: str, graph: TaskGraph) -> str:
    """The DAG as an indented tree: each root, then the tasks that depend on it, and so on.

    A task reached a second time (it has several upstream tasks) is shown with ``[shared]``
    and not expanded again.

    >>> from flowplan.spec import Dependency, TaskSpec
    >>> a = TaskSpec("extract", lambda: 1)
    >>> b = TaskSpec("load", lambda extract: extract, deps=(Dependency("extract", a),))
    >>> print(render_tree("etl", TaskGraph.build([a, b])))
    etl
    `-- extract
        `-- load
    """
    lines = [dag_name]
    seen: set[str] = set()
    roots = [name for name in graph.order if not graph.predecessors[name]]
    stack: list[tuple[str, str, bool]] = [(r, "", i == len(roots) - 1) for i, r in enumerate(roots)]
    stack.reverse()
    while stack:
        name, prefix, last = stack.pop()
        shared = name in seen
        lines.append(f"{prefix}{'`-- ' if last else '|-- '}{name}{' [shared]' if shared else ''}")
        if shared:
            continue
        seen.add(name)
        children = graph.successors[name]
        child_prefix = prefix + ("    " if last else "|   ")
        stack.extend(
            (child, child_prefix, i == len(children) - 1)
            for i, child in reversed(list(enumerate(children)))
        )
    return "\n".join(lines)
