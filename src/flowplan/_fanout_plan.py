"""Dynamic fan-out at plan time: which element records of an earlier run a resume honours.

Place in the data flow: snapshot (an earlier run's element records ``process[2]``) → **plan**
(:func:`prior_elements`: reused; :func:`doubtful_elements`: ``at_most_once`` elements in doubt)
→ interpreter (``_fanout.FanOut`` opens the elements, reusing or settling these).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import TYPE_CHECKING

from flowplan._effects import in_doubt_reason
from flowplan._fanout import element_key, split_element
from flowplan._stored import Unstructured
from flowplan.snapshot import TaskRecord, TaskStatus

if TYPE_CHECKING:
    from flowplan.graph import TaskGraph

__all__ = ["doubtful_elements", "prior_elements"]

_SUCCEEDED = TaskStatus.SUCCEEDED


def prior_elements(
    graph: TaskGraph,
    records: Mapping[str, TaskRecord],
    reuse: Mapping[str, TaskRecord],
    to_run: Iterable[str],
    step_keys: Mapping[str, str],
    *,
    rerun: Container[str] = (),
) -> dict[str, TaskRecord]:
    """The element records of an earlier run that a resumed fan-out task reuses.

    A fan-out task that runs again reuses its succeeded (unreleased) element records when every
    dependency it has is reused from that run as it was (not overridden, not rerun) and it is
    not rerun itself: then its upstream value, and so each element's input, is unchanged. With
    step keys, an element record must also carry the element's current key.

    Args:
        graph: the graph planned.
        records: the earlier snapshot's records.
        reuse: the plan's reused records (name → record).
        to_run: the names the plan runs.
        step_keys: the current step keys (may be empty).
        rerun: the tasks the plan reruns on request (their elements all run again).

    Returns:
        element name → the record to reuse.
    """
    fan_out = graph.fan_out_tasks()
    prior: dict[str, TaskRecord] = {}
    if not fan_out or not records:
        return prior
    elements = _elements_of(records, fan_out)
    for parent in to_run:
        if parent not in fan_out or parent in rerun:
            continue
        preds = graph.predecessors[parent]
        if not all(p in reuse and not reuse[p].overridden for p in preds):
            continue
        key = step_keys.get(parent)
        for index, found in elements.get(parent, ()):
            record = found
            if type(record.value) is Unstructured:  # a typed value as stored
                from flowplan.store._typed import record_type, restored_or_failed

                record = restored_or_failed(record, record_type(graph, record.name))
            if (
                record.status is _SUCCEEDED
                and record.has_value
                and (key is None or record.step_key == element_key(key, index))
            ):
                prior[record.name] = record
    return prior


def _elements_of(
    records: Mapping[str, TaskRecord], parents: Container[str]
) -> dict[str, list[tuple[int, TaskRecord]]]:
    """Each fan-out task in ``parents`` → its element records ``(index, record)`` found in
    ``records``, which may have gaps (a journal keeps only the elements that succeeded)."""
    out: dict[str, list[tuple[int, TaskRecord]]] = {}
    for name, record in records.items():
        if not name.endswith("]"):
            continue
        element = split_element(name)
        if element is not None and element[0] in parents:
            out.setdefault(element[0], []).append((element[1], record))
    return out


def doubtful_elements(
    graph: TaskGraph,
    records: Mapping[str, TaskRecord],
    to_run: Iterable[str],
    *,
    rerun: Container[str] = (),
    released: Container[str] = (),
) -> dict[str, TaskRecord]:
    """The element records of an earlier run that leave an ``at_most_once`` element in doubt.

    Also, for each fan-out task in ``released`` (not ``pure``, run again because its released
    value is needed), every element that succeeded and whose value is gone: like the task
    itself (:func:`flowplan._effects.released_reason`), it is never run again silently.

    Elements are judged like whole tasks (:func:`flowplan._effects.in_doubt_reason`): a RUNNING
    record (its process stopped), a FAILED one whose started attempt was crashed, interrupted
    or timed out, or one still IN_DOUBT. Such an element is settled (``reconcile=``) or stays
    IN_DOUBT when its fan-out task runs again; ``rerun=`` (or ``override``) of the fan-out task
    settles them all. Judged whatever the upstream value is now: an effect that may have
    happened is never silently repeated.

    Args:
        graph: the graph planned.
        records: the earlier snapshot's records.
        to_run: the names the plan runs.
        rerun: the tasks the plan reruns on request.

    Returns:
        element name → its earlier record.
    """
    doubt: dict[str, TaskRecord] = {}
    specs = graph.specs
    fan_out = graph.fan_out_tasks()
    once = {p for p in fan_out if specs[p].effect == "at_most_once" or p in released}
    if not once or not records:
        return doubt
    elements = _elements_of(records, once)
    for parent in to_run:
        spec = specs[parent]
        if parent not in once or parent in rerun:
            continue
        gone = parent in released
        for _, record in elements.get(parent, ()):
            if in_doubt_reason(spec, record) is not None or (
                gone and record.status is _SUCCEEDED and record.released and not record.has_value
            ):
                doubt[record.name] = record
    return doubt
