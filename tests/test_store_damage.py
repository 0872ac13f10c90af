"""Damaged SQLite stores: a bad schema is refused on open, a bad row costs only its own run.

The files are real SQLite files edited with the ``sqlite3`` module, as a user, a crash-free
but buggy tool or a bad restore would leave them.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flowplan import Registry, TaskGraph, TaskStatus, execute, plan, task
from flowplan.errors import StoreError
from flowplan.store import SqliteStateStore


def _edit(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


def _three_runs(db: Path) -> list[str]:
    @task
    def one() -> int:
        return 1

    @task(depends_on=[one])
    def two(one: int) -> int:
        return one + 1

    graph = TaskGraph.build([one, two])
    with SqliteStateStore(db) as store:
        return [execute(plan(graph), store=store).run_id for _ in range(3)]


# -- the schema is checked on open (#13 item 12) ---------------------------------------------


_UNTYPED = (  # a version column without INTEGER affinity keeps '1' as text
    "DROP TABLE flowplan_schema",
    "CREATE TABLE flowplan_schema (version)",
)


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        ((*_UNTYPED, "INSERT INTO flowplan_schema VALUES ('1')"), "'1' (text)"),
        (("UPDATE flowplan_schema SET version = 'v1'",), "'v1' (text)"),
        (("UPDATE flowplan_schema SET version = 1.5",), "1.5 (real)"),
        (("UPDATE flowplan_schema SET version = x'01'",), "b'\\x01' (blob)"),
        (("UPDATE flowplan_schema SET version = 0",), "0"),
    ],
)
def test_a_schema_version_that_is_not_a_positive_integer_is_a_clear_error(
    registry: Registry, tmp_path: Path, damage: tuple[str, ...], found: str
) -> None:
    db = tmp_path / "runs.db"
    _three_runs(db)
    _edit(db, *damage)
    before = _digest(db)
    with pytest.raises(StoreError) as caught:
        SqliteStateStore(db)
    message = str(caught.value)
    assert f"schema version {found}, not a positive integer" in message
    assert "left untouched" in message
    assert "backup" in message  # what to do
    assert caught.value.path == str(db)
    assert _digest(db) == before


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            (  # a tasks table without error_kind, as an old tool or a bad edit leaves it
                "CREATE TABLE t2 AS SELECT run_id, name, status, attempts, payload, has_value, "
                "released, error_type, error_message, error_traceback, started_at, finished_at, "
                "duration_ms, reason, root_cause, cached, step_key, retry_delays, overridden, "
                "owner_pid, owner_token, owner_host, updated_at FROM tasks",
                "DROP TABLE tasks",
                "ALTER TABLE t2 RENAME TO tasks",
            ),
            "table 'tasks' lacks the column 'error_kind'",
        ),
        (("ALTER TABLE runs DROP COLUMN detached",), "table 'runs' lacks the column 'detached'"),
        (("DROP TABLE runs",), "the table 'runs' is missing"),
        (
            (  # same columns, but no primary key: upserts could never find a task's row
                "CREATE TABLE t2 AS SELECT * FROM tasks",
                "DROP TABLE tasks",
                "ALTER TABLE t2 RENAME TO tasks",
            ),
            "table 'tasks' has the primary key () instead of (run_id, name)",
        ),
    ],
)
def test_a_table_missing_a_column_or_its_key_is_refused_and_left_untouched(
    registry: Registry, tmp_path: Path, damage: tuple[str, ...], expected: str
) -> None:
    db = tmp_path / "runs.db"
    _three_runs(db)
    _edit(db, *damage)
    before = _digest(db)
    with pytest.raises(StoreError, match="left untouched") as caught:
        SqliteStateStore(db)
    assert expected in str(caught.value)
    assert _digest(db) == before


def test_extra_tables_and_columns_are_accepted(registry: Registry, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first = _three_runs(db)[0]
    _edit(db, "ALTER TABLE runs ADD COLUMN note TEXT", "CREATE TABLE my_notes (x)")
    with SqliteStateStore(db) as store:
        assert store.load(first).records["two"].value == 2
    assert _three_runs(db)  # and it can still be written


# -- a damaged row costs only its own run (#13 item 7) -------------------------------------------

DAMAGES = [
    ("tasks", "'not json at all'", "not valid JSON"),
    ("detached", "'{\"a\": 1}'", "not a JSON list of task names"),
    ("targets", "'[1, 2]'", "not a JSON list of task names"),
    ("created_at", "'yesterday'", "not a number"),
    ("finished_at", "x'00'", "not a number"),
    ("dag_name", "CAST(x'ff41' AS TEXT)", "UnicodeDecodeError"),  # text that is not UTF-8
    ("resumed_from", "x'ffff'", "UnicodeDecodeError"),  # a BLOB that is no escaped string
]


@pytest.mark.parametrize(("column", "value", "problem"), DAMAGES)
def test_a_damaged_runs_row_costs_only_that_run(
    registry: Registry, tmp_path: Path, column: str, value: str, problem: str
) -> None:
    db = tmp_path / "runs.db"
    good, bad, last = _three_runs(db)
    _edit(db, f"UPDATE runs SET {column} = {value} WHERE run_id = '{bad}'")
    with SqliteStateStore(db) as store:
        listed = {info.run_id: info for info in store.list_runs()}
        assert set(listed) == {good, bad, last}
        assert listed[bad].status == "damaged"
        damage = listed[bad].damage or ""
        assert f"column {column!r}" in damage
        assert problem in damage
        assert (listed[good].damage, listed[good].status) == (None, "succeeded")
        for intact in (good, last):
            assert store.load(intact).records["two"].value == 2
            assert store.get_run(intact).tasks == ("one", "two")
        for read in (store.load, store.get_run):
            with pytest.raises(StoreError) as caught:
                read(bad)
            assert (caught.value.run_id, caught.value.column) == (bad, column)
            assert f"run {bad!r}" in str(caught.value)
            assert f"column {column!r}" in str(caught.value)
            assert "other runs are unaffected" in str(caught.value)


def test_a_task_row_with_text_that_is_not_utf8_costs_only_that_task(
    registry: Registry, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    good, bad, _ = _three_runs(db)
    _edit(
        db, f"UPDATE tasks SET reason = CAST(x'ff' AS TEXT) WHERE run_id = '{bad}' AND name = 'one'"
    )
    with SqliteStateStore(db) as store:
        records = store.load(bad).records
        assert records["one"].status is TaskStatus.FAILED  # runs again on resume
        assert records["one"].error is not None
        assert "cannot be read" in records["one"].error.message
        assert records["two"].value == 2
        assert store.load(good).records["one"].value == 1


def test_recovery_on_open_skips_damaged_running_rows(registry: Registry, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    good, bad, _ = _three_runs(db)
    _edit(
        db,  # two crashed runs (RUNNING rows of a dead process), one with damaged text
        "UPDATE runs SET status = 'running', owner_pid = 999999999 WHERE run_id IN "
        f"('{good}', '{bad}')",
        "UPDATE tasks SET status = 'running', owner_pid = 999999999 WHERE run_id IN "
        f"('{good}', '{bad}') AND name = 'two'",
        f"UPDATE tasks SET owner_host = CAST(x'ff' AS TEXT) WHERE run_id = '{bad}'",
        f"UPDATE runs SET owner_host = CAST(x'ff' AS TEXT) WHERE run_id = '{bad}'",
    )
    with SqliteStateStore(db, recover=True) as store:  # as every flowplan command opens it
        assert store.get_run(good).status == "failed"  # recovered
        assert store.load(good).records["two"].status is TaskStatus.FAILED
        assert store.load(bad).records["one"].value == 1  # loads; its damaged rows left alone


CLI_PIPELINE = """
from flowplan import task


