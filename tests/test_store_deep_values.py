"""Deeply nested values: what a store writes, it reads back — the journal and SQLite alike.

CPython's ``json`` recurses, so text nested deeper than about 1,000 levels cannot be parsed by
it; a store that writes such a value must still read it back (or the step re-runs on every
replay). Values are compared through their serialized bytes: ``==`` on such values would
itself hit the recursion limit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from flowplan import Flow, Registry, TaskGraph, TaskStatus, execute, plan, task
from flowplan.store import JsonSerializer, SqliteStateStore

DEPTH = 5_000
_CALLS: list[str] = []  # a global: a closure's data would change the step key


def _deep(depth: int) -> Any:
    """Lists, tuples, str-keyed and int-keyed dicts and frozensets, ``depth`` levels deep."""
    value: Any = "leaf"
    for level in range(depth):
        kind = level % 5
        if kind == 0:
            value = [value, level]
        elif kind == 1:
            value = (level, value)
        elif kind == 2:
            value = {"k": value}
        elif kind == 3:
            value = {level: value}  # written as a tagged list of pairs
        else:
            value = [frozenset({level}), value]
    return value


def _same(a: object, b: object) -> bool:
    codec = JsonSerializer()
    return codec.dumps(a) == codec.dumps(b)


@task
def deep() -> Any:
    _CALLS.append("deep")
    return _deep(DEPTH)


def test_the_journal_reads_back_a_value_nested_deeper_than_json_can_parse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "flow.jsonl"
    _CALLS.clear()
    Flow(deep, journal_path=journal).run()
    with caplog.at_level(logging.WARNING, logger="flowplan"):
        again = Flow(deep, journal_path=journal)
        assert again.run()["deep"].cached  # replayed, not run again
    assert _CALLS == ["deep"]
    assert _same(again.value(deep), _deep(DEPTH))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_sqlite_reads_back_the_same_deep_value(registry: Registry, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _CALLS.clear()
    graph = TaskGraph.build([deep])
    with SqliteStateStore(db) as store:
        run_id = execute(plan(graph), store=store).run_id
    with SqliteStateStore(db) as store:
        snapshot = store.load(run_id)
    assert snapshot.records["deep"].status is TaskStatus.SUCCEEDED
    assert _same(snapshot.records["deep"].value, _deep(DEPTH))
    execute(plan(graph, snapshot))
    assert _CALLS == ["deep"]  # reused on resume
