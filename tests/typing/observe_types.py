"""Typing tests for the observe namespace: checked by mypy and pyright, never run.

Covered: ``OpenTelemetryHook`` takes optional tracer and meter providers and a pipeline name,
is a ``Hook`` and an ``AttemptScope``; ``to_html`` returns text; hooks are accepted by
``execute``.
"""

from __future__ import annotations

from typing import assert_type

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from flowplan import Snapshot, TaskGraph, execute, plan
from flowplan.observe import AttemptScope, Hook, OpenTelemetryHook, to_html


def check_otel(graph: TaskGraph, snapshot: Snapshot) -> None:
    hook = OpenTelemetryHook(TracerProvider(), MeterProvider(), pipeline_name="etl")
    assert_type(hook, OpenTelemetryHook)
    as_hook: Hook = hook
    as_scope: AttemptScope = hook
    execute(plan(graph), hooks=[hook])
    OpenTelemetryHook()
    OpenTelemetryHook(pipeline_name=3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    assert_type(to_html(graph, snapshot), str)
    assert_type(to_html(None, snapshot, events=(), reused=["a"], title="t"), str)