@task
def one() -> int:
    return 1


@task(depends_on=[one])
def two(one: int) -> int:
    return one + 1
"""


def test_the_cli_lists_a_damaged_run_and_shows_the_others(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(CLI_PIPELINE)
    env = {k: v for k, v in os.environ.items() if k != "FLOWPLAN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)

    def flowplan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowplan", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for _ in range(2):
        assert flowplan("run", "pipeline.py").returncode == 0
    db = tmp_path / ".flowplan" / "runs.db"
    conn = sqlite3.connect(db)
    try:
        good, bad = (row[0] for row in conn.execute("SELECT run_id FROM runs ORDER BY rowid"))
    finally:
        conn.close()
    _edit(db, f"UPDATE runs SET tasks = '[\"one\", ' WHERE run_id = '{bad}'")

    listed = flowplan("runs")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert " damaged " in rows[bad[:12]]
    assert "column 'tasks'" in rows[bad[:12]]
    assert "2 succeeded" in rows[good[:12]]
    shown = flowplan("show", good)
    assert shown.returncode == 0, shown.stderr
    assert "status    succeeded" in shown.stdout
    damaged = flowplan("show", bad[:10])
    assert damaged.returncode == 2
    assert damaged.stderr.startswith(f"flowplan: error: run {bad!r}")
    assert "column 'tasks'" in damaged.stderr
    assert len(damaged.stderr.strip().splitlines()) == 1
