"""Typing tests for run ownership: checked by ``mypy --strict``, never run.

Covered: :class:`~flowplan.RunOwnedError` is a ``FlowplanError`` and a ``RuntimeError`` and
carries the owner as typed attributes; ``SqliteStateStore(owner_lease_s=...)`` and
``release_run`` on both stores.
"""

from __future__ import annotations

from typing import assert_type

from flowplan import FlowplanError, RunOwnedError
from flowplan.engine import MemoryRunStore
from flowplan.store import SqliteStateStore

owned = RunOwnedError(
    "m",
    run_id="r2",
    lineage_id="r1",
    owner_run_id="r1",
    owner_pid=1,
    owner_host="h",
    owner_since=0.0,
    lease_until=60.0,
)
as_root: FlowplanError = owned
as_builtin: RuntimeError = owned
assert_type(owned.owner_pid, int)
assert_type(owned.owner_host, str)
assert_type(owned.owner_since, float)
assert_type(owned.lease_until, float)
assert_type(owned.orphan_pid, int | None)
assert_type(owned.task, str | None)
RunOwnedError("m", run_id="r2")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def stores() -> None:
    store = SqliteStateStore(":memory:", owner_lease_s=30.0)
    assert_type(store.owner_lease_s, float)
    assert_type(store.release_run("r1"), None)
    assert_type(MemoryRunStore().release_run("r1"), None)
    SqliteStateStore(":memory:", owner_lease_s="30")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
