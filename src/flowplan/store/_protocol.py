"""The state-store protocol the interpreter writes through.

Place in the data flow: snapshot → **store**. The interpreter calls a store as records change:
``begin_run`` once, ``save_record`` when a task starts and when it becomes terminal (and for
every reused record), ``finish_run`` at the end. A store that cannot encode a value raises
:class:`~flowplan.errors.SerializationError` from ``save_record``; the interpreter then records
that task as failed instead, so the store never holds a half-written result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from flowplan.plan import Plan
    from flowplan.snapshot import Snapshot, TaskRecord

__all__ = ["StateStore"]


@runtime_checkable
class StateStore(Protocol):
    """Where a run's records go as they happen (no base class required)."""

    def begin_run(self, plan: Plan) -> None:
        """A run of ``plan`` starts."""

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        """Persist ``record`` (a start, a terminal state, or a reused record)."""

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        """The run ended with ``snapshot``; ``status`` is ``"succeeded"`` or ``"failed"``."""
