"""flowrun's hook events and the ``RunHook`` base class, as frozen values.

Place in the data flow: façade (flowrun's API over plan → aexecute → store). The interpreter
emits one stream of :mod:`flowplan.events`; the engine's adapter (``_hooks.py``) translates it
into these events and calls the matching ``RunHook`` method. All events are keyword-only,
frozen attrs classes carrying ``run_id``, ``dag_name`` and ``timestamp`` (epoch seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = [
    "DagEndEvent",
    "DagStartEvent",
    "RunHook",
    "TaskFailureEvent",
    "TaskRetryEvent",
    "TaskSkipEvent",
    "TaskStartEvent",
    "TaskSuccessEvent",
    "fn_hook",
]


@attrs.frozen(kw_only=True)
class DagStartEvent:
    """A DAG run started: ``tasks`` will run, ``reused`` succeeded in the resumed run."""

    run_id: str
    dag_name: str
    timestamp: float
    tasks: tuple[str, ...] = ()
    reused: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class DagEndEvent:
    """A DAG run finished; ``status`` is ``"SUCCESS"`` or ``"FAILED"``."""

    run_id: str
    dag_name: str
    timestamp: float
    status: str
    duration_s: float = 0.0


@attrs.frozen(kw_only=True)
class TaskStartEvent:
    """An attempt of a task started (``attempt`` is 1-based)."""

    run_id: str
    dag_name: str
    task_name: str
    attempt: int
    timestamp: float


@attrs.frozen(kw_only=True)
class TaskSuccessEvent:
    """A task succeeded with ``result``."""

    run_id: str
    dag_name: str
    task_name: str
    attempt: int
    timestamp: float
    duration_s: float = 0.0
    result: Any = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class TaskFailureEvent:
    """A task failed for good (its retries, if any, are exhausted).

    ``error`` is the text ``"ValueError: boom"``; ``traceback`` the formatted traceback.
    """

    run_id: str
    dag_name: str
    task_name: str
    attempt: int
    timestamp: float
    error: str
    duration_s: float = 0.0
    traceback: str = attrs.field(default="", repr=False)


@attrs.frozen(kw_only=True)
class TaskRetryEvent:
    """Attempt ``attempt`` failed with ``error``; ``next_attempt`` follows after ``delay_s``."""

    run_id: str
    dag_name: str
    task_name: str
    attempt: int
    timestamp: float
    next_attempt: int
    max_attempts: int
    error: str
    delay_s: float = 0.0


@attrs.frozen(kw_only=True)
class TaskSkipEvent:
    """A task will not run: an upstream task failed (or its ``when=`` gate said no).

    ``root_cause`` names the task whose failure or gate caused the skip.
    """

    run_id: str
    dag_name: str
    task_name: str
    timestamp: float
    reason: str
    root_cause: str | None = None


class RunHook:
    """Base class for lifecycle hooks: override the methods you need; the rest do nothing.

    Hooks run on the event loop's thread, between scheduling steps: keep them fast and hand
    slow work (HTTP alerts, metric pushes) to a thread or task. A hook that raises is logged
    through the engine's logger and never breaks a run.

    >>> class Alert(RunHook):
    ...     def on_task_failure(self, event: TaskFailureEvent) -> None:
    ...         print(f"ALERT {event.task_name}: {event.error}")
    """

    def on_dag_start(self, event: DagStartEvent) -> None:
        """A DAG run started."""

    def on_dag_end(self, event: DagEndEvent) -> None:
        """A DAG run finished (every task is terminal; the run report is final)."""

    def on_task_start(self, event: TaskStartEvent) -> None:
        """An attempt of a task started."""

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        """A task succeeded."""

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        """A task failed for good."""

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        """An attempt failed and the task will be retried."""

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        """A task was skipped."""


class _FnHook(RunHook):
    """A :class:`RunHook` whose methods call the functions given to :func:`fn_hook`."""

    def __init__(self, callbacks: dict[str, Callable[[Any], object]]) -> None:
        self._callbacks = callbacks

    def __repr__(self) -> str:
        return f"fn_hook({', '.join(sorted(self._callbacks))})"

    def _call(self, method: str, event: object) -> None:
        callback = self._callbacks.get(method)
        if callback is not None:
            callback(event)

    def on_dag_start(self, event: DagStartEvent) -> None:
        self._call("on_dag_start", event)

    def on_dag_end(self, event: DagEndEvent) -> None:
        self._call("on_dag_end", event)

    def on_task_start(self, event: TaskStartEvent) -> None:
        self._call("on_task_start", event)

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        self._call("on_task_success", event)

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        self._call("on_task_failure", event)

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        self._call("on_task_retry", event)

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        self._call("on_task_skip", event)


def fn_hook(
    *,
    on_dag_start: Callable[[DagStartEvent], object] | None = None,
    on_dag_end: Callable[[DagEndEvent], object] | None = None,
    on_task_start: Callable[[TaskStartEvent], object] | None = None,
    on_task_success: Callable[[TaskSuccessEvent], object] | None = None,
    on_task_failure: Callable[[TaskFailureEvent], object] | None = None,
    on_task_retry: Callable[[TaskRetryEvent], object] | None = None,
    on_task_skip: Callable[[TaskSkipEvent], object] | None = None,
) -> RunHook:
    """A :class:`RunHook` from plain functions, one per event you care about.

    Returns:
        A hook whose other methods do nothing.

    Raises:
        TypeError: a callback is not callable.

    >>> hook = fn_hook(on_task_failure=lambda e: print(f"FAIL {e.task_name}: {e.error}"))
    """
    given: dict[str, object] = {
        "on_dag_start": on_dag_start,
        "on_dag_end": on_dag_end,
        "on_task_start": on_task_start,
        "on_task_success": on_task_success,
        "on_task_failure": on_task_failure,
        "on_task_retry": on_task_retry,
        "on_task_skip": on_task_skip,
    }
    callbacks: dict[str, Callable[[Any], object]] = {}
    for method, callback in given.items():
        if callback is None:
            continue
        if not callable(callback):
            raise TypeError(
                f"fn_hook({method}=...) expects a function taking the event, got {callback!r} "
                f"({type(callback).__name__}); e.g. {method}=lambda e: print(e)"
            )
        callbacks[method] = callback
    return _FnHook(callbacks)
