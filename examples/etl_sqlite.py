"""ETL on a real SQLite database, with a failure in the load step and a resume.

Run it with ``python examples/etl_sqlite.py``: it works in a temporary directory (removed
afterwards), creates a source database of orders, then runs extract → transform → load into a
warehouse table, recording the run in a flowplan SQLite store. The first load fails (an
injected fault); after the "fix", the run is resumed from the store: extract and transform are
reused, only load runs again.

Or through the command line, as a user would::

    flowplan run examples/etl_sqlite.py             # load fails (exit 1)
    ETL_FIXED=1 flowplan resume last                # load runs again; the rest is reused

There the databases live in ``$ETL_WORKDIR``, else ``.flowplan/etl-example`` (beside the
command's run store, out of git); importing this module creates nothing.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from flowplan import InlineExecutor, Registry, TaskGraph, execute, plan, task
from flowplan.store import SqliteStateStore

registry = Registry()
calls = {"extract": 0, "transform": 0, "load": 0}
FAULT = {"load": os.environ.get("ETL_FIXED") != "1"}  # the CLI walk-through sets ETL_FIXED=1


def workdir() -> Path:
    """Where the databases live: ``$ETL_WORKDIR``, else ``.flowplan/etl-example``."""
    path = Path(os.environ.get("ETL_WORKDIR") or Path(".flowplan", "etl-example"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_source() -> Path:
    """A small 'production' database of orders (created once); its path."""
    source = workdir() / "source.db"
    with closing(sqlite3.connect(source)) as db, db:  # closed after the commit
        db.execute(
            "CREATE TABLE IF NOT EXISTS orders "
            "(id INTEGER PRIMARY KEY, customer TEXT, cents INTEGER)"
        )
        if db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0:
            db.executemany(
                "INSERT INTO orders (customer, cents) VALUES (?, ?)",
                [("ada", 1250), ("bob", 4000), ("ada", 725), ("cy", 99), ("bob", 1)],
            )
    return source


@task(registry=registry)
def extract() -> list[tuple[str, int]]:
    """Read every order from the source database."""
    calls["extract"] += 1
    with closing(sqlite3.connect(make_source())) as db:
        return [(str(c), int(v)) for c, v in db.execute("SELECT customer, cents FROM orders")]


@task(depends_on=[extract], registry=registry)
def transform(extract: list[tuple[str, int]]) -> dict[str, float]:
    """Total spend per customer, in euros."""
    calls["transform"] += 1
    totals: dict[str, float] = {}
    for customer, cents in extract:
        totals[customer] = totals.get(customer, 0.0) + cents / 100
    return totals


@task(depends_on=[transform], registry=registry)
def load(transform: dict[str, float]) -> int:
    """Write the totals into the warehouse in one transaction; return the row count."""
    calls["load"] += 1
    with closing(sqlite3.connect(workdir() / "warehouse.db")) as db, db:  # one transaction
        db.execute("CREATE TABLE IF NOT EXISTS spend (customer TEXT PRIMARY KEY, euros REAL)")
        db.executemany("INSERT OR REPLACE INTO spend VALUES (?, ?)", sorted(transform.items()))
        if FAULT["load"]:
            raise sqlite3.OperationalError("disk I/O error (injected)")  # rolls back
        return int(db.execute("SELECT COUNT(*) FROM spend").fetchone()[0])


def main() -> None:
    """Run, fail in load, fix, resume from the store; print what happened."""
    FAULT["load"] = True
    graph = TaskGraph.build([extract, transform, load])
    with SqliteStateStore(workdir() / "runs.db") as store:
        first = execute(plan(graph), store=store, executor=InlineExecutor())
        print(f"first run: load {first['load'].status.value}: {first['load'].error}")

        FAULT["load"] = False  # "fix" the fault
        resumed_plan = plan(graph, store.load(first.run_id))  # could be another process
        print(resumed_plan.explain())
        second = execute(resumed_plan, store=store, executor=InlineExecutor())
        print(f"resumed run: load {second['load'].status.value}, rows = {second.value(load)}")

    with closing(sqlite3.connect(workdir() / "warehouse.db")) as db:
        rows = db.execute("SELECT customer, euros FROM spend ORDER BY customer").fetchall()
    print("warehouse:", ", ".join(f"{c}={e:.2f}" for c, e in rows))
    print(f"calls: extract={calls['extract']} transform={calls['transform']} load={calls['load']}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="flowplan-etl-") as tmp:
        os.environ["ETL_WORKDIR"] = tmp  # this process's databases, removed afterwards
        main()
