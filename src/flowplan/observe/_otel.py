"""OpenTelemetry: a run as a trace — a span per run, a child span per task attempt — plus metrics.

Place in the data flow: a hook, at the end (``interpreter`` → events → **hooks**). It turns the
typed event stream into spans and measurements, and the interpreter enters its
:meth:`OpenTelemetryHook.attempt_scope` around each attempt's body, so the attempt's span is the
current span inside the task (a user's own spans and instrumented calls nest under it). For
attempts in child processes the span's context travels in the payload as W3C trace-context
headers (``flowplan._tracecontext``). Attribute names
follow OpenTelemetry's CI/CD semantic conventions where they fit. ``opentelemetry-api`` (the
``flowplan[otel]`` extra) is imported only when a hook is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flowplan.errors import MissingExtraError
from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskInDoubt,
    TaskRetrying,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
)
from flowplan.snapshot import ErrorInfo

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, SpanContext, TracerProvider

__all__ = ["OpenTelemetryHook"]

_SCOPE = "flowplan"
# CI/CD semantic conventions (development status in OpenTelemetry), and flowplan's own
PIPELINE_NAME = "cicd.pipeline.name"
PIPELINE_RUN_ID = "cicd.pipeline.run.id"
PIPELINE_RESULT = "cicd.pipeline.result"
TASK_NAME = "cicd.pipeline.task.name"
TASK_RUN_ID = "cicd.pipeline.task.run.id"
TASK_RUN_RESULT = "cicd.pipeline.task.run.result"
ERROR_TYPE = "error.type"


def _import_otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError(
            "OpenTelemetryHook needs opentelemetry-api; install it with "
            "pip install 'flowplan[otel]' (and an SDK, e.g. opentelemetry-sdk, to export)",
            extra="otel",
            package="opentelemetry-api",
        ) from exc
    return trace


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _run_context(run_id: str) -> SpanContext:
    """The (remote, sampled) span context every span of run ``run_id`` descends from: a pure
    function of the run id, so a resumed run can link to the run it resumes from any
    process."""
    from opentelemetry.trace import SpanContext, TraceFlags

    digest = hashlib.sha256(f"flowplan-run:{run_id}".encode(errors="surrogatepass")).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def _error_type(error: ErrorInfo) -> str:
    if error.kind == "timeout":
        return "timeout"
    return error.type.removeprefix("builtins.")


class _RunSpans:
    """One run's spans: the run's and each open attempt's."""

    __slots__ = ("attempts", "pipeline", "run", "started")

    def __init__(self, run: Span, pipeline: str, started: float) -> None:
        self.run = run
        self.pipeline = pipeline
        self.started = started
        self.attempts: dict[tuple[str, int], Span] = {}


