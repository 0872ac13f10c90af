"""One order and one count for a run's records, whoever shows them.

Place in the data flow: beside the snapshot, read by everything that presents a run — the
interpreter's ``RunFinished`` counts (so ``StructlogHook``'s ``run_finished``), the SQLite
store's ``load``, ``Flow.summary()``, the report tables and the ``flowplan`` command's
``run``/``resume``/``runs``/``show``. Each asks here, so no two surfaces can disagree.

- **Order**: the tasks in graph order, each fan-out task's elements (``rows[0]``, ``rows[1]``
  …) right after it, in index order (:func:`record_order`).
- **Counts**: one count per outcome word; a succeeded record the run did not produce itself —
  reused from an earlier run, overridden, replayed from a journal or a result-cache hit —
  counts as ``reused``, not ``succeeded`` (:func:`was_reused`, :func:`task_counts`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from flowplan._fanout import split_element
from flowplan.snapshot import TaskRecord, TaskStatus, _Records

__all__ = ["COUNT_WORDS", "record_order", "reused_names", "task_counts", "was_reused"]

COUNT_WORDS = (
    "succeeded", "reused", "failed", "in_doubt", "skipped", "cancelled", "running", "pending"
)  # fmt: skip
"""The outcome words counted, in the order they are shown."""

_SUCCEEDED = TaskStatus.SUCCEEDED


def record_order(tasks: Iterable[str], others: Iterable[str] = ()) -> list[str]:
    """``tasks`` (in graph order) with each fan-out task's elements right after it.

    Args:
        tasks: the run's tasks, in graph order.
        others: the other names to place — a fan-out task's elements (``rows[2]``), in any
            order. Each goes right after its task, in index order; any other name (one in
            ``tasks`` is skipped) goes last, in the order given.

    >>> record_order(["a", "rows", "z"], ["rows[10]", "z", "rows[2]", "b[0]"])
    ['a', 'rows', 'rows[2]', 'rows[10]', 'z', 'b[0]']
    """
    order = list(tasks)
    known = set(order)
    elements: dict[str, list[tuple[int, str]]] = {}
    stray: list[str] = []
    for name in others:
        if name in known:
            continue
        split = split_element(name)
        if split is not None and split[0] in known:
            elements.setdefault(split[0], []).append((split[1], name))
        else:
            stray.append(name)
    if not elements and not stray:
        return order
    out: list[str] = []
    for name in order:
        out.append(name)
        if name in elements:
            out.extend(element for _, element in sorted(elements[name]))
    out.extend(stray)
    return out


def was_reused(record: TaskRecord, run_started_at: float | None) -> bool:
    """Whether a succeeded ``record`` came into its run from elsewhere instead of being run
    by it: overridden, replayed from a journal or a result cache (``cached``), or started
    before the run did (``run_started_at``, on the clock that stamped the records)."""
    if record.status is not _SUCCEEDED:
        return False
    if record.overridden or record.cached:
        return True
    started = record.started_at
    return run_started_at is not None and started is not None and started < run_started_at


def reused_names(records: Mapping[str, TaskRecord], run_started_at: float | None) -> list[str]:
    """The names of the records :func:`was_reused` says came from elsewhere, in order."""
    return [name for name, record in records.items() if was_reused(record, run_started_at)]


def task_counts(
    records: Mapping[str, TaskRecord],
    *,
    run_started_at: float | None = None,
    reused: Collection[str] = (),
) -> dict[str, int]:
    """How many of a run's records ended each way: word → count, in :data:`COUNT_WORDS`
    order, words with no record left out.

    Args:
        records: the run's records (a snapshot's ``records``).
        run_started_at: when the run started, on the records' clock: a succeeded record
            started earlier was reused (see :func:`was_reused`).
        reused: names known to be reused (they count as ``reused`` whatever their times).
    """
    counts = dict.fromkeys(COUNT_WORDS, 0)
    # A run's own records: a plain success not built yet is one this run produced.
    items = records.built() if type(records) is _Records else records.items()
    for name, record in items:
        if record is None:
            word = "reused" if name in reused else "succeeded"
        elif record.status is _SUCCEEDED and (name in reused or was_reused(record, run_started_at)):
            word = "reused"
        else:
            word = record.status.value
        counts[word] += 1
    return {word: n for word, n in counts.items() if n}
