"""Hooks: observers of the event stream, and structlog rendering of it.

Place in the data flow: interpreter → events → **hooks**. A hook is anything with an
``on_event(event)`` method — no base class required. A hook that raises never breaks a run: the
error is logged once per hook and run through the stdlib ``logging`` logger ``"flowplan"``.
The library never calls ``structlog.configure``; :class:`StructlogHook` logs through whatever
logger it is given (default: ``structlog.get_logger("flowplan")``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import structlog

from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskReleased,
    TaskRetrying,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
)

__all__ = ["CallbackHook", "Hook", "HookDispatcher", "RecordingHook", "StructlogHook"]

_log = logging.getLogger("flowplan")


@runtime_checkable
class Hook(Protocol):
    """Anything that wants to see a run's events."""

    def on_event(self, event: Event) -> None:
        """Observe one event. Must not block for long: it runs on the scheduling thread."""


class CallbackHook:
    """A hook from a plain function: ``CallbackHook(print)``."""

    def __init__(self, callback: Callable[[Event], object]) -> None:
        self._callback = callback

    def on_event(self, event: Event) -> None:
        """Call the callback with ``event``."""
        self._callback(event)


class RecordingHook:
    """A hook that keeps every event in ``events`` (tests, replays, simulations)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        """Append ``event``."""
        self.events.append(event)


class HookDispatcher:
    """Deliver events to hooks; a raising hook is reported once and never breaks the run."""

    __slots__ = ("_failed", "hooks")

    def __init__(self, hooks: Iterable[Hook]) -> None:
        self.hooks: tuple[Hook, ...] = tuple(hooks)
        self._failed: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def __call__(self, event: Event) -> None:
        for hook in self.hooks:
            try:
                hook.on_event(event)
            except Exception:
                if id(hook) not in self._failed:
                    self._failed.add(id(hook))
                    _log.exception(
                        "flowplan hook %r raised while handling %s; the run continues and "
                        "further errors of this hook in this run are not reported",
                        hook,
                        type(event).__name__,
                    )


_NAMES: dict[type, str] = {
    RunStarted: "run_started",
    RunFinished: "run_finished",
    TaskReused: "task_reused",
    TaskStarted: "task_started",
    TaskSucceeded: "task_succeeded",
    TaskTimedOut: "task_timed_out",
    TaskRetrying: "task_retrying",
    TaskFailed: "task_failed",
    TaskSkipped: "task_skipped",
    TaskCancelled: "task_cancelled",
    TaskReleased: "task_released",
}
_WARNINGS = (TaskFailed, TaskTimedOut, TaskRetrying)


def _fields(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"run_id": event.run_id}
    if isinstance(event, RunStarted):
        out["pending"] = len(event.pending)
        out["reused"] = len(event.reused)
        return out
    if isinstance(event, RunFinished):
        out["status"] = event.status
        out["duration_ms"] = round(event.duration_ms, 3)
        out.update(event.counts)
        return out
    out["task"] = event.task
    if isinstance(event, TaskStarted | TaskSucceeded | TaskTimedOut | TaskRetrying | TaskFailed):
        out["attempt"] = event.attempt
    if isinstance(event, TaskSucceeded | TaskRetrying | TaskFailed):
        out["duration_ms"] = round(event.duration_ms, 3)
    if isinstance(event, TaskRetrying | TaskFailed):
        out["error"] = str(event.error)
    if isinstance(event, TaskRetrying):
        out["delay_s"] = event.delay_s
    if isinstance(event, TaskTimedOut):
        out["timeout_s"] = event.timeout_s
    if isinstance(event, TaskFailed | TaskSkipped | TaskCancelled):
        out["reason"] = event.reason
    if isinstance(event, TaskSkipped | TaskCancelled):
        out["root_cause"] = event.root_cause
    if isinstance(event, TaskReused):
        out["cached"] = event.record.cached
        out["overridden"] = event.record.overridden
    return out


class _Stderr:
    """A file that is whatever ``sys.stderr`` is at write time (test capture, redirection)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class StructlogHook:
    """Render events as structlog key-value events with past-tense snake_case names.

    Fields: ``run_id``, ``task``, ``attempt``, ``duration_ms`` and event-specific ones
    (``error``, ``reason``, ``root_cause``, ``delay_s`` …). Failures, timeouts and retries log
    at warning level, everything else at info.

    Without an explicit ``logger`` the hook follows the application's structlog configuration
    (``structlog.get_logger("flowplan")``) once structlog is configured; before that it writes
    structlog's default console rendering to **stderr**, so a program's stdout stays its own.
    The library never calls ``structlog.configure``.

    Args:
        logger: any structlog-style logger.
        exclude: event names not to log, e.g. ``("task_started",)``.
    """

    def __init__(self, logger: Any = None, *, exclude: Sequence[str] = ()) -> None:
        self._explicit: Any = logger
        self._configured: Any = structlog.get_logger("flowplan")
        self._stderr: Any = structlog.wrap_logger(
            structlog.PrintLogger(_Stderr()),  # type: ignore[arg-type]
            processors=structlog.get_config()["processors"],
        )
        self._exclude = frozenset(exclude)

    @property
    def logger(self) -> Any:
        """The logger events go to now."""
        if self._explicit is not None:
            return self._explicit
        return self._configured if structlog.is_configured() else self._stderr

    def on_event(self, event: Event) -> None:
        """Log ``event``."""
        name = _NAMES[type(event)]
        if name in self._exclude:
            return
        if isinstance(event, _WARNINGS):
            self.logger.warning(name, **_fields(event))
        else:
            self.logger.info(name, **_fields(event))
