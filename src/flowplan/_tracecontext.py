"""Trace context across processes: the attempt's context travels with a remote payload.

Place in the data flow: where one body runs (**attempts**). The parent adds :func:`carrier` to
an attempt's payload while the attempt's scope is entered (e.g. an OpenTelemetry span is
current); the child runs the body inside :func:`child_scope`. Nothing is imported unless
OpenTelemetry is already in use in the parent, so a run without tracing pays one dict lookup.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping

__all__ = ["carrier", "child_scope"]


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, for an attempt sent to another process (empty
    when OpenTelemetry is not in use: nothing is imported)."""
    if "opentelemetry" not in sys.modules:
        return {}
    from opentelemetry import propagate

    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextlib.contextmanager
def child_scope(headers: Mapping[str, str] | None) -> Iterator[None]:
    """In a child process: make the parent's attempt span the current context for the body."""
    if not headers:
        yield
        return
    try:
        from opentelemetry import context, propagate
    except ImportError:  # the child has no OpenTelemetry: nothing to propagate into
        yield
        return
    token = context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        context.detach(token)
