"""Static types of the typed-values and changed-code APIs (checked by mypy and pyright, never run).

Covered: ``Unstructured``'s fields; ``restore_values`` takes a snapshot and a graph and returns
a snapshot; ``typed_converter()`` is a cattrs ``Converter``; the built-in caches expose their
``serializer``; ``plan(rerun_changed=)``, ``Plan.code_changed``,
``Flow.resume(rerun_changed=)`` and ``TaskReused.code_changed``. Lines with
``# type: ignore[code]`` pin mistakes mypy must reject.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_type

import cattrs

from flowplan import (
    Flow,
    MemoryCache,
    Snapshot,
    SqliteCache,
    StepResult,
    TaskGraph,
    TaskRecord,
    TaskReused,
    TaskStatus,
    plan,
)
from flowplan.engine import Engine
from flowplan.store import ResultSerializer, Unstructured, restore_values, typed_converter


def check(snapshot: Snapshot, graph: TaskGraph, memory: MemoryCache, disk: SqliteCache) -> None:
    stored = Unstructured("mod.Point", {"x": 1})
    assert_type(stored.type_name, str)
    assert_type(stored.data, object)
    assert_type(restore_values(snapshot, graph), Snapshot)
    assert_type(typed_converter(), cattrs.Converter)
    assert_type(memory.serializer, ResultSerializer)
    assert_type(disk.serializer, ResultSerializer)
    restore_values(graph, snapshot)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    stored.type_name = "other"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]


async def check_engine_resume(engine: Engine) -> None:
    assert_type(await engine.resume("run", rerun_changed=True), str)


def check_code_changed(graph: TaskGraph, snapshot: Snapshot, flow: Flow) -> None:
    planned = plan(graph, snapshot, rerun_changed=True)
    assert_type(planned.code_changed, Mapping[str, str])
    assert_type(flow.resume(rerun_changed=True), dict[str, StepResult])
    event = TaskReused("r", 0.0, "t", TaskRecord("t", TaskStatus.SUCCEEDED), "its code changed")
    assert_type(event.code_changed, str | None)
    plan(graph, rerun_changed="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
