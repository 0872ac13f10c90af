"""flowrun's run state: records, the ``StateStoreProtocol`` custom backends implement, and the
in-memory store with flowrun's state transition rules.

Place in the data flow: façade (flowrun's API over plan → aexecute → **store**). These are
flowrun's names and contracts, for programs and backends written against flowrun. The Engine
never schedules through them: it adapts a store of this protocol to the core's
:class:`flowplan.store.StateStore` in one place (``_store_adapter.py``), which turns the
interpreter's records into ``mark_*`` calls.

Task status is one of ``"PENDING"``, ``"RUNNING"``, ``"SUCCESS"``, ``"FAILED"``,
``"SKIPPED"``. Allowed transitions: PENDING → RUNNING or SKIPPED; RUNNING → SUCCESS or FAILED;
FAILED → PENDING (a retry). SUCCESS and SKIPPED are final; anything else raises
:class:`InvalidTransitionError` (a ``RuntimeError``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from flowplan._suggest import did_you_mean
from flowplan.errors import FlowplanError, UnknownTaskError

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "InMemoryStateStore",
    "InvalidTransitionError",
    "RunRecord",
    "StateStore",
    "StateStoreProtocol",
    "TaskRunRecord",
    "TaskState",
]

TaskState = Literal["PENDING", "RUNNING", "SUCCESS", "FAILED", "SKIPPED"]

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "PENDING": frozenset({"RUNNING", "SKIPPED"}),
    "RUNNING": frozenset({"SUCCESS", "FAILED"}),
    "FAILED": frozenset({"PENDING"}),
    "SUCCESS": frozenset(),
    "SKIPPED": frozenset(),
}
"""For each status, the statuses a task may move to next."""

TERMINAL = frozenset({"SUCCESS", "FAILED", "SKIPPED"})


class InvalidTransitionError(FlowplanError, RuntimeError):
    """A ``mark_*`` call asked for a transition flowrun's rules forbid.

    Attributes:
        task: the task. current: its status. target: the status asked for.
    """

    def __init__(self, task: str, current: str, target: str) -> None:
        allowed = " or ".join(sorted(TRANSITIONS.get(current, ()))) or "nothing (it is final)"
        super().__init__(
            f"Invalid state transition for task {task!r}: {current} -> {target}; from "
            f"{current} a task may move to {allowed}"
        )
        self.task = task
        self.current = current
        self.target = target


@dataclass
class TaskRunRecord:
    """One task of one run, as flowrun records it (mutable, like flowrun's).

    Attributes:
        task_name: the task. attempt: attempts started. status: see the module docs.
        started_at / finished_at: epoch seconds of the latest attempt's start and end.
        error: the failure text, or why the task was skipped. result: the value, if kept.
    """

    task_name: str
    attempt: int = 0
    status: TaskState = "PENDING"
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    result: object | None = None


@dataclass
class RunRecord:
    """One run of a DAG: its tasks' records, when it was created and when it finished."""

    run_id: str
    dag_name: str
    tasks: dict[str, TaskRunRecord] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None


@runtime_checkable
class StateStoreProtocol(Protocol):
    """What a flowrun state-store backend implements (no base class needed).

    ``Engine(state_store=...)`` accepts any object with these methods and drives it as a run
    goes: ``create_run`` (or ``create_resumed_run``), ``mark_*`` as tasks start and end,
    ``clear_result`` for ``retain_result=False``, ``finalize_run_if_done`` at the end; reports
    and resume read ``get_run``.
    """

    def create_run(self, run_id: str, dag_name: str, task_names: list[str]) -> RunRecord:
        """Create a run with every task PENDING."""
        ...

    def create_resumed_run(
        self,
        run_id: str,
        prev_run_id: str,
        dag_name: str,
        task_names: list[str],
        reset_tasks: set[str] | None = None,
    ) -> RunRecord:
        """Create a run copying the SUCCESS tasks of ``prev_run_id`` not in ``reset_tasks``."""
        ...

    def get_run(self, run_id: str) -> RunRecord:
        """The run ``run_id``; raise ``KeyError`` when unknown."""
        ...

    def mark_running(self, run_id: str, task_name: str) -> None:
        """→ RUNNING: ``started_at`` = now, ``attempt`` += 1."""
        ...

    def mark_success(self, run_id: str, task_name: str, result: object) -> None:
        """→ SUCCESS with ``result``; ``finished_at`` = now."""
        ...

    def mark_failed(self, run_id: str, task_name: str, err: str) -> None:
        """→ FAILED with ``error`` = ``err``; ``finished_at`` = now."""
        ...

    def mark_skipped(self, run_id: str, task_name: str, reason: str) -> None:
        """→ SKIPPED with ``error`` = ``reason``; ``finished_at`` = now."""
        ...

    def mark_retry(self, run_id: str, task_name: str) -> None:
        """FAILED → PENDING for another attempt; ``error`` and ``finished_at`` cleared."""
        ...

    def clear_result(self, run_id: str, task_name: str) -> None:
        """Drop the stored result of ``task_name``."""
        ...

    def finalize_run_if_done(self, run_id: str) -> None:
        """Set the run's ``finished_at`` once every task is SUCCESS, FAILED or SKIPPED."""
        ...


def _copy(run: RunRecord) -> RunRecord:
    tasks = {name: dataclasses.replace(task) for name, task in run.tasks.items()}
    return dataclasses.replace(run, tasks=tasks)


class InMemoryStateStore:
    """flowrun's in-memory state store: runs in this process's memory, transitions checked.

    Thread-safe. ``get_run`` returns a copy of the run's records (results are shared, not
    copied), so a caller never sees a run change under it.

    >>> store = InMemoryStateStore()
    >>> _ = store.create_run("r1", "etl", ["extract"])
    >>> store.mark_running("r1", "extract")
    >>> store.mark_success("r1", "extract", [1, 2])
    >>> store.get_run("r1").tasks["extract"].status
    'SUCCESS'
    >>> store.mark_success("r1", "extract", [3])
    Traceback (most recent call last):
    ...
    flowplan.engine._flowrun_state.InvalidTransitionError: Invalid state transition for task \
'extract': SUCCESS -> SUCCESS; from SUCCESS a task may move to nothing (it is final)
    """

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<InMemoryStateStore: {len(self._runs)} runs>"

    def create_run(self, run_id: str, dag_name: str, task_names: list[str]) -> RunRecord:
        """Create (or replace) run ``run_id`` with every task PENDING; return a copy."""
        record = RunRecord(run_id, dag_name, {n: TaskRunRecord(n) for n in task_names})
        with self._lock:
            self._runs[run_id] = record
            return _copy(record)

    def create_resumed_run(
        self,
        run_id: str,
        prev_run_id: str,
        dag_name: str,
        task_names: list[str],
        reset_tasks: set[str] | None = None,
    ) -> RunRecord:
        """Create run ``run_id``: tasks that succeeded in ``prev_run_id`` and are not in
        ``reset_tasks`` are copied as SUCCESS (attempt, times and result kept), the rest
        start PENDING.

        Raises:
            UnknownTaskError: no run ``prev_run_id`` (a ``KeyError``).
        """
        reset = reset_tasks or set()
        with self._lock:
            previous = self._run(prev_run_id).tasks
            tasks: dict[str, TaskRunRecord] = {}
            for name in task_names:
                old = previous.get(name)
                if old is not None and old.status == "SUCCESS" and name not in reset:
                    tasks[name] = TaskRunRecord(
                        name, old.attempt, "SUCCESS", old.started_at, old.finished_at,
                        None, old.result,
                    )  # fmt: skip
                else:
                    tasks[name] = TaskRunRecord(name)
            self._runs[run_id] = RunRecord(run_id, dag_name, tasks)
            return _copy(self._runs[run_id])

    def _run(self, run_id: str) -> RunRecord:
        run = self._runs.get(run_id)
        if run is None:
            hint, best = did_you_mean(run_id, self._runs)
            raise UnknownTaskError(
                f"no run {run_id!r} in this InMemoryStateStore; "
                + (hint if self._runs else "it has no runs yet (runs do not survive the process)"),
                name=run_id,
                known=sorted(self._runs),
                suggestion=best,
            )
        return run

    def _task(self, run_id: str, task_name: str) -> TaskRunRecord:
        tasks = self._run(run_id).tasks
        task = tasks.get(task_name)
        if task is None:
            hint, best = did_you_mean(task_name, tasks)
            raise UnknownTaskError(
                f"run {run_id!r} has no task {task_name!r}; {hint}",
                name=task_name,
                known=sorted(tasks),
                suggestion=best,
            )
        return task

    def _move(self, run_id: str, task_name: str, target: TaskState) -> TaskRunRecord:
        task = self._task(run_id, task_name)
        if target not in TRANSITIONS[task.status]:
            raise InvalidTransitionError(task_name, task.status, target)
        task.status = target
        return task

    def get_run(self, run_id: str) -> RunRecord:
        """A copy of run ``run_id``.

        Raises:
            UnknownTaskError: no such run (a ``KeyError``; "did you mean ...").
        """
        with self._lock:
            return _copy(self._run(run_id))

    def mark_running(self, run_id: str, task_name: str) -> None:
        """PENDING → RUNNING; ``started_at`` = now, ``attempt`` += 1."""
        with self._lock:
            task = self._move(run_id, task_name, "RUNNING")
            task.started_at = time.time()
            task.attempt += 1

    def mark_success(self, run_id: str, task_name: str, result: object) -> None:
        """RUNNING → SUCCESS with ``result``; ``finished_at`` = now."""
        with self._lock:
            task = self._move(run_id, task_name, "SUCCESS")
            task.result = result
            task.finished_at = time.time()

    def mark_failed(self, run_id: str, task_name: str, err: str) -> None:
        """RUNNING → FAILED with ``error`` = ``err``; ``finished_at`` = now."""
        with self._lock:
            task = self._move(run_id, task_name, "FAILED")
            task.error = err
            task.finished_at = time.time()

    def mark_skipped(self, run_id: str, task_name: str, reason: str) -> None:
        """PENDING → SKIPPED with ``error`` = ``reason``; ``finished_at`` = now."""
        with self._lock:
            task = self._move(run_id, task_name, "SKIPPED")
            task.error = reason
            task.finished_at = time.time()

    def mark_retry(self, run_id: str, task_name: str) -> None:
        """FAILED → PENDING for another attempt; ``error`` and ``finished_at`` cleared."""
        with self._lock:
            task = self._move(run_id, task_name, "PENDING")
            task.error = None
            task.finished_at = None

    def clear_result(self, run_id: str, task_name: str) -> None:
        """Drop the stored result of ``task_name`` (its status stays)."""
        with self._lock:
            self._task(run_id, task_name).result = None

    def finalize_run_if_done(self, run_id: str) -> None:
        """Set ``finished_at`` once every task is SUCCESS, FAILED or SKIPPED."""
        with self._lock:
            run = self._run(run_id)
            if all(t.status in TERMINAL for t in run.tasks.values()):
                run.finished_at = time.time()


StateStore = InMemoryStateStore
"""flowrun's name for its in-memory store."""
