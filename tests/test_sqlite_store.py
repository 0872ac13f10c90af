"""SqliteStateStore: durability, consistency, hostile files, recovery, cross-process resume."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import structlog

from flowplan import Flow, InlineExecutor, Registry, TaskGraph, execute, plan
from flowplan import task as flow_task
from flowplan.engine import (
    EngineStore,
    InMemoryStateStore,
    PickleSerializer,
    SqliteStateStore,
    StateStoreProtocol,
    TaskStartEvent,
    build_default_engine,
    fn_hook,
)
from flowplan.errors import InvalidOptionError, SerializationError, StoreError, UnknownTaskError
from flowplan.snapshot import ErrorInfo, TaskRecord, TaskStatus
from flowplan.spec import Dependency, TaskSpec
from flowplan.store import JsonSerializer, StateStore
from flowplan.store._sqlite._process import own_identity
from flowplan.store._sqlite._rows import encode_record, pending_row

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStateStore]:
    opened = SqliteStateStore(db)
    yield opened
    opened.close()


def rows(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def statuses(db: Path, run_id: str) -> dict[str, str]:
    return dict(rows(db, "SELECT name, status FROM tasks WHERE run_id = ?", run_id))


@attrs.frozen
class Point:
    """Module-level, so pickle can find it."""

    x: int
    y: int


def test_wal_mode_and_schema_on_a_new_file(store: SqliteStateStore, db: Path) -> None:
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    assert rows(db, "SELECT version FROM flowplan_schema") == [(3,)]
    assert isinstance(store, StateStore)
    assert isinstance(store, EngineStore)
    assert isinstance(InMemoryStateStore(), StateStoreProtocol)
    assert store.list_runs() == []


def test_transitions_are_committed_as_they_happen(store: SqliteStateStore, db: Path) -> None:
    seen: dict[str, dict[str, str]] = {}

    def peek(event: TaskStartEvent) -> None:
        seen[event.task_name] = statuses(db, event.run_id)  # a second connection

    engine = build_default_engine(state_store=store, hooks=[fn_hook(on_task_start=peek)])

    @engine.task(dag="etl")
    def a() -> int:
        return 1

    @engine.task(dag="etl", deps=[a])
    def b(a: int) -> int:
        return a + 1

    @engine.task(dag="etl", deps=[b])
    def c(b: int) -> int:
        return b + 1

    run_id = run(engine.run_once("etl"))
    engine.close()
    assert seen["a"] == {"a": "running", "b": "pending", "c": "pending"}
    assert seen["b"] == {"a": "succeeded", "b": "running", "c": "pending"}
    assert seen["c"] == {"a": "succeeded", "b": "succeeded", "c": "running"}
    assert statuses(db, run_id) == dict.fromkeys("abc", "succeeded")
    assert rows(db, "SELECT status, dag_name FROM runs") == [("succeeded", "etl")]


def test_json_round_trips_rich_values_through_a_run(db: Path) -> None:
    value = {
        "tuple": (1, "two", (3.0,)),
        "set": {1, 2, 3},
        "frozen": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 1),
        "nested": [{"k": (None, True)}, {1: "int key"}],
    }
    received: list[object] = []
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store)

        @engine.task(dag="etl")
        def produce() -> dict[str, object]:
            return value

        @engine.task(dag="etl", deps=[produce])
        def consume(produce: dict[str, object]) -> int:
            received.append(produce)
            return len(produce)

        run_id = run(engine.run_once("etl"))
        engine.close()
    with SqliteStateStore(db) as reopened:
        loaded = reopened.load(run_id).value("produce")
        assert loaded == value
        assert type(loaded["tuple"]) is tuple
        assert type(loaded["frozen"]) is frozenset
        engine = build_default_engine(state_store=reopened)
        engine.task(name="produce", dag="etl")(lambda: 0)

        def consume_again(produce: dict[str, object]) -> int:
            received.append(produce)
            return 0

        engine.task(name="consume", dag="etl", deps=["produce"])(consume_again)
        run(engine.resume(run_id, from_tasks=["consume"]))
        engine.close()
    assert received == [value, value]  # the second came from the file, decoded
    assert type(received[1]["set"]) is set  # type: ignore[index]


def test_an_unserializable_result_fails_its_task_and_keeps_the_db_consistent(
    store: SqliteStateStore, db: Path
) -> None:
    engine = build_default_engine(state_store=store)

    @engine.task(dag="etl")
    def bad() -> object:
        return object()

    @engine.task(dag="etl", deps=[bad])
    def after(bad: object) -> int:
        return 1

    run_id = run(engine.run_once("etl"))
    engine.close()
    report = engine.get_run_report(run_id)
    assert report["status"] == "FAILED"
    assert report["tasks"]["bad"]["status"] == "FAILED"
    assert "cannot be stored" in report["tasks"]["bad"]["error"]
    assert report["tasks"]["after"]["status"] == "SKIPPED"
    assert statuses(db, run_id) == {"bad": "failed", "after": "skipped"}
    assert rows(db, "SELECT error_kind FROM tasks WHERE name = 'bad'") == [("serialization",)]


def test_save_record_raises_before_writing(store: SqliteStateStore, db: Path) -> None:
    record = TaskRecord("x", TaskStatus.SUCCEEDED, value={1: object()}, has_value=True)
    with pytest.raises(SerializationError, match="task 'x': its value cannot be stored") as info:
        store.save_record("r", record)
    assert info.value.path == "$[1]"
    assert rows(db, "SELECT COUNT(*) FROM tasks") == [(0,)]


def test_a_file_that_is_not_a_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(StoreError, match=r"not a database.*left untouched"):
        SqliteStateStore(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"database of something else.*users"):
        SqliteStateStore(path)
    assert rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("users",)]


def test_a_newer_schema_is_refused(db: Path) -> None:
    SqliteStateStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE flowplan_schema SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this flowplan"):
        SqliteStateStore(db)


def test_an_undecodable_row_makes_that_task_run_again(db: Path) -> None:
    calls: list[str] = []

    def build(store: SqliteStateStore) -> Any:
        engine = build_default_engine(state_store=store)

        @engine.task(dag="etl")
        def extract() -> list[int]:
            calls.append("extract")
            return [1, 2]

        @engine.task(dag="etl", deps=[extract])
        def total(extract: list[int]) -> int:
            calls.append("total")
            return sum(extract)

        return engine

    with SqliteStateStore(db) as store:
        engine = build(store)
        run_id = run(engine.run_once("etl"))
        engine.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET payload = x'fffe00' WHERE name = 'extract'")
    conn.commit()
    conn.close()
    with SqliteStateStore(db) as store:
        record = store.load(run_id)["extract"]
        assert record.status is TaskStatus.FAILED
        assert record.error is not None
        assert record.error.kind == "serialization"
        assert "runs again on resume" in record.error.message
        engine = build(store)
        resumed = run(engine.resume(run_id))
        engine.close()
        report = engine.get_run_report(resumed)
    assert calls == ["extract", "total", "extract"]
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["extract"]["result"] == [1, 2]


def test_recover_fails_only_running_tasks_of_dead_processes(db: Path) -> None:
    dead_pid = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    pid, token, host = own_identity()
    specs = [TaskSpec(name, lambda: 1) for name in ("dead", "reused_pid", "live", "remote", "ok")]
    planned = plan(TaskGraph.build(specs), run_id="r1")
    with SqliteStateStore(db) as store:
        store.create_run(planned, dag_name="etl")
        store.save_record("r1", TaskRecord("ok", TaskStatus.SUCCEEDED, 1, value=1, has_value=True))
    owners = {
        "dead": (dead_pid, "boot:1", host),
        "reused_pid": (pid, "an-earlier-process", host),
        "live": (pid, token, host),
        "remote": (dead_pid, "boot:1", "another-host.example"),
    }
    conn = sqlite3.connect(db)
    for name, owner in owners.items():
        conn.execute(
            "UPDATE tasks SET status = 'running', owner_pid = ?, owner_token = ?, "
            "owner_host = ? WHERE name = ?",
            (*owner, name),
        )
    sql = "UPDATE runs SET owner_pid = ?, owner_token = 'x', owner_host = ?"
    conn.execute(sql, (dead_pid, host))
    conn.commit()
    conn.close()
    with SqliteStateStore(db, recover=True) as store:
        snapshot = store.load("r1")
        info = store.get_run("r1")
    got = {name: snapshot[name].status.value for name in snapshot}
    assert got == {
        "dead": "failed",
        "reused_pid": "failed",
        "live": "running",
        "remote": "running",
        "ok": "succeeded",
    }
    error = snapshot["dead"].error
    assert error is not None
    assert f"PROCESS_CRASH: process {dead_pid}" in error.message
    assert info.status == "failed"
    assert info.finished_at is not None
    with SqliteStateStore(db, recover=True) as again:  # idempotent; live rows stay
        assert again.recover() == ()


def test_cache_ttl_caches_reads_and_own_writes_invalidate(db: Path) -> None:
    spec = TaskSpec("a", lambda: 1)
    planned = plan(TaskGraph.build([spec]), run_id="r1")
    with SqliteStateStore(db, cache_ttl_s=60) as cached, SqliteStateStore(db) as other:
        cached.create_run(planned, dag_name="etl")
        assert cached.load("r1")["a"].status is TaskStatus.PENDING
        other.save_record("r1", TaskRecord("a", TaskStatus.RUNNING, attempts=1))
        assert cached.load("r1")["a"].status is TaskStatus.PENDING  # cached
        assert other.load("r1")["a"].status is TaskStatus.RUNNING
        cached.save_record("r1", TaskRecord("a", TaskStatus.SUCCEEDED, 1, value=5, has_value=True))
        assert cached.load("r1").value("a") == 5  # own write: fresh at once
    with SqliteStateStore(db, cache_ttl_s=0.05) as short, SqliteStateStore(db) as other:
        assert short.get_run("r1").dag_name == "etl"
        other.finish_run(short.load("r1"), "succeeded")
        time.sleep(0.06)
        assert short.get_run("r1").status == "succeeded"
    with pytest.raises(InvalidOptionError, match="cache_ttl_s"):
        SqliteStateStore(db, cache_ttl_s=-1)


def test_the_core_can_execute_and_resume_through_the_store(store: SqliteStateStore) -> None:
    calls: list[str] = []

    def fa() -> int:
        calls.append("a")
        return 2

    def fb(a: int) -> int:
        calls.append("b")
        return a * 3

    a = TaskSpec("a", fa)
    b = TaskSpec("b", fb, deps=(Dependency("a", a),))
    graph = TaskGraph.build([a, b])
    execute(plan(graph, run_id="core-1"), store=store, executor=InlineExecutor())
    snapshot = store.load("core-1")
    assert snapshot.value("b") == 6
    snapshot_2 = execute(plan(graph, snapshot, rerun=["b"]), store=store, executor=InlineExecutor())
    assert calls == ["a", "b", "b"]
    assert [r.run_id for r in store.list_runs()] == ["core-1", snapshot_2.run_id]
    assert store.get_run("core-1").dag_name is None


def test_pickle_serializer_and_list_runs(db: Path) -> None:
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        engine = build_default_engine(state_store=store)
        engine.task(name="p", dag="one")(lambda: Point(1, 2))
        engine.task(name="q", dag="two")(lambda: 3)
        first = run(engine.run_once("one"))
        run(engine.run_once("two"))
        run(engine.run_once("one"))
        engine.close()
        assert [r.dag_name for r in store.list_runs()] == ["one", "two", "one"]
        assert len(store.list_runs("one")) == 2
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        assert store.load(first).value("p") == Point(1, 2)


def test_released_results_stay_on_disk(store: SqliteStateStore, db: Path) -> None:
    engine = build_default_engine(state_store=store)
    engine.task(name="big", dag="etl", retain_result=False)(lambda: list(range(100)))

    @engine.task(dag="etl", deps=["big"])
    def small(big: list[int]) -> int:
        return len(big)

    run_id = run(engine.run_once("etl"))
    engine.close()
    # released from memory only: the row keeps the value, so a later run can reuse it
    assert rows(db, "SELECT payload IS NOT NULL, released FROM tasks WHERE name = 'big'") == [
        (1, 0)
    ]
    assert engine.get_run_report(run_id)["tasks"]["big"]["result"] == list(range(100))


def test_unknown_runs_and_closed_stores_are_clear_errors(db: Path) -> None:
    store = SqliteStateStore(db)
    planned = plan(TaskGraph.build([TaskSpec("a", lambda: 1)]), run_id="run-abc")
    store.create_run(planned, dag_name="etl")
    with pytest.raises(UnknownTaskError, match=r"no run 'run-abd'.*did you mean 'run-abc'"):
        store.load("run-abd")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.get_run("run-abc")


SCRIPT = """
import asyncio, os, sys
from pathlib import Path
from flowplan.engine import SqliteStateStore, build_default_engine

