"""The store the Engine runs with: its protocol, and the in-memory default.

Place in the data flow: façade (flowrun's API over plan → aexecute → store). The Engine calls
``create_run`` (metadata: DAG name, targets, the run it resumes) and hands the store to
:func:`flowplan.aexecute`, which writes through the core protocol (``begin_run``,
``save_record``, ``finish_run``). Reports and resume read back ``get_run`` and ``load``.
:class:`~flowplan.store.SqliteStateStore` implements the same protocol on disk. A store written
to flowrun's own protocol (:class:`flowplan.engine.StateStoreProtocol`) is adapted to this one
by ``_store_adapter.engine_store``.
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
from flowplan.store._owner import DEFAULT_LEASE_S, Owner, drop, new_owner, owned_error, owner_live
from flowplan.store._sqlite._rows import planned_tasks

__all__ = ["EngineStore", "MemoryRunStore"]


@runtime_checkable
class EngineStore(Protocol):
    """What an :class:`~flowplan.engine.Engine` runs with (no base class needed): flowplan's
    stores (:class:`~flowplan.store.SqliteStateStore`, :class:`MemoryRunStore`) implement it.

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


class MemoryRunStore:
    """Keep runs in this process's memory, with every record as the core made it: the
    Engine's default store (fast, ephemeral).

    >>> MemoryRunStore().list_runs()
    []
    """

    def __init__(self) -> None:
        self._runs: dict[str, tuple[RunInfo, dict[str, TaskRecord]]] = {}
        self._lock = threading.Lock()
        # Ownership (``flowplan.store._owner``): lineage → its owner, and run id → (its owner,
        # its lineage, whether it began) for the runs started here that have not finished.
        self._lineage_owners: dict[str, Owner] = {}
        self._owners: dict[str, tuple[Owner, str, bool]] = {}

    def _claim(self, plan: Plan) -> None:
        """Own ``plan``'s lineage (call with the lock held).

        Raises:
            RunOwnedError: a run still live on another thread owns it.
        """
        lineage = plan.lineage_id or plan.run_id
        current = self._lineage_owners.get(lineage)
        if current is not None and owner_live(current):
            raise owned_error(plan.run_id, lineage, current, "this MemoryRunStore")
        old = self._owners.pop(plan.run_id, None)
        if old is not None:
            drop(old[0].owner_id)
        owner = new_owner(plan.run_id, DEFAULT_LEASE_S)
        self._lineage_owners[lineage] = owner
        self._owners[plan.run_id] = (owner, lineage, False)

    def release_run(self, run_id: str) -> None:
        """Give up the ownership of ``run_id``'s lineage (a run created that never starts)."""
        with self._lock:
            held = self._owners.pop(run_id, None)
            if held is None:
                return
            owner, lineage, _ = held
            drop(owner.owner_id)
            if self._lineage_owners.get(lineage) is owner:
                del self._lineage_owners[lineage]

    def create_run(
        self,
        plan: Plan,
        *,
        dag_name: str | None,
        targets: Sequence[str] | None = None,
        resumed_from: str | None = None,
    ) -> None:
        """Record a new run with a PENDING record per planned task; it owns its lineage.

        Raises:
            RunOwnedError: a run of the same lineage is still live on another thread.
        """
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
            self._claim(plan)
            self._runs[plan.run_id] = (info, {n: TaskRecord(n, TaskStatus.PENDING) for n in tasks})

    def begin_run(self, plan: Plan) -> None:
        """A run starts; it is created here unless :meth:`create_run` did it.

        Raises:
            RunOwnedError: a run of the same lineage is still live on another thread.
        """
        with self._lock:
            held = self._owners.get(plan.run_id)
            if held is not None and not held[2]:  # created by create_run: it starts now
                self._owners[plan.run_id] = (held[0], held[1], True)
                return
            known = plan.run_id in self._runs
            if known:  # resumed under its own id
                self._claim(plan)
                info, records = self._runs[plan.run_id]
                self._runs[plan.run_id] = (
                    attrs.evolve(info, status="running", finished_at=None),
                    records,
                )
        if not known:  # a resume records its lineage (idempotency keys survive a reload)
            lineage = plan.lineage_id if plan.lineage_id != plan.run_id else None
            self.create_run(plan, dag_name=None, resumed_from=lineage or None)
        with self._lock:
            held = self._owners[plan.run_id]
            self._owners[plan.run_id] = (held[0], held[1], True)

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
        self.release_run(snapshot.run_id)  # its lineage may be resumed now

    def _entry(self, run_id: str) -> tuple[RunInfo, dict[str, TaskRecord]]:
        entry = self._runs.get(run_id)
        if entry is None:
            hint, best = did_you_mean(run_id, self._runs)
            raise UnknownTaskError(
                f"no run {run_id!r} in this Engine's in-memory store; "
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
