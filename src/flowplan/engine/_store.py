"""flowrun's state stores: the protocol the Engine needs, and the in-memory default.

Place in the data flow: façade (flowrun's API over plan → aexecute → store). The Engine calls
``create_run`` (metadata: DAG name, targets, the run it resumes) and hands the store to
:func:`flowplan.aexecute`, which writes through the core protocol (``begin_run``,
``save_record``, ``finish_run``). Reports and resume read back ``get_run`` and ``load``.
:class:`~flowplan.store.SqliteStateStore` implements the same protocol on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

from flowplan._suggest import did_you_mean
from flowplan.errors import UnknownTaskError
from flowplan.plan import Plan
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus
from flowplan.store import RunInfo
from flowplan.store._sqlite._rows import planned_tasks

__all__ = ["InMemoryStateStore", "StateStore", "StateStoreProtocol"]


@runtime_checkable
class StateStoreProtocol(Protocol):
    """What an :class:`~flowplan.engine.Engine` needs from a state store (no base class needed).

    The first three methods are :class:`flowplan.store.StateStore`, called by the interpreter
    as records change; the rest are the Engine's.
    """

    def begin_run(self, plan: Plan) -> None:
        """A run of ``plan`` starts (after :meth:`create_run`)."""

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        """Persist ``record`` (a start, a terminal state, a reused or released record)."""

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        """The run ended; ``status`` is ``"succeeded"`` or ``"failed"``."""

    def create_run(
        self,
        plan: Plan,
        *,
        dag_name: str | None,
        targets: Sequence[str] | None = None,
        resumed_from: str | None = None,
    ) -> None:
        """Record a new run: its metadata and a PENDING record per planned task."""

    def load(self, run_id: str) -> Snapshot:
        """The latest snapshot of ``run_id``; raise ``UnknownTaskError`` if there is none."""
        ...

    def get_run(self, run_id: str) -> RunInfo:
        """The metadata of ``run_id``; raise ``UnknownTaskError`` if there is none."""
        ...

    def list_runs(self, dag_name: str | None = None) -> list[RunInfo]:
        """Every run (of ``dag_name``, if given), oldest first."""
        ...


class InMemoryStateStore:
    """Keep runs in this process's memory: fast, ephemeral (flowrun's default store).

    >>> InMemoryStateStore().list_runs()
    []
    """

    def __init__(self) -> None:
        self._runs: dict[str, tuple[RunInfo, dict[str, TaskRecord]]] = {}
        self._lock = threading.Lock()

    def create_run(
        self,
        plan: Plan,
        *,
        dag_name: str | None,
        targets: Sequence[str] | None = None,
        resumed_from: str | None = None,
    ) -> None:
        """Record a new run with a PENDING record per planned task."""
        tasks = planned_tasks(plan)
        info = RunInfo(
            run_id=plan.run_id,
            tasks=tasks,
            created_at=time.time(),
            dag_name=dag_name,
            detached=plan.graph.detached.intersection(tasks),
            targets=None if targets is None else tuple(targets),
            resumed_from=resumed_from,
        )
        with self._lock:
            self._runs[plan.run_id] = (info, {n: TaskRecord(n, TaskStatus.PENDING) for n in tasks})

    def begin_run(self, plan: Plan) -> None:
        """A run starts; it is created here unless :meth:`create_run` did it."""
        with self._lock:
            known = plan.run_id in self._runs
        if not known:  # a resume records its lineage (idempotency keys survive a reload)
            lineage = plan.lineage_id if plan.lineage_id != plan.run_id else None
            self.create_run(plan, dag_name=None, resumed_from=lineage or None)

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        """Keep ``record`` as its task's latest state."""
        with self._lock:
            self._entry(run_id)[1][record.name] = record

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        """Mark the run finished with ``status``."""
        with self._lock:
            info, records = self._entry(snapshot.run_id)
            finished = attrs.evolve(info, status=status, finished_at=time.time())
            self._runs[snapshot.run_id] = (finished, records)

    def _entry(self, run_id: str) -> tuple[RunInfo, dict[str, TaskRecord]]:
        entry = self._runs.get(run_id)
        if entry is None:
            hint, best = did_you_mean(run_id, self._runs)
            raise UnknownTaskError(
                f"no run {run_id!r} in this in-memory state store; "
                + (hint if self._runs else "it has no runs yet (runs do not survive the process)"),
                name=run_id,
                known=sorted(self._runs),
                suggestion=best,
            )
        return entry

    def load(self, run_id: str) -> Snapshot:
        """The latest snapshot of ``run_id``.

        Raises:
            UnknownTaskError: no run with that id ("did you mean ...").
        """
        with self._lock:
            records = self._entry(run_id)[1]
            lineage, seen = None, {run_id}  # the first run of the chain of resumes
            parent = self._runs[run_id][0].resumed_from
            while parent is not None and parent in self._runs and parent not in seen:
                lineage = parent
                seen.add(parent)
                parent = self._runs[parent][0].resumed_from
            return Snapshot(run_id, records, lineage_id=lineage)

    def get_run(self, run_id: str) -> RunInfo:
        """The metadata of ``run_id``.

        Raises:
            UnknownTaskError: no run with that id ("did you mean ...").
        """
        with self._lock:
            return self._entry(run_id)[0]

    def list_runs(self, dag_name: str | None = None) -> list[RunInfo]:
        """Every run (of ``dag_name``, if given), oldest first."""
        with self._lock:
            infos = [info for info, _ in self._runs.values()]
        return [i for i in infos if dag_name is None or i.dag_name == dag_name]


StateStore = InMemoryStateStore
"""flowrun's name for the in-memory store (not :class:`flowplan.store.StateStore`, the protocol)."""
