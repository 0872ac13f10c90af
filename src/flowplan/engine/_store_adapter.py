"""The one place a flowrun-protocol state store is adapted to the store the Engine runs with.

Place in the data flow: façade (flowrun's API over plan → aexecute → **store**). The Engine
runs every DAG through the core: :func:`flowplan.aexecute` writes records through
:class:`flowplan.store.StateStore` (``begin_run``, ``save_record``, ``finish_run``), and the
Engine reads runs back as :class:`~flowplan.store.RunInfo` plus a
:class:`~flowplan.snapshot.Snapshot` (:class:`~flowplan.engine._store.EngineStore`).
:func:`engine_store` takes what the user passed as ``state_store=``: a store of that kind is
used as it is; a store written to flowrun's :class:`StateStoreProtocol` (``create_run``,
``mark_*``, ``get_run`` …) is wrapped in :class:`FlowrunStoreAdapter`, which turns each record
into flowrun's calls and reads flowrun's run records back.

What a flowrun-protocol store keeps is flowrun's: a status word, an attempt count, times, an
error *text* and a result per planned task. So, for runs kept there: fan-out elements are not
recorded (the fanned-out task's list is); a skip caused by a ``when=`` gate counts as a skip
(the run reports FAILED, flowrun's rule); a task cancelled while running is FAILED; the
metadata flowrun has no field for (a subgraph run's targets, the run it resumed, detached
tasks, a released result) is known for runs made by this process only.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

import attrs

from flowplan.errors import InvalidOptionError, UnknownTaskError
from flowplan.plan import Plan
from flowplan.snapshot import ErrorInfo, Snapshot, TaskRecord, TaskStatus
from flowplan.store import RunInfo
from flowplan.store._sqlite._rows import planned_tasks

from ._flowrun_state import TERMINAL, RunRecord, StateStoreProtocol
from ._store import EngineStore

__all__ = ["STORED_TEXT", "FlowrunStoreAdapter", "engine_store"]

STORED_TEXT = "text"
"""``ErrorInfo.kind`` of a failure known only as the text a flowrun store kept."""

_ERROR_TEXT = re.compile(r"([A-Za-z_][\w.]*): (.*)", re.S)
_STATUS = {
    "PENDING": TaskStatus.PENDING,
    "RUNNING": TaskStatus.RUNNING,
    "SUCCESS": TaskStatus.SUCCEEDED,
    "FAILED": TaskStatus.FAILED,
    "SKIPPED": TaskStatus.SKIPPED,
}


@attrs.define
class _Run:
    """What the adapter knows of a run it created: flowrun's status and attempt per task
    (kept as it drives the store, so no read is needed per record) and the metadata a
    flowrun store has no field for."""

    states: dict[str, tuple[str, int]]
    targets: tuple[str, ...] | None
    resumed_from: str | None
    detached: frozenset[str]
    status: str = "running"
    released: set[str] = attrs.field(factory=set)


def _error_text(record: TaskRecord) -> str:
    if record.error is not None:
        return str(record.error)
    return record.reason or record.status.value


def _error_info(text: str) -> ErrorInfo:
    """Back from the text: ``"ValueError: boom"`` → type and message, else the text as is."""
    found = _ERROR_TEXT.fullmatch(text)
    if found is not None:
        return ErrorInfo(found[1], found[2])
    return ErrorInfo("", text, kind=STORED_TEXT)


class FlowrunStoreAdapter:
    """An :class:`~flowplan.engine._store.EngineStore` driving a flowrun-protocol store.

    Args:
        store: the user's store (:class:`~flowplan.engine.StateStoreProtocol`).
        retains: ``retains(dag, task)``: whether the task keeps its value
            (``retain_result``). A flowrun store cannot tell a released value from a ``None``
            result, so a run this process did not make reads a ``None`` result of a task that
            does not keep its value as released (resume then refuses to feed it downstream).
    """

    records_starts = True  # mark_running is recorded before a body runs

    def __init__(
        self, store: StateStoreProtocol, retains: Callable[[str, str], bool] | None = None
    ) -> None:
        self.store = store
        self.retains = retains
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FlowrunStoreAdapter({self.store!r})"

    # -- creating -----------------------------------------------------------------------------
    def create_run(
        self,
        plan: Plan,
        *,
        dag_name: str | None,
        targets: Sequence[str] | None = None,
        resumed_from: str | None = None,
    ) -> None:
        """``create_run`` (or ``create_resumed_run``, resetting the tasks the plan runs)."""
        names = list(planned_tasks(plan))
        dag = dag_name or ""
        if resumed_from is None:
            created = self.store.create_run(plan.run_id, dag, names)
        else:
            created = self.store.create_resumed_run(
                plan.run_id, resumed_from, dag, names, reset_tasks=set(plan.to_run)
            )
        returned: object = created  # a backend may return None despite the protocol
        record = created if returned is not None else self.store.get_run(plan.run_id)
        states: dict[str, tuple[str, int]] = {
            n: (t.status, t.attempt) for n, t in record.tasks.items()
        }
        run = _Run(
            states,
            None if targets is None else tuple(targets),
            resumed_from,
            plan.graph.detached.intersection(names),
        )
        with self._lock:
            self._runs[plan.run_id] = run

    def begin_run(self, plan: Plan) -> None:
        """A run starts; it is created here unless :meth:`create_run` did it."""
        with self._lock:
            known = plan.run_id in self._runs
        if not known:
            lineage = plan.lineage_id if plan.lineage_id != plan.run_id else None
            self.create_run(plan, dag_name=None, resumed_from=lineage)

    # -- recording ----------------------------------------------------------------------------
    def save_record(self, run_id: str, record: TaskRecord) -> None:
        """Turn ``record`` into flowrun's transitions for its task."""
        with self._lock:
            run = self._runs[run_id]
            state = run.states.get(record.name)
            if state is None:
                return  # a fan-out element: flowrun stores keep the fanned-out task only
            new = self._apply(run_id, record, *state)
            run.states[record.name] = new
            if record.released:
                run.released.add(record.name)

    def _start(self, run_id: str, name: str, status: str) -> None:
        """From PENDING or FAILED to RUNNING."""
        if status == "FAILED":
            self.store.mark_retry(run_id, name)
        self.store.mark_running(run_id, name)

    def _apply(self, run_id: str, record: TaskRecord, status: str, attempt: int) -> tuple[str, int]:
        store, name, kind = self.store, record.name, record.status
        if kind is TaskStatus.RUNNING:
            if status == "RUNNING" and record.attempts <= attempt:
                return status, attempt  # this attempt's start is recorded already
            if status == "RUNNING":  # the previous attempt failed; this is its retry
                store.mark_failed(run_id, name, _error_text(record))
                status = "FAILED"
            if status in ("PENDING", "FAILED"):
                self._start(run_id, name, status)
                return "RUNNING", attempt + 1
            return status, attempt
        if kind is TaskStatus.SUCCEEDED:
            if status != "SUCCESS":
                if status != "RUNNING":  # reused from a cache, or supplied: never ran here
                    self._start(run_id, name, status)
                    attempt += 1
                store.mark_success(run_id, name, record.value if record.has_value else None)
            if record.released:
                store.clear_result(run_id, name)
            return "SUCCESS", attempt
        if kind in (TaskStatus.FAILED, TaskStatus.IN_DOUBT):
            if status in TERMINAL:
                return status, attempt
            if status == "PENDING":  # failed before an attempt started (e.g. its inputs)
                self._start(run_id, name, status)
                attempt += 1
            store.mark_failed(run_id, name, _error_text(record))
            return "FAILED", attempt
        if kind in (TaskStatus.SKIPPED, TaskStatus.CANCELLED):
            if status == "PENDING":
                store.mark_skipped(run_id, name, record.reason or "UPSTREAM_FAILED")
                return "SKIPPED", attempt
            if status == "RUNNING":  # cancelled while running: it did not finish
                store.mark_failed(run_id, name, _error_text(record))
                return "FAILED", attempt
        return status, attempt

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        """``finalize_run_if_done``, and remember the run's status."""
        self.store.finalize_run_if_done(snapshot.run_id)
        with self._lock:
            run = self._runs.get(snapshot.run_id)
            if run is not None:
                run.status = status
                run.states.clear()  # only the run's metadata is kept once it ended

    # -- reading ------------------------------------------------------------------------------
    def _record(self, run_id: str) -> RunRecord:
        try:
            return self.store.get_run(run_id)
        except KeyError as exc:
            if isinstance(exc, UnknownTaskError):
                raise
            raise UnknownTaskError(
                f"no run {run_id!r} in the state store {type(self.store).__name__} "
                f"({exc!r}); pass a run id returned by run_once, run_subgraph or resume",
                name=run_id,
            ) from exc

    def get_run(self, run_id: str) -> RunInfo:
        """The run's metadata, from ``get_run`` (and what this process knows of it).

        Raises:
            UnknownTaskError: the store has no such run (a ``KeyError``).
        """
        record = self._record(run_id)
        with self._lock:
            run = self._runs.get(run_id)
        statuses = [t.status for t in record.tasks.values()]
        if run is not None:
            status = run.status
        elif record.finished_at is None and not all(s in TERMINAL for s in statuses):
            status = "running"
        else:
            status = "failed" if {"FAILED", "SKIPPED"} & set(statuses) else "succeeded"
        return RunInfo(
            run_id=record.run_id,
            tasks=tuple(record.tasks),
            created_at=record.created_at,
            dag_name=record.dag_name or None,
            detached=run.detached if run is not None else frozenset(),
            targets=run.targets if run is not None else None,
            resumed_from=run.resumed_from if run is not None else None,
            finished_at=record.finished_at,
            status=status,
        )

    def load(self, run_id: str) -> Snapshot:
        """The run's records as a snapshot (what resume plans from and reports read).

        Raises:
            UnknownTaskError: the store has no such run (a ``KeyError``).
        """
        record = self._record(run_id)
        with self._lock:
            run = self._runs.get(run_id)
            lineage, seen = None, {run_id}
            parent = run.resumed_from if run is not None else None
            while parent is not None and parent not in seen:
                lineage = parent
                seen.add(parent)
                known = self._runs.get(parent)
                parent = known.resumed_from if known is not None else None
        released = run.released if run is not None else set()
        if run is None and self.retains is not None:
            released = {
                name
                for name, task in record.tasks.items()
                if task.status == "SUCCESS"
                and task.result is None
                and not self.retains(record.dag_name, name)
            }
        records: dict[str, TaskRecord] = {}
        for name, task in record.tasks.items():
            status = _STATUS.get(task.status, TaskStatus.PENDING)
            text = task.error
            failed = status is TaskStatus.FAILED
            records[name] = TaskRecord(
                name,
                status,
                attempts=task.attempt,
                value=task.result if status is TaskStatus.SUCCEEDED else None,
                has_value=status is TaskStatus.SUCCEEDED and name not in released,
                error=_error_info(text or "failed") if failed else None,
                started_at=task.started_at,
                finished_at=task.finished_at,
                reason=text,
                root_cause=name if failed else None,
                released=name in released,
            )
        return Snapshot(run_id, records, lineage_id=lineage)

    def list_runs(self, dag_name: str | None = None) -> list[RunInfo]:
        """The runs this adapter created (or the store's own ``list_runs``), oldest first."""
        listing = getattr(self.store, "list_runs", None)
        if callable(listing):
            ids = [r.run_id for r in listing(dag_name)]
        else:
            with self._lock:
                ids = list(self._runs)
        infos = [self.get_run(i) for i in ids]
        return [i for i in infos if dag_name is None or i.dag_name == dag_name]


def engine_store(
    state_store: object, retains: Callable[[str, str], bool] | None = None
) -> EngineStore:
    """The store the Engine runs with for what the user passed as ``state_store=``
    (``retains``: see :class:`FlowrunStoreAdapter`).

    Raises:
        InvalidOptionError: ``state_store`` implements neither protocol.
    """
    if isinstance(state_store, EngineStore):
        return state_store
    if isinstance(state_store, StateStoreProtocol):
        return FlowrunStoreAdapter(state_store, retains)
    missing = [m for m in _FLOWRUN_METHODS if not callable(getattr(state_store, m, None))]
    raise InvalidOptionError(
        f"state_store must implement flowrun's StateStoreProtocol (or be a flowplan store such "
        f"as SqliteStateStore), got {state_store!r} ({type(state_store).__name__}), which "
        f"lacks {', '.join(missing)}; add those methods, or use InMemoryStateStore()",
        option="state_store",
        value=state_store,
    )


_FLOWRUN_METHODS = (
    "create_run",
    "create_resumed_run",
    "get_run",
    "mark_running",
    "mark_success",
    "mark_failed",
    "mark_skipped",
    "mark_retry",
    "clear_result",
    "finalize_run_if_done",
)
