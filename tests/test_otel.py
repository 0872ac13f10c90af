"""OpenTelemetryHook against the SDK's in-memory exporters: spans, links, context, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import otel_helpers
from flowplan import (
    InlineExecutor,
    ProcessExecutor,
    Registry,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    aexecute,
    execute,
    plan,
    task,
)
from flowplan.observe import AttemptScope, OpenTelemetryHook


class Telemetry:
    """A tracer and a meter provider writing to memory, and a hook on them."""

    def __init__(self, pipeline: str = "nightly") -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.hook = OpenTelemetryHook(
            self.tracer_provider, self.meter_provider, pipeline_name=pipeline
        )

    def finished(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.spans.get_finished_spans())

    def run_span(self) -> ReadableSpan:
        (run,) = [s for s in self.finished() if s.kind is SpanKind.SERVER]
        return run

    def attempts(self, task: str) -> list[ReadableSpan]:
        def attempt(span: ReadableSpan) -> int:
            number = (span.attributes or {}).get("flowplan.attempt", 0)
            assert isinstance(number, int)
            return number

        return sorted((s for s in self.finished() if s.name == task), key=attempt)

    def measurements(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        out: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


def _pipeline(registry: Registry) -> TaskGraph:
    tries = {"flaky": 0}

    @task
    def extract() -> int:
        return 1

    @task(depends_on=[extract], retry=2, retry_backoff_base_ms=1)
    def flaky(extract: int) -> int:
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise ConnectionError("try again")
        return extract

    @task(depends_on=[extract])
    def broken(extract: int) -> int:
        raise ValueError("bad row 7")

    @task(depends_on=[broken])
    def report(broken: int) -> None:
        return None

    @task(depends_on=[extract], when=lambda extract: extract > 5)
    def gated(extract: int) -> None:
        return None

    return TaskGraph.build([extract, flaky, broken, report, gated])


def test_a_run_is_a_span_with_a_child_span_per_attempt(
    telemetry: Telemetry, registry: Registry
) -> None:
    graph = _pipeline(registry)
    snapshot = execute(plan(graph), hooks=[telemetry.hook], fail_fast=False)
    run = telemetry.run_span()
    assert run.name == "RUN nightly"
    assert run.attributes is not None
    assert run.attributes["cicd.pipeline.name"] == "nightly"
    assert run.attributes["cicd.pipeline.run.id"] == snapshot.run_id
    assert run.attributes["cicd.pipeline.result"] == "failure"
    assert run.status.status_code is StatusCode.ERROR
    assert run.context is not None
    for span in telemetry.finished():
        if span is not run:
            assert span.parent is not None
            assert span.parent.span_id == run.context.span_id  # every task under its run
            assert span.context is not None
            assert span.context.trace_id == run.context.trace_id
    flaky = telemetry.attempts("flaky")
    assert [s.attributes["flowplan.attempt"] for s in flaky if s.attributes] == [1, 2, 3]
    assert [s.status.status_code for s in flaky] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert [e.name for e in flaky[0].events] == ["exception", "flowplan.retry"]
    assert flaky[0].attributes is not None
    assert flaky[0].attributes["error.type"] == "ConnectionError"
    assert flaky[2].attributes is not None
    assert flaky[2].attributes["cicd.pipeline.task.run.result"] == "success"
    assert flaky[2].attributes["cicd.pipeline.task.run.id"] == f"{snapshot.run_id}/flaky/3"
    (broken,) = telemetry.attempts("broken")
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.attributes is not None
    assert broken.attributes["error.type"] == "ValueError"
    exception = next(e for e in broken.events if e.name == "exception")
    assert exception.attributes is not None
    assert exception.attributes["exception.message"] == "bad row 7"
    events = {e.name: e for e in run.events}
    skipped = [e for e in run.events if e.name == "flowplan.task_skipped"]
    assert {e.attributes["cicd.pipeline.task.name"] for e in skipped if e.attributes} == {
        "report",
        "gated",
    }
    assert "flowplan.task_skipped" in events
    assert telemetry.attempts("report") == []  # never ran: no attempt span


def test_reused_tasks_are_zero_length_spans_and_a_resume_links_its_run(
    telemetry: Telemetry, registry: Registry
) -> None:
    graph = _pipeline(registry)
    first = execute(plan(graph), fail_fast=False)  # no hook: another process, say
    resumed = execute(plan(graph, first, rerun=["broken"]), hooks=[telemetry.hook])
    assert resumed["extract"].status is TaskStatus.SUCCEEDED
    run = telemetry.run_span()
    (extract,) = telemetry.attempts("extract")
    assert extract.attributes is not None
    assert extract.attributes["flowplan.reused"] is True
    assert extract.start_time == extract.end_time
    (link,) = run.links
    assert link.attributes is not None
    assert link.attributes["flowplan.link"] == "resumes"
    assert link.attributes["cicd.pipeline.run.id"] == first.run_id
    # the link points into the trace the first run's spans would have had
    other = Telemetry()
    execute(plan(graph, first), hooks=[other.hook])
    assert other.run_span().links[0].context.trace_id == link.context.trace_id


def _ids_graph(
    registry: Registry, *, isolation: str | None = None, is_async: bool = False
) -> TaskGraph:
    fn = otel_helpers.async_span_ids if is_async else otel_helpers.span_ids
    return TaskGraph.build([TaskSpec("ids", fn, isolation=isolation)])  # type: ignore[arg-type]


def _body_sees_its_span(telemetry: Telemetry, snapshot: Any) -> None:
    (span,) = telemetry.attempts("ids")
    assert span.context is not None
    assert snapshot.value("ids") == (span.context.trace_id, span.context.span_id)


@pytest.mark.parametrize(
    "driver", ["inline", "threads", "thread_pool", "timeout_thread", "isolation_process"]
)
def test_the_attempt_span_is_current_inside_the_body(
    telemetry: Telemetry, registry: Registry, driver: str
) -> None:
    isolation = "process" if driver == "isolation_process" else None
    graph = _ids_graph(registry, isolation=isolation)
    if driver == "timeout_thread":
        graph = TaskGraph.build([TaskSpec("ids", otel_helpers.span_ids, timeout_s=30)])
    executor: Any = {"inline": InlineExecutor(), "thread_pool": ThreadPoolExecutor(2)}.get(driver)
    snapshot = execute(plan(graph), hooks=[telemetry.hook], executor=executor)
    _body_sees_its_span(telemetry, snapshot)


@pytest.mark.parametrize("is_async", [True, False])
def test_the_attempt_span_is_current_inside_the_body_under_aexecute(
    telemetry: Telemetry, registry: Registry, is_async: bool
) -> None:
    graph = _ids_graph(registry, is_async=is_async)
    snapshot = asyncio.run(aexecute(plan(graph), hooks=[telemetry.hook]))
    _body_sees_its_span(telemetry, snapshot)


def test_the_attempt_span_reaches_a_process_executors_child(
    telemetry: Telemetry, registry: Registry
) -> None:
    graph = _ids_graph(registry)
    with ProcessExecutor(1) as processes:
        snapshot = execute(plan(graph), hooks=[telemetry.hook], executor=processes)
        _body_sees_its_span(telemetry, snapshot)
        again = Telemetry()
        snap = asyncio.run(aexecute(plan(graph), hooks=[again.hook], executor=processes))
        _body_sees_its_span(again, snap)


def test_user_spans_nest_under_the_task(telemetry: Telemetry, registry: Registry) -> None:
    from opentelemetry import trace

    trace.set_tracer_provider(telemetry.tracer_provider)  # the user's code uses the global one

    def query() -> str:
        with trace.get_tracer("user-code").start_as_current_span("query the warehouse"):
            return "ok"

    graph = TaskGraph.build([TaskSpec("query", query)])
    execute(plan(graph), hooks=[telemetry.hook], max_workers=2)
    (task_span,) = telemetry.attempts("query")
    (user,) = [s for s in telemetry.finished() if s.name == "query the warehouse"]
    assert user.parent is not None
    assert task_span.context is not None
    assert user.parent.span_id == task_span.context.span_id


def test_metrics_run_duration_task_duration_retries_failures(
    telemetry: Telemetry, registry: Registry
) -> None:
    execute(plan(_pipeline(registry)), hooks=[telemetry.hook], fail_fast=False)
    data = telemetry.measurements()
    (run,) = data["cicd.pipeline.run.duration"]
    assert run.count == 1
    assert dict(run.attributes) == {
        "cicd.pipeline.name": "nightly",
        "cicd.pipeline.result": "failure",
    }
    retries = data["flowplan.task.retries"]
    assert sum(p.value for p in retries) == 2
    assert {p.attributes["error.type"] for p in retries} == {"ConnectionError"}
    failures = data["flowplan.task.failures"]
    assert sum(p.value for p in failures) == 1
    durations = data["flowplan.task.duration"]
    assert sum(p.count for p in durations) == 5  # extract, flaky (3 attempts), broken
    for point in [*retries, *failures, *durations]:  # low cardinality: no task names, no ids
        assert "cicd.pipeline.task.name" not in point.attributes
        assert "cicd.pipeline.run.id" not in point.attributes


def test_the_hook_declares_the_attempt_scope_capability(telemetry: Telemetry) -> None:
    assert isinstance(telemetry.hook, AttemptScope)


def test_a_raising_scope_never_fails_the_task(registry: Registry) -> None:
    class Broken:
        def on_event(self, event: object) -> None:
            return None

        def attempt_scope(self, run_id: str, task: str, attempt: int) -> Any:
            raise RuntimeError("tracing backend down")

    graph = TaskGraph.build([TaskSpec("one", lambda: 1)])
    snapshot = execute(plan(graph), hooks=[Broken()])
    assert snapshot.value("one") == 1
