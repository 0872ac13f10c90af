"""Hooks: observers of the event stream, and structlog rendering of it.

Place in the data flow: interpreter → events → **hooks**. A hook is anything with an
``on_event(event)`` method — no base class required. A hook that raises never breaks a run: the
error is logged once per hook and run through the stdlib ``logging`` logger ``"flowplan"``.
The library never calls ``structlog.configure``; :class:`StructlogHook` logs through whatever
logger it is given (default: ``structlog.get_logger("flowplan")``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from flowplan._fanout import split_element
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
from flowplan.snapshot import ErrorInfo

__all__ = [
    "AttemptScope",
    "CallbackHook",
    "Hook",
    "HookDispatcher",
    "RecordingHook",
    "StructlogHook",
    "WantsEvents",
]

_log = logging.getLogger("flowplan")


@runtime_checkable
class Hook(Protocol):
    """Anything that wants to see a run's events."""

    def on_event(self, event: Event) -> None:
        """Observe one event. Must not block for long: it runs on the scheduling thread."""


@runtime_checkable
class AttemptScope(Protocol):
    """A hook that also wraps each attempt's body (an optional capability of a hook).

    The interpreter enters ``attempt_scope(run_id, task, attempt)`` in the thread or task that
    runs the body, around the body only — e.g. :class:`~flowplan.observe.OpenTelemetryHook`
    makes the attempt's span current there. It is called from worker threads, concurrently:
    it must be thread-safe, and cheap.
    """

    def attempt_scope(
        self, run_id: str, task: str, attempt: int
    ) -> contextlib.AbstractContextManager[object]:
        """A context manager entered around one attempt's body."""
        ...  # pragma: no cover - a protocol


@runtime_checkable
class WantsEvents(Protocol):
    """A hook that says which events it wants (an optional capability of a hook).

    ``wanted_events()`` is asked once per run, when the run starts: the event types the hook
    wants (a union such as :data:`~flowplan.events.TaskEvent` stands for its members), or
    ``None`` for every event. The hook is then given only those, and the interpreter builds
    an event only when some hook wants it: with no hook (and no store) wanting a task's
    ``TaskStarted`` or ``TaskSucceeded``, plain tasks run on the same fast path as a run with
    no hooks. :class:`StructlogHook` wants the events its logger would not filter out. A hook
    without this method wants every event; one whose method raises, too (reported once).
    """

    def wanted_events(self) -> Iterable[type[Event]] | None:
        """The event types this hook wants for the run about to start (``None``: all)."""
        ...  # pragma: no cover - a protocol


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

    __slots__ = ("_failed", "_routes", "_wants", "hooks", "scopes")

    def __init__(self, hooks: Iterable[Hook]) -> None:
        self.hooks: tuple[Hook, ...] = tuple(hooks)
        self._failed: set[int] = set()
        self.scopes: tuple[AttemptScope, ...] = tuple(
            hook for hook in self.hooks if isinstance(hook, AttemptScope)
        )
        """The hooks that wrap each attempt's body (usually none)."""
        # What each hook wants (None: everything), asked once, now; event type → the hooks
        # wanting it, filled as types are first seen. None (no lookup) when all want all.
        self._wants = [(hook, self._wanted(hook)) for hook in self.hooks]
        self._routes: dict[type, tuple[Hook, ...]] | None = None
        if any(wanted is not None for _, wanted in self._wants):
            self._routes = {}
            self.hooks = tuple(hook for hook, wanted in self._wants if wanted != ())

    def _wanted(self, hook: Hook) -> tuple[type, ...] | None:
        if not isinstance(hook, WantsEvents):
            return None
        try:
            wanted = hook.wanted_events()
            if wanted is None:
                return None
            kinds = tuple(  # a union (e.g. TaskEvent) stands for its members
                member for kind in wanted for member in (typing.get_args(kind) or (kind,))
            )
            for kind in kinds:
                if not (isinstance(kind, type) and issubclass(kind, Event)):
                    raise TypeError(f"wanted_events() must give event types, got {kind!r}")
        except Exception:
            _log.exception(
                "flowplan hook %r raised in wanted_events(); it is given every event of this run",
                hook,
            )
            return None
        return kinds

    def wants(self, kind: type[Event]) -> bool:
        """Whether some hook wants events of type ``kind`` (decided when the run started)."""
        return bool(self._route(kind))

    def _route(self, kind: type) -> tuple[Hook, ...]:
        routes = self._routes
        if routes is None:
            return self.hooks
        hooks = routes.get(kind)
        if hooks is None:
            hooks = routes[kind] = tuple(
                hook for hook, wanted in self._wants if wanted is None or kind in wanted
            )
        return hooks

    @contextlib.contextmanager
    def attempt_scope(self, run_id: str, task: str, attempt: int) -> Iterator[None]:
        """Enter every hook's scope around one attempt's body; a scope that raises on entry is
        reported once and skipped (it never fails the task)."""
        with contextlib.ExitStack() as stack:
            for hook in self.scopes:
                try:
                    stack.enter_context(hook.attempt_scope(run_id, task, attempt))
                except Exception:
                    if id(hook) not in self._failed:
                        self._failed.add(id(hook))
                        _log.exception(
                            "flowplan hook %r raised entering the scope of task %r; the run "
                            "continues",
                            hook,
                            task,
                        )
            yield

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def __call__(self, event: Event) -> None:
        for hook in self.hooks if self._routes is None else self._route(type(event)):
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