class OpenTelemetryHook:
    """Traces and metrics of every run through OpenTelemetry (extra ``flowplan[otel]``).

    Spans: one per run (``RUN <pipeline>``, kind SERVER, attributes ``cicd.pipeline.name``,
    ``cicd.pipeline.run.id``, ``cicd.pipeline.result`` = ``success`` / ``failure``, and
    ``error.type`` on failure) with a child span per task attempt (named after the task, kind
    INTERNAL: ``cicd.pipeline.task.name``, ``cicd.pipeline.task.run.id`` =
    ``RUN_ID/TASK/ATTEMPT``, ``cicd.pipeline.task.run.result`` = ``success`` / ``failure`` /
    ``timeout``, ``flowplan.attempt``; on failure status ERROR, ``error.type`` and the
    exception recorded). Reused tasks are zero-length spans with ``flowplan.reused=true``;
    retries (``flowplan.retry``: delay, error type), timeouts, in-doubt attempts and gate
    decisions (``flowplan.task_skipped``, ``flowplan.task_cancelled``: task, reason, root
    cause) are span events. Inside a task's body the attempt's span is the current span on
    every driver; in child processes (``isolation="process"``, ``ProcessExecutor``, Dask) its
    context arrives with the payload. Every run's trace id is derived from its run id, and a
    resumed run's span links to the run it resumes (``flowplan.link=resumes``).

    Metrics (low-cardinality attributes: pipeline name, result, error type):
    ``cicd.pipeline.run.duration`` (s), ``flowplan.task.duration`` (s),
    ``flowplan.task.retries`` and ``flowplan.task.failures`` (counters).

    Args:
        tracer_provider: where spans go (default: the global provider).
        meter_provider: where measurements go (default: the global provider).
        pipeline_name: ``cicd.pipeline.name`` (default: ``"flowplan"``; the Engine's DAG name
            is a good choice).

    Raises:
        MissingExtraError: opentelemetry-api is not installed.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        pipeline_name: str = "flowplan",
    ) -> None:
        trace = _import_otel()
        from opentelemetry import metrics
        from opentelemetry.trace import Status, StatusCode

        self._status, self._code = Status, StatusCode  # read per event: imported once

        self._trace = trace
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._run_duration = meter.create_histogram(
            "cicd.pipeline.run.duration", unit="s", description="Duration of a flowplan run."
        )
        self._task_duration = meter.create_histogram(
            "flowplan.task.duration", unit="s", description="Duration of a task attempt."
        )
        self._retries = meter.create_counter(
            "flowplan.task.retries", unit="{retry}", description="Task attempts retried."
        )
        self._failures = meter.create_counter(
            "flowplan.task.failures", unit="{task}", description="Tasks that failed for good."
        )
        self.pipeline_name = pipeline_name
        self._runs: dict[str, _RunSpans] = {}
        self._lock = threading.Lock()

    # -- spans ------------------------------------------------------------------------------
    def _run(
        self, run_id: str, at: float | None = None, resumed_from: str | None = None
    ) -> _RunSpans:
        """The run's spans, starting its span on first use (under the lock)."""
        spans = self._runs.get(run_id)
        if spans is not None:
            return spans
        trace = self._trace
        from opentelemetry.trace import Link, NonRecordingSpan, SpanKind

        parent = trace.set_span_in_context(NonRecordingSpan(_run_context(run_id)))
        links = []
        if resumed_from is not None and resumed_from != "journal":
            links.append(
                Link(
                    _run_context(resumed_from),
                    {"flowplan.link": "resumes", PIPELINE_RUN_ID: resumed_from},
                )
            )
        started = time.time() if at is None else at
        span = self._tracer.start_span(
            f"RUN {self.pipeline_name}",
            context=parent,
            kind=SpanKind.SERVER,
            links=links,
            start_time=_ns(started),
            attributes={PIPELINE_NAME: self.pipeline_name, PIPELINE_RUN_ID: run_id},
        )
        spans = self._runs[run_id] = _RunSpans(span, self.pipeline_name, started)
        return spans

    def _attempt(self, run_id: str, task: str, attempt: int, at: float | None = None) -> Span:
        """The attempt's span, started on first use (by the event or by the body's scope)."""
        spans = self._run(run_id)
        span = spans.attempts.get((task, attempt))
        if span is None:
            span = self._tracer.start_span(
                task,
                context=self._trace.set_span_in_context(spans.run),
                start_time=_ns(time.time() if at is None else at),
                attributes={
                    PIPELINE_NAME: spans.pipeline,
                    PIPELINE_RUN_ID: run_id,
                    TASK_NAME: task,
                    TASK_RUN_ID: f"{run_id}/{task}/{attempt}",
                    "flowplan.attempt": attempt,
                },
            )
            spans.attempts[(task, attempt)] = span
        return span

    @contextlib.contextmanager
    def attempt_scope(self, run_id: str, task: str, attempt: int) -> Iterator[None]:
        """Make the attempt's span the current span while its body runs."""
        with self._lock:
            span = self._attempt(run_id, task, attempt)
        with self._trace.use_span(span, end_on_exit=False, record_exception=False):
            yield

    def on_event(self, event: Event) -> None:
        """Turn ``event`` into spans, span events and measurements."""
        with self._lock:
            self._handle(event)

    def _handle(self, event: Event) -> None:
        Status, StatusCode = self._status, self._code  # noqa: N806 - the classes' own names

        if isinstance(event, RunStarted):
            self._run(event.run_id, event.time, event.resumed_from)
            return
        if isinstance(event, RunFinished):
            spans = self._runs.pop(event.run_id, None)
            if spans is None:
                return
            failed = event.status != "succeeded"
            result = "failure" if failed else "success"
            spans.run.set_attribute(PIPELINE_RESULT, result)
            for name, count in event.counts:
                spans.run.set_attribute(f"flowplan.tasks.{name}", count)
            if failed:
                spans.run.set_attribute(ERROR_TYPE, event.status)
                spans.run.set_status(Status(StatusCode.ERROR, f"the run {event.status}"))
            for span in spans.attempts.values():  # never left open (e.g. an interrupted run)
                span.end(end_time=_ns(event.time))
            spans.run.end(end_time=_ns(event.time))
            self._run_duration.record(
                max(0.0, event.time - spans.started),
                {PIPELINE_NAME: spans.pipeline, PIPELINE_RESULT: result},
            )
            return
        spans = self._runs.get(event.run_id) or self._run(event.run_id, event.time)
        if isinstance(event, TaskStarted):
            self._attempt(event.run_id, event.task, event.attempt, event.time)
        elif isinstance(event, TaskSucceeded):
            span = self._attempt(event.run_id, event.task, event.attempt)
            span.set_attribute(TASK_RUN_RESULT, "success")
            self._end(spans, event.task, event.attempt, event.time, "success")
        elif isinstance(event, TaskTimedOut):
            span = self._attempt(event.run_id, event.task, event.attempt)
            span.add_event(
                "flowplan.timeout", {"flowplan.timeout_s": event.timeout_s}, _ns(event.time)
            )
            span.set_attribute(TASK_RUN_RESULT, "timeout")
        elif isinstance(event, TaskRetrying):
            span = self._attempt(event.run_id, event.task, event.attempt)
            self._error(span, event.error)
            span.add_event(
                "flowplan.retry",
                {"flowplan.delay_s": event.delay_s, ERROR_TYPE: _error_type(event.error)},
                _ns(event.time),
            )
            self._retries.add(
                1, {PIPELINE_NAME: spans.pipeline, ERROR_TYPE: _error_type(event.error)}
            )
            self._end(spans, event.task, event.attempt, event.time, "failure")
        elif isinstance(event, TaskFailed):
            if event.attempt == 0 or (event.task, event.attempt) not in spans.attempts:
                spans.run.add_event(
                    "flowplan.task_failed",
                    {TASK_NAME: event.task, "flowplan.reason": event.reason},
                    _ns(event.time),
                )
            else:
                span = self._attempt(event.run_id, event.task, event.attempt)
                self._error(span, event.error)
                self._end(spans, event.task, event.attempt, event.time, "failure")
            self._failures.add(
                1, {PIPELINE_NAME: spans.pipeline, ERROR_TYPE: _error_type(event.error)}
            )
        elif isinstance(event, TaskInDoubt):
            spans.run.add_event(
                "flowplan.task_in_doubt",
                {
                    TASK_NAME: event.task,
                    "flowplan.attempt": event.attempt,
                    "flowplan.reason": event.reason,
                },
                _ns(event.time),
            )
        elif isinstance(event, TaskReused):
            span = self._tracer.start_span(
                event.task,
                context=self._trace.set_span_in_context(spans.run),
                start_time=_ns(event.time),
                attributes={
                    PIPELINE_NAME: spans.pipeline,
                    PIPELINE_RUN_ID: event.run_id,
                    TASK_NAME: event.task,
                    TASK_RUN_RESULT: "success",
                    "flowplan.reused": True,
                    "flowplan.cached": event.record.cached,
                    "flowplan.overridden": event.record.overridden,
                },
            )
            span.end(end_time=_ns(event.time))
        elif isinstance(event, TaskSkipped | TaskCancelled):
            kind = "skipped" if isinstance(event, TaskSkipped) else "cancelled"
            spans.run.add_event(
                f"flowplan.task_{kind}",
                {
                    TASK_NAME: event.task,
                    "flowplan.reason": event.reason,
                    "flowplan.root_cause": event.root_cause or "",
                },
                _ns(event.time),
            )

    def _error(self, span: Span, error: ErrorInfo) -> None:
        Status, StatusCode = self._status, self._code  # noqa: N806 - the classes' own names

        span.set_attribute(ERROR_TYPE, _error_type(error))
        span.set_attribute(TASK_RUN_RESULT, "timeout" if error.kind == "timeout" else "failure")
        span.set_status(
            Status(StatusCode.ERROR, f"{error.type.removeprefix('builtins.')}: {error.message}")
        )
        if error.exception is not None:
            span.record_exception(error.exception)
        else:  # rebuilt from a record: the traceback as text
            span.add_event(
                "exception",
                {
                    "exception.type": error.type,
                    "exception.message": error.message,
                    "exception.stacktrace": error.traceback,
                },
            )

    def _end(self, spans: _RunSpans, task: str, attempt: int, at: float, result: str) -> None:
        span = spans.attempts.pop((task, attempt), None)
        if span is None:
            return
        start = getattr(span, "start_time", None)
        span.end(end_time=_ns(at))
        seconds = max(0.0, (_ns(at) - start) / 1e9) if isinstance(start, int) else 0.0
        self._task_duration.record(
            seconds, {PIPELINE_NAME: spans.pipeline, TASK_RUN_RESULT: result}
        )
