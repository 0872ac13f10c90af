"""Task bodies for the OpenTelemetry tests (module level, so child processes import them)."""

from __future__ import annotations

import asyncio

from opentelemetry import trace


def span_ids() -> tuple[int, int]:
    """The (trace id, span id) of the span current in the body."""
    context = trace.get_current_span().get_span_context()
    return context.trace_id, context.span_id


async def async_span_ids() -> tuple[int, int]:
    """The same, from an ``async def`` body."""
    await asyncio.sleep(0)
    return span_ids()