db, calls, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

def note(name):
    with calls.open("a") as handle:
        handle.write(name + "\\n")

store = SqliteStateStore(db)
engine = build_default_engine(state_store=store)

@engine.task(dag="etl")
def extract():
    note("extract")
    return {"rows": (1, 2, 3), "tag": b"x"}

@engine.task(dag="etl", deps=[extract])
def transform(extract):
    note("transform")
    if os.environ.get("FLOWPLAN_TEST_FAIL") == "1":
        raise RuntimeError("the flag says fail")
    assert extract == {"rows": (1, 2, 3), "tag": b"x"}, extract
    return sum(extract["rows"])

@engine.task(dag="etl", deps=[transform])
def load(transform):
    note("load")
    return f"loaded {transform}"

async def main():
    async with engine:
        if mode == "run":
            return await engine.run_once("etl")
        return await engine.resume(sys.argv[4])

run_id = asyncio.run(main())
print(run_id, engine.get_run_report(run_id)["status"])
store.close()
"""


def test_a_failed_run_resumes_by_id_in_another_process(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(SCRIPT))
    db, calls = tmp_path / "shared.db", tmp_path / "calls.txt"

    def process(*args: str, fail: bool) -> list[str]:
        env = {**os.environ, "FLOWPLAN_TEST_FAIL": "1" if fail else "0"}
        done = subprocess.run(
            [sys.executable, str(script), str(db), str(calls), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    first_id, first_status = process("run", fail=True)
    assert first_status == "FAILED"
    second_id, second_status = process("resume", first_id, fail=False)
    assert (second_status, second_id != first_id) == ("SUCCESS", True)
    assert calls.read_text().split() == ["extract", "transform", "transform", "load"]
    with SqliteStateStore(db) as store:
        info = store.get_run(second_id)
        assert (info.resumed_from, info.dag_name) == (first_id, "etl")
        assert store.load(second_id).value("load") == "loaded 6"


def test_flow_records_its_runs_in_a_sqlite_store(store: SqliteStateStore) -> None:
    registry = Registry()

    @flow_task(registry=registry)
    def fetch() -> dict[str, tuple[int, ...]]:
        return {"items": (1, 2, 3)}

    @flow_task(depends_on=[fetch], registry=registry)
    def total(fetch: dict[str, tuple[int, ...]]) -> int:
        return sum(fetch["items"])

    flow = Flow(total, store=store, registry=registry, logger=structlog.testing.CapturingLogger())
    assert flow.run()["total"].value == 6
    (info,) = store.list_runs()
    assert info.status == "succeeded"
    assert info.tasks == ("fetch", "total")
    assert store.load(info.run_id).value("fetch") == {"items": (1, 2, 3)}


def test_a_start_updates_the_row_and_reads_back_as_the_running_record(
    store: SqliteStateStore, db: Path
) -> None:
    planned = plan(TaskGraph.build([TaskSpec("a", lambda: 1)]), run_id="r1")
    store.create_run(planned, dag_name=None)
    failed = TaskRecord(
        "a",
        TaskStatus.FAILED,
        1,
        error=ErrorInfo("builtins.ValueError", "boom", "tb"),
        started_at=1.0,
        finished_at=2.0,
        duration_ms=5.0,
        reason="it raised",
        root_cause="a",
    )
    store.save_record("r1", failed)
    # A second attempt starts (e.g. on resume): nothing of the failure may linger in its row.
    first_start = TaskRecord("a", TaskStatus.RUNNING, 1, started_at=3.0)
    store.save_record("r1", first_start)
    assert store.load("r1")["a"] == first_start
    retry = TaskRecord(
        "a",
        TaskStatus.RUNNING,
        2,
        value="refused by retry_until",
        has_value=True,
        error=ErrorInfo("builtins.ValueError", "boom", "tb"),
        started_at=3.0,
        duration_ms=4.0,
        retry_delays=(0.5,),
    )
    store.save_record("r1", retry)
    # Everything but the informational value of an attempt that did not succeed.
    assert store.load("r1")["a"] == attrs.evolve(retry, value=None, has_value=False)
    assert rows(db, "SELECT owner_pid, owner_token, owner_host FROM tasks") == [own_identity()]


def test_a_start_of_a_task_without_a_row_writes_the_whole_row(
    store: SqliteStateStore, db: Path
) -> None:
    planned = plan(TaskGraph.build([TaskSpec("a", lambda: 1)]), run_id="r1")
    store.create_run(planned, dag_name=None)
    extra = TaskRecord("a[0]", TaskStatus.RUNNING, 1, started_at=3.0)
    store.save_record("r1", extra)
    assert statuses(db, "r1") == {"a": "pending", "a[0]": "running"}
    assert store.load("r1")["a[0]"] == extra


def test_pending_rows_are_the_encoded_pending_records() -> None:
    owner = own_identity()
    encoded = encode_record("r", TaskRecord("t", TaskStatus.PENDING), JsonSerializer(), owner, 5.0)
    assert pending_row("r", "t", owner, 5.0) == encoded


def test_only_running_rows_are_indexed_and_recover_reads_that_index(db: Path) -> None:
    with SqliteStateStore(db):
        pass
    conn = sqlite3.connect(db)  # a file written before: it indexed every status
    conn.execute("CREATE INDEX tasks_by_status ON tasks (status)")
    conn.commit()
    conn.close()
    with SqliteStateStore(db):
        pass
    query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    assert rows(db, query) == [
        (
            "tasks_running",
            "CREATE INDEX tasks_running ON tasks (run_id, name) WHERE status = 'running'",
        )
    ]
    recover_query = "SELECT run_id, name FROM tasks WHERE status = 'running'"
    plan_rows = rows(db, f"EXPLAIN QUERY PLAN {recover_query}")
    assert [detail for *_, detail in plan_rows] == ["SCAN tasks USING INDEX tasks_running"]
