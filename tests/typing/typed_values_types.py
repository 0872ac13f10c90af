"""Static types of the typed-values API (checked by mypy and pyright, never run).

Covered: ``Unstructured``'s fields; ``restore_values`` takes a snapshot and a graph and returns
a snapshot; ``typed_converter()`` is a cattrs ``Converter``; the built-in caches expose their
``serializer``. Lines with ``# type: ignore[code]`` pin mistakes mypy must reject.
"""

from __future__ import annotations

from typing import assert_type

import cattrs

from flowplan import MemoryCache, Snapshot, SqliteCache, TaskGraph
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
