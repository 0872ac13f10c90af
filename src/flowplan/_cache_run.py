"""Result caching during a run: look ready tasks up, write successes back.

Place in the data flow: plan (``_cache_plan``: keys known before the run) → **interpreter**
(the scheduling machine ``_machine._Run`` calls these only when its plan has a cache) →
snapshot. A cache-eligible task whose key depends on values produced in this run is looked up
by :func:`cache_lookups` when it becomes ready — a hit is applied as a reused record, a strict
cache's unfingerprintable input as a failure; :func:`cache_write` writes each success back
under its key before its successors read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from flowplan.events import TaskFailed, TaskReused
from flowplan.snapshot import ErrorInfo, TaskRecord

if TYPE_CHECKING:
    from flowplan._machine import _Run

__all__ = ["cache_lookups", "cache_write"]


def cache_write(run: _Run, record: TaskRecord) -> TaskRecord:
    """Write a success back to the run's result cache.

    Called before its successors read its key and before the store saves it.

    Args:
        run: The run's scheduling machine (its ``caching`` is set).
        record: The SUCCEEDED record.

    Returns:
        The record, its reason saying what caching did when it did something to note.
    """
    assert run.caching is not None
    note = run.caching.write(record)
    return record if note is None else attrs.evolve(record, reason=note)


def cache_lookups(run: _Run, ready: list[str]) -> list[str]:
    """Reuse cached results of ready cache-eligible tasks.

    Iterative: tasks a hit makes ready are looked up in the same loop (nested ``_gate``
    calls only collect them), so a long chain of hits never deepens the stack.

    Args:
        run: The run's scheduling machine (its ``caching`` is set).
        ready: Tasks that became ready.

    Returns:
        The tasks to run (misses, and tasks the driver will cancel).
    """
    if run.looking:
        run.found.extend(ready)
        return []
    caching = run.caching
    assert caching is not None
    out: list[str] = []
    work = ready[::-1]
    run.looking = True
    try:
        while work:
            name = work.pop()
            stopped = run.stopped is not None and name not in run.survivors
            if run.fatal is not None or stopped:
                out.append(name)  # the driver cancels it
                continue
            found = caching.lookup(name, run.view, run.step_keys.get(name))
            if found is None:
                out.append(name)
                continue
            if isinstance(found, TaskRecord):
                run.apply(TaskReused(run.run_id, run.clock(), name, found))
            else:  # strict cache, an input with no stable fingerprint
                info = ErrorInfo.from_exception(found, kind="cache")
                run.apply(TaskFailed(run.run_id, run.clock(), name, 0, info, str(found)))
            work.extend(run.found[::-1])
            run.found.clear()
    finally:
        run.looking = False
    return out
