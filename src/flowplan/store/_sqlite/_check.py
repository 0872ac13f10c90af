"""What a store file must hold before the SQLite store writes to it: checked on open.

Place in the data flow: store (SQLite), when a file is opened. The check only reads: a file
that fails it is refused with a :class:`~flowplan.errors.StoreError` saying what is wrong, and
left untouched. It is table-driven — :data:`REQUIRED_COLUMNS` and :data:`PRIMARY_KEYS` list,
per table, what every flowplan store file of this schema version has. Extra tables and extra
columns are allowed (the CLI keeps a table of its own in the same file). A column that a later
schema version adds to older files on open (a migration) is listed here once every file that
passes the version check has it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from flowplan.store._sqlite._rows import TASK_COLUMNS

__all__ = ["PRIMARY_KEYS", "REQUIRED_COLUMNS", "schema_problem", "schema_version_problem"]

REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "flowplan_schema": ("version",),
    "runs": (
        "run_id",
        "dag_name",
        "tasks",
        "detached",
        "targets",
        "resumed_from",
        "created_at",
        "finished_at",
        "status",
        "owner_pid",
        "owner_token",
        "owner_host",
    ),
    "tasks": TASK_COLUMNS,
}
"""Table → the columns it must have (in any order, among others)."""

PRIMARY_KEYS: Mapping[str, tuple[str, ...]] = {"runs": ("run_id",), "tasks": ("run_id", "name")}
"""Table → its primary key, which the store's upserts (``ON CONFLICT``) rely on."""


def schema_version_problem(conn: sqlite3.Connection, supported: int) -> tuple[str, int | None]:
    """What is wrong with the file's ``flowplan_schema`` versions ("" when nothing), and the
    version it holds (``None`` when the table is empty)."""
    rows = conn.execute("SELECT version, typeof(version) FROM flowplan_schema").fetchall()
    for version, kind in rows:
        if kind != "integer" or version < 1:
            shown = f"{version!r} ({kind})" if kind != "integer" else str(version)
            return f"it holds schema version {shown}, not a positive integer", None
    found = max((row[0] for row in rows), default=None)
    if found is not None and found > supported:
        return (
            f"it uses schema version {found}, newer than this flowplan supports ({supported}); "
            "upgrade flowplan to read it"
        ), found
    return "", found


def schema_problem(conn: sqlite3.Connection, tables: set[str]) -> str:
    """What the file lacks of :data:`REQUIRED_COLUMNS` and :data:`PRIMARY_KEYS` ("" when
    nothing)."""
    problems: list[str] = []
    for table, required in REQUIRED_COLUMNS.items():
        if table not in tables:
            problems.append(f"the table {table!r} is missing")
            continue
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        present = {row[1] for row in info}
        missing = [column for column in required if column not in present]
        if missing:
            listed = ", ".join(repr(c) for c in missing)
            problems.append(
                f"its table {table!r} lacks the column{'s' * (len(missing) > 1)} {listed}"
            )
        key = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        wanted = PRIMARY_KEYS.get(table)
        if wanted is not None and key != wanted:
            problems.append(
                f"its table {table!r} has the primary key ({', '.join(key)}) instead of "
                f"({', '.join(wanted)})"
            )
    return "; ".join(problems)
