"""An in-memory state store: runs kept as snapshots in this process.

Place in the data flow: snapshot → **store**. The default store; nothing survives the process.
"""

from __future__ import annotations

import threading

from flowplan._suggest import did_you_mean
from flowplan.errors import UnknownTaskError
from flowplan.plan import Plan
from flowplan.snapshot import Snapshot, TaskRecord

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keep every run's records in memory, retrievable by run id.

    >>> store = MemoryStore()
    >>> store.run_ids()
    ()
    """

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, TaskRecord]] = {}
        self._status: dict[str, str] = {}
        self._lineage: dict[str, str] = {}  # resumed runs: run id → lineage id
        self._lock = threading.Lock()

    def begin_run(self, plan: Plan) -> None:
        """Start recording ``plan``'s run."""
        with self._lock:
            self._runs[plan.run_id] = {}
            self._status[plan.run_id] = "running"
            if plan.lineage_id and plan.lineage_id != plan.run_id:
                self._lineage[plan.run_id] = plan.lineage_id

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        """Keep ``record`` as the latest of its task in ``run_id``."""
        with self._lock:
            self._runs.setdefault(run_id, {})[record.name] = record

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        """Keep the final snapshot of the run."""
        with self._lock:
            self._runs[snapshot.run_id] = dict(snapshot.records)
            self._status[snapshot.run_id] = status

    def load(self, run_id: str) -> Snapshot:
        """The latest snapshot of ``run_id``.

        Raises:
            UnknownTaskError: no run with that id ("did you mean ...").
        """
        with self._lock:
            records = self._runs.get(run_id)
            if records is None:
                hint, best = did_you_mean(run_id, self._runs)
                raise UnknownTaskError(
                    f"no run {run_id!r} in this store; {hint}",
                    name=run_id,
                    known=sorted(self._runs),
                    suggestion=best,
                )
            return Snapshot(run_id, records, lineage_id=self._lineage.get(run_id))

    def status(self, run_id: str) -> str:
        """``"running"``, ``"succeeded"`` or ``"failed"``."""
        with self._lock:
            return self._status[run_id]

    def run_ids(self) -> tuple[str, ...]:
        """Every run id, oldest first."""
        with self._lock:
            return tuple(self._runs)
