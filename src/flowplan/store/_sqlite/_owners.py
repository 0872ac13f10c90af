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

from flowplan.store._owner import Owner, new_owner, owned_error, owner_live
from flowplan.store._sqltext import text

__all__ = ["claim", "live_runs", "release", "renew"]

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
    owner = new_owner(run_id, lease_s)
    conn.execute(
        f"INSERT OR REPLACE INTO run_owners (lineage_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, "
        "?, ?)",
        (lineage, owner.owner_id, run_id, owner.pid, owner.token, owner.host, owner.since,
         owner.lease_until),
    )  # fmt: skip
    return owner


def release(conn: sqlite3.Connection, lineage: str, owner_id: str) -> None:
    """``owner_id``'s run ended: its lineage is free (a newer owner's row is left alone)."""
    conn.execute(
        "DELETE FROM run_owners WHERE lineage_id = ? AND owner_id = ?", (lineage, owner_id)
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
