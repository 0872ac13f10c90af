"""The adapter from flowplan's event stream to flowrun's hooks and log lines.

Place in the data flow: façade (flowrun's API over plan → aexecute → store). One
:class:`EngineHook` per run is handed to :func:`flowplan.aexecute` as an ordinary
:class:`flowplan.hooks.Hook`. It translates each :mod:`flowplan.events` value into the matching
flowrun event (``_events.py``), calls every user ``RunHook`` (one raising hook never stops the
others nor the run; the error is logged), and writes flowrun's log lines:

* INFO: DAG start/finish, task success, retries, skips;
* WARNING: task failures, timeouts;
* DEBUG: task launch details, reused tasks, released results, tracebacks.

flowrun has no "cancelled": a task cancelled because the run stopped is reported as skipped.
``on_task_failure`` fires once per task, when it has failed for good; each failed attempt that
is retried fires ``on_task_retry`` (with that attempt's error) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskInDoubt,
    TaskReleased,
    TaskRetrying,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
)
from flowplan.graph import TaskGraph

from ._events import (
    DagEndEvent,
    DagStartEvent,
    RunHook,
    TaskFailureEvent,
    TaskRetryEvent,
    TaskSkipEvent,
    TaskStartEvent,
    TaskSuccessEvent,
)

__all__ = ["EngineHook"]

_FlowrunEvent = (
    DagStartEvent
    | DagEndEvent
    | TaskStartEvent
    | TaskSuccessEvent
    | TaskFailureEvent
    | TaskRetryEvent
    | TaskSkipEvent
)


class EngineHook:
    """Translate one run's flowplan events into flowrun hook calls and log lines.

    Args:
        dag_name: the DAG the run belongs to (carried by every flowrun event).
        graph: the run's graph (for attempt budgets in log lines).
        hooks: the user's ``RunHook`` objects (any object with some ``on_*`` methods works).
        logger: where log lines and hook errors go.
    """

    def __init__(
        self,
        dag_name: str,
        graph: TaskGraph,
        hooks: Sequence[RunHook],
        logger: logging.Logger,
    ) -> None:
        self.dag_name = dag_name
        self.graph = graph
        self.hooks = tuple(hooks)
        self.log = logger

    def wanted_events(self) -> tuple[type[Event], ...] | None:
        """The events this run's hooks and log lines need (``None``: all): with no user
        hook, only those the logger would write a line for (asked once, at the run's start)."""
        log = self.log
        if self.hooks or log.isEnabledFor(logging.DEBUG):
            return None
        wanted: list[type[Event]] = []
        if log.isEnabledFor(logging.INFO):
            wanted += [RunStarted, RunFinished, TaskSucceeded, TaskRetrying]
            wanted += [TaskSkipped, TaskCancelled]
        if log.isEnabledFor(logging.WARNING):
            wanted += [TaskFailed, TaskInDoubt, TaskTimedOut]
        return tuple(wanted)

    def on_event(self, event: Event) -> None:
        """Log ``event`` and deliver its flowrun translation to every hook."""
        translated = self._translate(event)
        if translated is None:
            return
        method, flowrun_event = translated
        for hook in self.hooks:
            callback = getattr(hook, method, None)
            if callback is None:
                continue
            try:
                callback(flowrun_event)
            except Exception:
                self.log.exception(
                    "Hook %r raised in %s (DAG %r, run %s); the run continues",
                    hook,
                    method,
                    self.dag_name,
                    event.run_id,
                )

    def _max_attempts(self, task: str) -> int:
        spec = self.graph.specs.get(task)
        return spec.retry.max_attempts if spec is not None else 1

    def _translate(self, event: Event) -> tuple[str, _FlowrunEvent] | None:
        dag, log = self.dag_name, self.log
        run_id = event.run_id
        if isinstance(event, RunStarted):
            log.info(
                "Starting DAG %r run %s: %d task(s) to run, %d reused",
                dag,
                run_id,
                len(event.pending),
                len(event.reused),
            )
            return "on_dag_start", DagStartEvent(
                run_id=run_id,
                dag_name=dag,
                timestamp=event.time,
                tasks=event.pending,
                reused=event.reused,
            )
        if isinstance(event, RunFinished):
            status = "SUCCESS" if event.status == "succeeded" else "FAILED"
            counts = ", ".join(f"{n} {word}" for word, n in event.counts) or "no tasks"
            log.info(
                "Finished DAG %r run %s: %s (%s) in %.1f ms",
                dag,
                run_id,
                status,
                counts,
                event.duration_ms,
            )
            return "on_dag_end", DagEndEvent(
                run_id=run_id,
                dag_name=dag,
                timestamp=event.time,
                status=status,
                duration_s=event.duration_ms / 1000,
            )
        if isinstance(event, TaskStarted):
            if log.isEnabledFor(logging.DEBUG):  # every task start: format only when shown
                spec = self.graph.specs.get(event.task)
                log.debug(
                    "Launching task %r attempt %d/%d (%s, timeout %s) run_id=%s",
                    event.task,
                    event.attempt,
                    spec.retry.max_attempts if spec is not None else 1,
                    "async" if spec is not None and spec.is_async else "sync",
                    f"{spec.timeout_s:g}s" if spec is not None and spec.timeout_s else "none",
                    run_id,
                )
            return "on_task_start", TaskStartEvent(
                run_id=run_id,
                dag_name=dag,
                task_name=event.task,
                attempt=event.attempt,
                timestamp=event.time,
            )
        if isinstance(event, TaskSucceeded):
            log.info(
                "Task %r succeeded on attempt %d in %.1f ms run_id=%s",
                event.task,
                event.attempt,
                event.duration_ms,
                run_id,
            )
            return "on_task_success", TaskSuccessEvent(
                run_id=run_id,
                dag_name=dag,
                task_name=event.task,
                attempt=event.attempt,
                timestamp=event.time,
                duration_s=event.duration_ms / 1000,
                result=event.value,
            )
        if isinstance(event, TaskRetrying):
            budget = self._max_attempts(event.task)
            log.info(
                "Scheduling retry for task %r: attempt %d/%d failed (%s); attempt %d in %.3gs "
                "run_id=%s",
                event.task,
                event.attempt,
                budget,
                event.error,
                event.attempt + 1,
                event.delay_s,
                run_id,
            )
            if event.error.traceback:
                log.debug(
                    "Traceback of task %r attempt %d:\n%s",
                    event.task,
                    event.attempt,
                    event.error.traceback,
                )
            return "on_task_retry", TaskRetryEvent(
                run_id=run_id,
                dag_name=dag,
                task_name=event.task,
                attempt=event.attempt,
                timestamp=event.time,
                next_attempt=event.attempt + 1,
                max_attempts=budget,
                error=str(event.error),
                delay_s=event.delay_s,
            )
        if isinstance(event, TaskFailed):
            log.warning(
                "Task %r failed on attempt %d/%d: %s run_id=%s",
                event.task,
                event.attempt,
                self._max_attempts(event.task),
                event.reason if event.error.kind != "error" else event.error,
                run_id,
            )
            if event.error.traceback:
                log.debug("Traceback of task %r:\n%s", event.task, event.error.traceback)
            return "on_task_failure", TaskFailureEvent(
                run_id=run_id,
                dag_name=dag,
                task_name=event.task,
                attempt=event.attempt,
                timestamp=event.time,
                error=str(event.error),
                duration_s=event.duration_ms / 1000,
                traceback=event.error.traceback,
            )
        if isinstance(event, TaskInDoubt):  # flowrun has no such state: reported as a failure
            log.warning("Task %r is in doubt: %s run_id=%s", event.task, event.reason, run_id)
            return "on_task_failure", TaskFailureEvent(
                run_id=run_id,
                dag_name=dag,
                task_name=event.task,
                attempt=event.attempt,
                timestamp=event.time,
                error=f"in doubt: {event.reason}",
                duration_s=0.0,
                traceback="",
            )
        if isinstance(event, TaskSkipped | TaskCancelled):
            log.info("Skipping task %r: %s run_id=%s", event.task, event.reason, run_id)
            return "on_task_skip", TaskSkipEvent(
                run_id=run_id,
                dag_name=dag,
                task_name=event.task,
                timestamp=event.time,
                reason=event.reason,
                root_cause=event.root_cause,
            )
        if isinstance(event, TaskTimedOut):
            log.warning(
                "Task %r attempt %d timed out after %gs run_id=%s",
                event.task,
                event.attempt,
                event.timeout_s,
                run_id,
            )
        elif isinstance(event, TaskReused):
            log.debug("Reusing task %r from an earlier run run_id=%s", event.task, run_id)
        elif isinstance(event, TaskReleased):
            log.debug(
                "Released the result of task %r (retain_result=False) run_id=%s", event.task, run_id
            )
        return None