def _run_started(event: Any) -> dict[str, Any]:
    return {"run_id": event.run_id, "pending": len(event.pending), "reused": len(event.reused)}


def _run_finished(event: Any) -> dict[str, Any]:
    out = {
        "run_id": event.run_id,
        "status": event.status,
        "duration_ms": round(event.duration_ms, 3),
    }
    out.update(event.counts)
    return out


def _task(event: Any) -> dict[str, Any]:
    """``run_id`` and ``task``, plus ``parent_task`` and ``element_index`` for a fan-out
    element (``count_rows[2]``), so its logs can be grouped by the task that fanned out."""
    name = event.task
    out = {"run_id": event.run_id, "task": name}
    if name.endswith("]"):
        element = split_element(name)
        if element is not None:
            out["parent_task"], out["element_index"] = element
    return out


def _error_type(error: ErrorInfo) -> str:
    """``ValueError`` for a builtin, ``pkg.module.Error`` otherwise (as tracebacks print it)."""
    return error.type.removeprefix("builtins.")


def _task_reused(event: Any) -> dict[str, Any]:
    record = event.record
    out = _task(event)
    out["cached"] = record.cached
    out["overridden"] = record.overridden
    if event.code_changed is not None:
        out["code_changed"] = event.code_changed
    return out


def _reused_level(event: Any) -> str:
    return "info" if event.code_changed is None else "warning"


def _task_started(event: Any) -> dict[str, Any]:
    out = _task(event)
    out["attempt"] = event.attempt
    return out


def _task_succeeded(event: Any) -> dict[str, Any]:
    out = _task(event)
    out["attempt"] = event.attempt
    out["duration_ms"] = round(event.duration_ms, 3)
    return out


def _task_timed_out(event: Any) -> dict[str, Any]:
    out = _task(event)
    out["attempt"] = event.attempt
    out["timeout_s"] = event.timeout_s
    return out


def _task_retrying(event: Any) -> dict[str, Any]:
    out = _task(event)
    out["attempt"] = event.attempt
    out["duration_ms"] = round(event.duration_ms, 3)
    out["error"] = str(event.error)
    out["error_type"] = _error_type(event.error)
    out["delay_s"] = event.delay_s
    return out


