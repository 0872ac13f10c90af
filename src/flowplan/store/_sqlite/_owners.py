"""The ``run_owners`` table: which run (of which process) owns each lineage of runs.

Place in the data flow: store (SQLite), beside the ``runs`` and ``tasks`` tables. One row per
lineage that has (or had, if its owner died) a live run; the table is created with the others
(:data:`~flowplan.store._sqlite._rows.SCHEMA`, since schema version 2).
:mod:`flowplan.store._owner` says what an owner is and when it is live. Each function here
works inside the caller's transaction on the store's connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from flowplan.errors import RunOwnedError
from flowplan.store._owner import Owner, new_owner, owned_error, owner_live
from flowplan.store._sqlite._process import own_identity, owner_alive, process_token
from flowplan.store._sqltext import text

__all__ = ["claim", "live_runs", "note_process", "release", "renew"]

_COLUMNS = "owner_id, run_id, owner_pid, owner_token, owner_host, since, lease_until"


def _owner(row: Any) -> Owner:
    """A row selected as ``_COLUMNS`` as an :class:`Owner`."""
    return Owner(
        text(row[0]), text(row[1]), int(row[2]), text(row[3]), text(row[4]), float(row[5]),
        float(row[6]),
    )  # fmt: skip


def claim(conn: sqlite3.Connection, run_id: str, lineage: str, lease_s: float, where: str) -> Owner:
    """Make a new owner of this process own ``lineage`` for ``run_id``.

    Raises:
        RunOwnedError: a live owner (another process, or another run of this one) owns it;
            nothing is written.
    """
    found = conn.execute(
        f"SELECT {_COLUMNS} FROM run_owners WHERE lineage_id = ?", (lineage,)
    ).fetchone()
    if found is not None:
        current = _owner(found)
        if owner_live(current):
            raise owned_error(run_id, lineage, current, where)
    orphan_check(conn, run_id, lineage, where)
    owner = new_owner(run_id, lease_s)
    conn.execute(
        f"INSERT OR REPLACE INTO run_owners (lineage_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, "
        "?, ?)",
        (lineage, owner.owner_id, run_id, owner.pid, owner.token, owner.host, owner.since,
         owner.lease_until),
    )  # fmt: skip
    return owner


def release(conn: sqlite3.Connection, lineage: str, owner_id: str) -> None:
    """``owner_id``'s run ended: its lineage is free (a newer owner's row is left alone), and
    its attempts' child processes ended with it (killed or done)."""
    gone = conn.execute(
        "DELETE FROM run_owners WHERE lineage_id = ? AND owner_id = ?", (lineage, owner_id)
    )
    if gone.rowcount:
        conn.execute("DELETE FROM attempt_processes WHERE lineage_id = ?", (lineage,))


def note_process(conn: sqlite3.Connection, lineage: str, task: str, attempt: int, pid: int) -> None:
    """Record that ``task``'s ``attempt`` of ``lineage`` is sent to the child process ``pid``."""
    _, _, host = own_identity()
    conn.execute(
        "INSERT OR REPLACE INTO attempt_processes VALUES (?, ?, ?, ?, ?, ?, ?)",
        (lineage, task, attempt, pid, process_token(pid), host, time.time()),
    )


def orphan_check(conn: sqlite3.Connection, run_id: str, lineage: str, where: str) -> None:
    """Refuse to take ``lineage`` over while a child process of a dead owner still runs one of
    its ``at_most_once`` attempts (on a platform where children may outlive their parent):
    that attempt may still perform its effect, so its task must not start again.

    A child on another host cannot be checked from here; it is assumed to have died with its
    owner, whose lease expired.

    Raises:
        RunOwnedError: naming the task, the attempt and the child's pid.
    """
    _, _, own_host = own_identity()
    rows = conn.execute(
        "SELECT task, attempt, pid, token, host, started_at FROM attempt_processes "
        "WHERE lineage_id = ?",
        (lineage,),
    ).fetchall()
    for row in rows:
        task, attempt, pid, token = text(row[0]), int(row[1]), int(row[2]), row[3]
        host, since = text(row[4]), float(row[5])
        if host != own_host or not owner_alive(pid, None if token is None else text(token), host):
            continue
        raise RunOwnedError(
            f"run {run_id!r} cannot start: attempt {attempt} of task {task!r} (effect "
            f"'at_most_once') still runs in process {pid} on this host, a child of a dead "
            f"earlier run of lineage {lineage!r} in {where}; it may still perform its effect, so "
            f"the task must not start again. Wait for process {pid} to end, or stop it "
            f"(kill {pid}), then resume: the task is then in doubt as usual",
            run_id=run_id,
            lineage_id=lineage,
            owner_run_id=lineage,
            owner_pid=pid,
            owner_host=host,
            owner_since=since,
            lease_until=since,
            orphan_pid=pid,
            task=task,
        )


def renew(conn: sqlite3.Connection, owner_ids: Iterable[str], lease_s: float) -> None:
    """Extend the leases of ``owner_ids`` (their runs are live) to ``lease_s`` from now."""
    until = time.time() + lease_s
    conn.executemany(
        "UPDATE run_owners SET lease_until = ? WHERE owner_id = ?",
        [(until, owner_id) for owner_id in owner_ids],
    )


def live_runs(conn: sqlite3.Connection) -> set[str]:
    """The runs whose owners are live (``recover`` never touches them)."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM run_owners").fetchall()
    return {owner.run_id for owner in map(_owner, rows) if owner_live(owner)}
