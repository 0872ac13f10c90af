"""Typing tests for the observe namespace: checked by mypy and pyright, never run.

Covered: ``OpenTelemetryHook`` takes optional tracer and meter providers and a pipeline name,
is a ``Hook`` and an ``AttemptScope``; ``StructlogHook`` and a hook declaring
``wanted_events`` are ``WantsEvents``; ``to_html`` returns text; hooks are accepted by
``execute``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import assert_type

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from flowplan import Snapshot, TaskGraph, execute, plan
from flowplan.events import Event, TaskFailed
from flowplan.observe import (
    AttemptScope,
    Hook,
    OpenTelemetryHook,
    RecordingHook,
    StructlogHook,
    WantsEvents,
    to_html,
)


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


class _Failures:
    def wanted_events(self) -> frozenset[type[Event]]:
        return frozenset({TaskFailed})

    def on_event(self, event: Event) -> None:
        pass


def check_the_protocol(wants: WantsEvents) -> None:  # a parameter: pyright does not narrow it
    assert_type(wants.wanted_events(), Iterable[type[Event]] | None)


def check_wants_events() -> None:
    wants: WantsEvents = StructlogHook()
    check_the_protocol(wants)
    assert_type(StructlogHook().wanted_events(), frozenset[type[Event]] | None)
    mine: WantsEvents = _Failures()
    hook: Hook = _Failures()
    not_wanting: WantsEvents = RecordingHook()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
