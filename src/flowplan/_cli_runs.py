"""The CLI's run book: the store it opens, run-id lookup, and the target each run came from.

Place in the data flow: the CLI (application layer), beside the store. ``resume RUN_ID`` has to
import the definitions again, but :class:`~flowplan.store.RunInfo` has no field for "what to
import", so the CLI keeps one small table of its own, ``flowplan_cli_targets``, in the same
SQLite file (a separate connection; the store's own tables are never touched). Runs started by
library code have no row there; ``resume --target`` supplies it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from flowplan.errors import UnknownTaskError
from flowplan.store import RunInfo, SqliteStateStore, _sqltext

__all__ = [
    "UsageError",
    "find_run",
    "make_state_dir",
    "open_store",
    "read_deps",
    "read_target",
    "record_deps",
    "record_target",
]

_TABLE = (
    "CREATE TABLE IF NOT EXISTS flowplan_cli_targets (run_id TEXT PRIMARY KEY, "
    "target TEXT NOT NULL, workdir TEXT NOT NULL, dag TEXT, created_at REAL NOT NULL)"
)
_DEPS_TABLE = (  # a table of its own: run books written before --deps keep working
    "CREATE TABLE IF NOT EXISTS flowplan_cli_deps (run_id TEXT PRIMARY KEY, deps TEXT NOT NULL)"
)


class UsageError(Exception):
    """A mistake in how the command was called (exit code 2)."""


def open_store(path: str, *, create: bool) -> SqliteStateStore:
    """Open the run store; ``create=False`` refuses a missing file with a hint.

    Raises:
        UsageError: ``create`` is false and there is no store at ``path``.
        StoreError: the file is not a flowplan store.
    """
    if not create and not Path(path).exists():
        raise UsageError(
            f"no run store at {path!r} (nothing has run here yet); run 'flowplan run TARGET' "
            "first, or point --store at the store"
        )
    make_state_dir(Path(path).parent)
    return SqliteStateStore(path, recover=True)


_GITIGNORE = "# Created by flowplan automatically: local run state, not source.\n*\n"


def make_state_dir(directory: Path) -> None:
    """Create ``directory`` for the command's state; the topmost directory it creates gets a
    ``.gitignore`` of ``*`` (as pytest does for its cache), so the state never reaches git.

    A directory that already exists is the user's and is left as it is.
    """
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    if missing:
        (missing[-1] / ".gitignore").write_text(_GITIGNORE, encoding="utf-8")


def _connect(path: str) -> sqlite3.Connection:
    # Any str binds: a working directory that is not UTF-8 is stored escaped (see _sqltext).
    conn = sqlite3.connect(
        path, timeout=5.0, isolation_level=None, factory=_sqltext.TextSafeConnection
    )
    conn.execute(_TABLE)
    conn.execute(_DEPS_TABLE)
    return conn


def record_target(path: str, run_id: str, target: str, dag: str | None) -> None:
    """Remember which target ``run_id`` ran (for ``resume``)."""
    conn = _connect(path)
    try:
        conn.execute(
            "INSERT OR REPLACE INTO flowplan_cli_targets VALUES (?, ?, ?, ?, ?)",
            (run_id, target, os.getcwd(), dag, time.time()),
        )
    finally:
        conn.close()


def read_target(path: str, run_id: str) -> tuple[str, str, str | None] | None:
    """``(target, workdir, dag)`` recorded for ``run_id``, or ``None``."""
    conn = _connect(path)
    try:
        row = conn.execute(
            "SELECT target, workdir, dag FROM flowplan_cli_targets WHERE run_id = ?", (run_id,)
        ).fetchone()
    finally:
        conn.close()
    return (
        None
        if row is None
        else (_sqltext.text(row[0]), _sqltext.text(row[1]), _sqltext.text_or_none(row[2]))
    )


def record_deps(path: str, run_id: str, deps: str) -> None:
    """Remember the ``--deps`` ``run_id`` was given (``resume`` gives it again)."""
    conn = _connect(path)
    try:
        conn.execute("INSERT OR REPLACE INTO flowplan_cli_deps VALUES (?, ?)", (run_id, deps))
    finally:
        conn.close()


def read_deps(path: str, run_id: str) -> str | None:
    """The ``--deps`` recorded for ``run_id``, or ``None``."""
    conn = _connect(path)
    try:
        row = conn.execute(
            "SELECT deps FROM flowplan_cli_deps WHERE run_id = ?", (run_id,)
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else _sqltext.text(row[0])  # escaped when not UTF-8


def find_run(store: SqliteStateStore, text: str) -> RunInfo:
    """The run ``text`` names: a full id, a unique prefix of one, or ``last`` (the newest).

    Raises:
        UsageError: the prefix matches several runs, or the store has no runs for ``last``.
        UnknownTaskError: no run matches ("did you mean ...").
    """
    if text in ("last", "latest"):
        runs = store.list_runs()
        if not runs:
            raise UsageError(f"the store {store.path!r} has no runs yet")
        return runs[-1]
    try:
        return store.get_run(text)
    except UnknownTaskError:
        matches = [r for r in store.list_runs() if r.run_id.startswith(text)] if text else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(r.run_id[:12] for r in matches[:5])
            raise UsageError(
                f"run id prefix {text!r} matches {len(matches)} runs ({shown}); give more of it"
            ) from None
        raise