def _task_failed(event: Any) -> dict[str, Any]:
    error: ErrorInfo = event.error
    out = _task(event)
    out["attempt"] = event.attempt
    out["duration_ms"] = round(event.duration_ms, 3)
    out["error"] = str(error)
    out["error_type"] = _error_type(error)
    out["error_kind"] = error.kind
    out["reason"] = event.reason
    # structlog's convention: ``exc_info`` holds the exception; format_exc_info and
    # dict_tracebacks render it. Without a live traceback, the recorded text is the rendering.
    exc = error.exception
    if exc is not None and exc.__traceback__ is not None:
        out["exc_info"] = exc
    elif error.traceback:
        out["exception"] = error.traceback
    return out


def _task_in_doubt(event: Any) -> dict[str, Any]:
    out = _task(event)
    out["attempt"] = event.attempt
    out["reason"] = event.reason
    return out


def _task_stopped(event: Any) -> dict[str, Any]:  # skipped or cancelled
    out = _task(event)
    out["reason"] = event.reason
    out["root_cause"] = event.root_cause
    return out


def _task_released(event: Any) -> dict[str, Any]:
    return _task(event)


def _finished_level(event: Any) -> str:
    return "error" if event.status == "failed" else "info"


_Render = tuple[str, str | Callable[[Any], str], Callable[[Any], dict[str, Any]]]
_RENDER: dict[type, _Render] = {
    # event type → (event name, its level or a function of the event giving it, its fields):
    # one lookup per event
    RunStarted: ("run_started", "info", _run_started),
    RunFinished: ("run_finished", _finished_level, _run_finished),
    TaskReused: ("task_reused", _reused_level, _task_reused),  # warning: its code changed
    TaskStarted: ("task_started", "info", _task_started),
    TaskSucceeded: ("task_succeeded", "info", _task_succeeded),
    TaskTimedOut: ("task_timed_out", "warning", _task_timed_out),  # a retry or failure follows
    TaskRetrying: ("task_retrying", "warning", _task_retrying),  # it will be tried again
    TaskFailed: ("task_failed", "error", _task_failed),  # for good
    TaskInDoubt: ("task_in_doubt", "warning", _task_in_doubt),
    TaskSkipped: ("task_skipped", "info", _task_stopped),
    TaskCancelled: ("task_cancelled", "info", _task_stopped),
    TaskReleased: ("task_released", "info", _task_released),
}


_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# The levels an event whose level depends on the event may log at.
_MAY_LOG_AT: dict[type, tuple[str, ...]] = {
    RunFinished: ("info", "error"),
    TaskReused: ("info", "warning"),
}


def _enabled_levels(logger: Any) -> dict[str, bool] | None:
    """Which of our levels ``logger`` lets through, or ``None`` when it cannot say.

    Only a method its class defines counts (a logger answering any attribute, such as
    ``structlog.testing.CapturingLogger``, would record the question as a log call); a lazy
    proxy (``structlog.get_logger()``) is asked through the logger it binds to now.
    """
    try:
        kind = type(logger)
        if getattr(kind, "is_enabled_for", None) is None and callable(getattr(kind, "bind", None)):
            logger = logger.bind()
            kind = type(logger)
        check = getattr(kind, "is_enabled_for", None)
        if not callable(check):
            return None
        enabled = {name: check(logger, number) for name, number in _LEVELS.items()}
    except Exception:  # a logger that cannot answer is given every event
        return None
    if not all(isinstance(answer, bool) for answer in enabled.values()):
        return None
    return enabled


