"""Observing runs: hooks, progress, pictures and reports, and OpenTelemetry.

Place in the data flow: the end of it — everything here reads events, graphs, plans and
snapshots, and changes nothing. Hooks see a run's typed events (:class:`Hook`,
:class:`StructlogHook`, :class:`RecordingHook`, :class:`CallbackHook`,
:class:`ProgressHook`, :class:`OpenTelemetryHook`; a hook may say which events it wants,
:class:`WantsEvents`); pictures and reports draw graphs, plans and
runs (:func:`to_mermaid`, :func:`to_dot`, :func:`to_ascii`, :func:`to_html`,
:func:`to_networkx`). ``OpenTelemetryHook`` needs the ``flowplan[otel]`` extra, imported only
when one is made.
"""

from flowplan.hooks import (
    AttemptScope,
    CallbackHook,
    Hook,
    RecordingHook,
    StructlogHook,
    WantsEvents,
)
from flowplan.observe._otel import OpenTelemetryHook
from flowplan.progress import ProgressHook
from flowplan.report import to_ascii, to_dot, to_html, to_mermaid, to_networkx

__all__ = [
    "AttemptScope",
    "CallbackHook",
    "Hook",
    "OpenTelemetryHook",
    "ProgressHook",
    "RecordingHook",
    "StructlogHook",
    "WantsEvents",
    "to_ascii",
    "to_dot",
    "to_html",
    "to_mermaid",
    "to_networkx",
]
