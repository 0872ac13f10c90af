"""Trigger rules and optional dependencies: when a task may run, given how its inputs ended.

Place in the data flow: graph → plan → **interpreter** (the machine in ``_machine.py`` and its
cascade in ``_cascade.py`` ask :func:`decide` about a task once every dependency of it is
terminal). The rules are pure functions of the dependencies' records, so they are
deterministic whatever order the dependencies finished in:

* ``all_succeeded`` (default): every dependency succeeded; an :func:`~flowplan.optional`
  dependency may instead have been *harmlessly skipped* (see below).
* ``all_done``: always runs (once every dependency is terminal).
* ``none_failed``: every dependency succeeded or was harmlessly skipped.
* ``any_succeeded``: at least one dependency succeeded (a task with no dependency runs).

A dependency is *harmlessly skipped* when it is SKIPPED and its root cause is a skip too (a
``when=`` gate, or a task skipped below one) rather than a failure. A dependency that did not
succeed is received as ``None``. When the rule says no, the task is skipped; the reason names
the rule and the dependency, and the root cause is carried from that dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowplan.graph import TaskGraph
from flowplan.snapshot import TaskRecord, TaskStatus

__all__ = ["decide", "harmless", "received", "root_of"]

_SUCCEEDED = TaskStatus.SUCCEEDED
_SKIPPED = TaskStatus.SKIPPED


def root_of(name: str, record: TaskRecord) -> str:
    """The task that caused ``record``'s outcome (itself when it failed or was gated)."""
    if record.status is TaskStatus.FAILED:
        return name
    return record.root_cause or name


def harmless(name: str, record: TaskRecord, records: Mapping[str, TaskRecord]) -> bool:
    """Whether ``record`` is a skip caused by a ``when=`` gate rather than by a failure."""
    if record.status is not _SKIPPED:
        return False
    root = records.get(root_of(name, record))
    return root is not None and root.status is _SKIPPED


def _how(name: str, record: TaskRecord, *, detail: bool) -> str:
    """How a dependency ended, in the cascade's words ("failed", "skipped", "was skipped")."""
    if record.status is TaskStatus.FAILED:
        return "failed"
    root = root_of(name, record)
    if root == name:
        return str(record.status.value)
    verb = f"was {record.status.value}"
    return f"{verb} (root cause: {root!r})" if detail else verb


def decide(
    graph: TaskGraph, name: str, records: Mapping[str, TaskRecord]
) -> tuple[str, str] | None:
    """Apply ``name``'s trigger rule to its (terminal) dependencies' records.

    Args:
        graph: the graph ``name`` belongs to.
        name: a task whose every dependency has a terminal record in ``records``.
        records: the run's records (reused ones included).

    Returns:
        ``None`` when the task may run, else ``(reason, root_cause)`` for its skip.
    """
    spec = graph.specs[name]
    rule = spec.trigger
    if rule == "all_done":
        return None
    preds = graph.predecessors[name]
    if rule == "any_succeeded":
        if not preds or any(records[d].status is _SUCCEEDED for d in preds):
            return None
        failing = [d for d in preds if not harmless(d, records[d], records)]
        first = failing[0] if failing else preds[0]
        listed = ", ".join(f"{d!r} {_how(d, records[d], detail=True)}" for d in preds)
        return (
            f"trigger rule any_succeeded: no upstream succeeded ({listed})",
            root_of(first, records[first]),
        )
    optional = {dep.name for dep in spec.deps if dep.optional} if rule == "all_succeeded" else ()
    failed: list[str] = []  # dependencies the rule rejects, caused by a failure
    gated: list[str] = []  # ... and skipped harmlessly (all_succeeded only)
    for dep in preds:
        record = records[dep]
        if record.status is _SUCCEEDED:
            continue
        if not harmless(dep, record, records):
            failed.append(dep)
        elif rule != "none_failed" and dep not in optional:
            gated.append(dep)
    if not failed and not gated:
        return None
    dep = (failed or gated)[0]  # a failure is named before a gate: its root cause spreads
    record = records[dep]
    if rule == "all_succeeded":  # the default rule speaks as the plain cascade does
        return f"upstream {dep!r} {_how(dep, record, detail=False)}", root_of(dep, record)
    return (
        f"trigger rule {rule}: upstream {dep!r} {_how(dep, record, detail=True)}",
        root_of(dep, record),
    )


def received(record: TaskRecord) -> Any:
    """The value a triggered task receives for a dependency: ``None`` unless it succeeded."""
    return record.value if record.status is _SUCCEEDED else None