class _Stderr:
    """A file that is whatever ``sys.stderr`` is at write time (test capture, redirection)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class StructlogHook:
    """Render events as structlog key-value events with past-tense snake_case names.

    Fields: ``run_id``, ``task``, ``attempt``, ``duration_ms`` and event-specific ones
    (``error``, ``reason``, ``root_cause``, ``delay_s`` …); a fan-out element's events also
    carry ``parent_task`` and ``element_index``.

    Levels, so alerts can key on them: a task's final failure (``task_failed``) and a failed
    run (``run_finished`` with ``status="failed"``) log at **error**; what is still being
    retried or needs a decision (``task_retrying``, ``task_timed_out``, ``task_in_doubt``), and
    a ``task_reused`` whose code changed since it succeeded (field ``code_changed``), at
    warning; everything else at info. ``task_failed`` carries ``error`` (``"ValueError: bad
    row"``), ``error_type`` (``"ValueError"``; ``"pkg.module.Error"`` outside builtins),
    ``error_kind`` (``"error"``, ``"timeout"``, ``"validate"`` … see
    :class:`~flowplan.snapshot.ErrorInfo`), ``reason`` and, following structlog's convention,
    ``exc_info`` (the exception), which ``structlog.processors.format_exc_info`` or
    ``dict_tracebacks`` render as the traceback; when no live traceback exists (an error
    rebuilt from a record), the recorded traceback text is given as ``exception``.
    ``task_retrying`` carries ``error`` and ``error_type`` too. ``run_finished`` carries the
    run's task counts (``succeeded``, ``reused``, ``failed`` …).

    Without an explicit ``logger`` the hook follows the application's structlog configuration
    (``structlog.get_logger("flowplan")``) once structlog is configured; before that it writes
    structlog's default console rendering to **stderr**, so a program's stdout stays its own.
    The library never calls ``structlog.configure``.

    Args:
        logger: any structlog-style logger.
        exclude: event names not to log, e.g. ``("task_started",)``.
    """

    def __init__(self, logger: Any = None, *, exclude: Sequence[str] = ()) -> None:
        import structlog  # on first use: it imports rich when installed

        self._explicit: Any = logger
        self._configured: Any = structlog.get_logger("flowplan")
        self._stderr: Any = structlog.wrap_logger(
            structlog.PrintLogger(_Stderr()),  # type: ignore[arg-type]
            processors=structlog.get_config()["processors"],
        )
        self._exclude = frozenset(exclude)
        # The render table minus excluded events (None), built once: one dict lookup per event.
        self._render: dict[type, _Render | None] = {
            kind: None if render[0] in self._exclude else render for kind, render in _RENDER.items()
        }

    @property
    def logger(self) -> Any:
        """The logger events go to now."""
        if self._explicit is not None:
            return self._explicit
        import structlog

        return self._configured if structlog.is_configured() else self._stderr

    def wanted_events(self) -> frozenset[type[Event]] | None:
        """The events not excluded whose level the logger lets through now (``None``: all).

        Asked once per run, at its start: a logger answering ``is_enabled_for(level)`` (as
        structlog's filtering loggers do, e.g. ``structlog.make_filtering_bound_logger``)
        is asked for each level; ``task_started`` and ``task_succeeded`` are info, so under a
        logger that filters out INFO the run's plain tasks keep the no-hook fast path, and
        warnings and errors are still logged. A logger without that method gets every event
        not excluded (a filter it applies itself then drops them one by one).
        """
        enabled = _enabled_levels(self.logger)
        if enabled is None:
            if not self._exclude:
                return None
            return frozenset(kind for kind, render in self._render.items() if render is not None)
        wanted: set[type[Event]] = set()
        for kind, render in self._render.items():
            if render is None:
                continue
            level = render[1]
            levels = (level,) if isinstance(level, str) else _MAY_LOG_AT.get(kind, tuple(_LEVELS))
            if any(enabled[name] for name in levels):
                wanted.add(kind)
        return frozenset(wanted)

    def on_event(self, event: Event) -> None:
        """Log ``event``."""
        render = self._render[type(event)]
        if render is None:
            return
        name, level, fields = render
        logger = self._explicit
        if logger is None:
            import structlog

            logger = self._configured if structlog.is_configured() else self._stderr
        if not isinstance(level, str):
            level = level(event)
        getattr(logger, level)(name, **fields(event))
