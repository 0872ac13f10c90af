"""Static types of the SQLite store's damage reporting (checked by mypy and pyright, never run).

Covered: ``StoreError`` carries the store's path, the run and the damaged column as optional
attributes; ``RunInfo.damage`` says why a listed run's row cannot be read. Lines with
``# type: ignore[code]`` pin mistakes mypy must reject.
"""

from __future__ import annotations

from typing import assert_type

from flowplan.errors import FlowplanError, StoreError
from flowplan.store import RunInfo, SqliteStateStore


def store_errors(error: StoreError) -> None:
    assert_type(error.path, str | None)
    assert_type(error.run_id, str | None)
    assert_type(error.column, str | None)
    plain: FlowplanError = StoreError("message only")
    detailed = StoreError("damaged", path="runs.db", run_id="r1", column="tasks")
    assert_type(detailed, StoreError)
    assert plain is not detailed
    StoreError("message", "runs.db")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def damaged_runs(store: SqliteStateStore) -> None:
    for info in store.list_runs():
        assert_type(info, RunInfo)
        assert_type(info.damage, str | None)
        assert_type(info.status, str)
