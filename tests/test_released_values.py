"""Released values (``retain_result=False``): a later run that needs one never repeats an effect.

A succeeded task's value released from memory is kept by durable stores (SQLite, the journal);
when it is truly gone (an in-memory snapshot or store), only an ``effect="pure"`` task is
recomputed — any other is settled like a lost outcome (IN_DOUBT: override, ``rerun=``,
``reconcile=``), and ``plan().explain()`` says so.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import flowplan
from flowplan import (
    Action,
    CallbackHook,
    Dependency,
    InlineExecutor,
    MemoryStore,
    NotDone,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    aexecute,
    execute,
    plan,
    task,
)
from flowplan.store import SqliteStateStore


class Payments:
    """A payment provider: every charge the task's body makes lands here."""

    def __init__(self) -> None:
        self.charges: list[str] = []

    def charge(self, order: dict[str, Any]) -> str:
        self.charges.append(f"ch_{order['id']}")
        return self.charges[-1]


def _shop(
    payments: Payments,
    *,
    effect: Any = "at_most_once",
    reconcile: Any = None,
) -> tuple[TaskGraph, dict[str, list[str]]]:
    """order → charge (released) → email; charge → audit. Returns the graph and who ran."""
    calls: dict[str, list[str]] = {"email": [], "audit": []}

    @task
    def order() -> dict[str, Any]:
        return {"id": 7, "amount": 12.5}

    @task(depends_on=[order], effect=effect, retain_result=False, reconcile=reconcile)
    def charge(order: dict[str, Any]) -> str:
        return payments.charge(order)

    @task(depends_on=[charge])
    def email(charge: str) -> str:
        calls["email"].append(charge)
        return f"receipt for {charge}"

    @task(depends_on=[charge])
    def audit(charge: str) -> str:
        calls["audit"].append(charge)
        return f"audited {charge}"

    return TaskGraph.build([order, charge, email, audit]), calls


def test_a_released_at_most_once_value_is_never_charged_twice_in_memory(
    registry: flowplan.Registry,
) -> None:
    payments = Payments()
    graph, calls = _shop(payments)
    first = execute(plan(graph, targets=["email"]), executor=InlineExecutor())
    assert payments.charges == ["ch_7"]
    assert first["charge"].released  # email was its only consumer in that run

    # a full run needs charge's value for audit: the value is gone, the charge happened
    full = plan(graph, first)
    assert full.action("charge") is Action.IN_DOUBT
    explained = full.explain("charge")
    assert "value was released (retain_result=False)" in explained
    assert "'audit' needs it" in explained
    assert "effect='at_most_once'" in explained
    second = execute(full, executor=InlineExecutor())
    assert payments.charges == ["ch_7"]  # never charged twice
    assert second["charge"].status is TaskStatus.IN_DOUBT
    assert "value was released" in (second["charge"].reason or "")
    assert second["audit"].status is TaskStatus.SKIPPED
    assert second["audit"].root_cause == "charge"

    # rerun= of a consumer needs the value too: still not charged again
    again = plan(graph, first, rerun=["email"])
    assert again.action("charge") is Action.IN_DOUBT
    execute(again, executor=InlineExecutor())
    assert payments.charges == ["ch_7"]

    # it stays in doubt on the next resume, until the user settles it
    assert plan(graph, second).action("charge") is Action.IN_DOUBT
    settled = execute(plan(graph, second, overrides={"charge": "ch_7"}))
    assert settled.value("audit") == "audited ch_7"
    assert payments.charges == ["ch_7"]
    assert calls["audit"] == ["ch_7"]

    # naming it in rerun= says "run it again": the only way to charge twice
    execute(plan(graph, second, rerun=["charge"]), executor=InlineExecutor())
    assert payments.charges == ["ch_7", "ch_7"]


def test_reconcile_settles_a_released_value_without_running_the_body(
    registry: flowplan.Registry,
) -> None:
    payments = Payments()

    def find_charge(order: dict[str, Any]) -> str | flowplan.NotDoneType:
        return next((c for c in payments.charges if c == f"ch_{order['id']}"), NotDone)

    graph, calls = _shop(payments, reconcile=find_charge)
    first = execute(plan(graph, targets=["email"]), executor=InlineExecutor())
    second = execute(plan(graph, first), executor=InlineExecutor())
    assert payments.charges == ["ch_7"]
    assert second["charge"].status is TaskStatus.SUCCEEDED
    assert second["charge"].attempts == 1  # the first run's attempt, not a new one
    assert "reconcile() reported" in (second["charge"].reason or "")
    assert second.value("audit") == "audited ch_7"
    assert calls["audit"] == ["ch_7"]


def test_a_memory_store_treats_a_released_value_as_gone(registry: flowplan.Registry) -> None:
    payments = Payments()
    graph, _ = _shop(payments)
    store = MemoryStore()
    first = execute(plan(graph, targets=["email"], run_id="r1"), store=store)
    assert first["charge"].released
    loaded = store.load("r1")
    assert plan(graph, loaded).action("charge") is Action.IN_DOUBT
    execute(plan(graph, loaded), store=store)
    assert payments.charges == ["ch_7"]


@pytest.mark.parametrize("commit_every", [1, 50])
def test_the_sqlite_store_keeps_a_released_value_so_nothing_runs_twice(
    registry: flowplan.Registry, tmp_path: Path, commit_every: int
) -> None:
    payments = Payments()
    graph, calls = _shop(payments)
    db = tmp_path / "runs.db"
    with SqliteStateStore(db, commit_every=commit_every) as store:
        first = execute(plan(graph, targets=["email"], run_id="r1"), store=store)
    assert first["charge"].released  # in memory
    with closing(sqlite3.connect(db)) as conn, conn:
        row = conn.execute(
            "SELECT status, has_value, payload IS NOT NULL FROM tasks "
            "WHERE run_id = 'r1' AND name = 'charge'"
        ).fetchone()
    assert row == ("succeeded", 1, 1)  # on disk: the value is kept

    with SqliteStateStore(db, commit_every=commit_every) as store:
        loaded = store.load("r1")
        assert loaded.value("charge") == "ch_7"
        full = plan(graph, loaded, run_id="r2")
        assert full.action("charge") is Action.REUSE
        second = execute(full, store=store)
        assert second.value("audit") == "audited ch_7"
        # and again, from the second run's rows (released in memory once audit succeeded)
        third = plan(graph, store.load("r2"), rerun=["audit"])
        assert third.action("charge") is Action.REUSE
        execute(third, store=store)
    assert payments.charges == ["ch_7"]
    assert calls["audit"] == ["ch_7", "ch_7"]


def test_an_in_memory_snapshot_of_a_sqlite_run_points_at_the_store(
    registry: flowplan.Registry, tmp_path: Path
) -> None:
    payments = Payments()
    graph, _ = _shop(payments)
    with SqliteStateStore(tmp_path / "runs.db") as store:
        first = execute(plan(graph, targets=["email"], run_id="r1"), store=store)
        planned = plan(graph, first)  # the in-memory snapshot lost the value; the store has it
        assert planned.action("charge") is Action.IN_DOUBT
        assert "store.load(run_id)" in planned.explain("charge")
        assert plan(graph, store.load("r1")).action("charge") is Action.REUSE


def test_a_pure_task_is_recomputed_and_explain_says_why(registry: flowplan.Registry) -> None:
    payments = Payments()
    graph, _ = _shop(payments, effect="pure")
    first = execute(plan(graph, targets=["email"]), executor=InlineExecutor())
    full = plan(graph, first)
    assert full.action("charge") is Action.RUN
    assert full.explain("charge") == (
        "run charge: its value was released (retain_result=False) and 'audit' needs it; "
        "effect='pure': recomputed"
    )
    execute(full, executor=InlineExecutor())
    assert payments.charges == ["ch_7", "ch_7"]


@pytest.mark.parametrize("effect", [None, "idempotent"])
def test_a_task_not_declared_pure_is_never_recomputed_silently(
    registry: flowplan.Registry, effect: Any
) -> None:
    payments = Payments()
    graph, _ = _shop(payments, effect=effect)
    first = execute(plan(graph, targets=["email"]), executor=InlineExecutor())
    full = plan(graph, first)
    assert full.action("charge") is Action.IN_DOUBT
    explained = full.explain("charge")
    assert "'audit' needs it" in explained
    assert "effect='pure'" in explained  # the fix, when recomputing is harmless
    second = execute(full, executor=InlineExecutor())
    assert payments.charges == ["ch_7"]
    assert second["charge"].status is TaskStatus.IN_DOUBT
    assert plan(graph, second).action("charge") is Action.IN_DOUBT  # and it stays so


def test_released_elements_of_a_fan_out_task_are_never_sent_twice(
    registry: flowplan.Registry,
) -> None:
    sent: list[str] = []

    @task
    def emails() -> list[str]:
        return ["a@x", "b@x"]

    @task(depends_on=[emails], fan_out=emails, effect="at_most_once", retain_result=False)
    def send(emails: str) -> str:
        sent.append(emails)
        return f"sent {emails}"

    @task(depends_on=[send])
    def count(send: list[str]) -> int:
        return len(send)

    @task(depends_on=[send])
    def audit(send: list[str]) -> str:
        return ", ".join(send)

    graph = TaskGraph.build([emails, send, count, audit])
    first = execute(plan(graph, targets=["count"]), executor=InlineExecutor())
    assert first["send[0]"].released
    full = plan(graph, first)
    assert "value was released" in full.explain("send")
    assert set(full.in_doubt) == {"send[0]", "send[1]"}
    second = execute(full, executor=InlineExecutor())
    assert sent == ["a@x", "b@x"]  # no element sent twice
    assert second["send[0]"].status is TaskStatus.IN_DOUBT
    assert second["audit"].status is TaskStatus.SKIPPED


def test_a_cache_miss_leaves_a_released_value_in_doubt_and_says_so(
    registry: flowplan.Registry,
) -> None:
    payments = Payments()
    graph, _ = _shop(payments, effect="at_most_once")
    first = execute(plan(graph, targets=["email"]), executor=InlineExecutor())
    # charge is not cache-eligible (not pure, no cache=True): the cache changes nothing
    again = plan(graph, first, cache=flowplan.MemoryCache())
    assert again.action("charge") is Action.IN_DOUBT
    execute(again, executor=InlineExecutor())
    assert payments.charges == ["ch_7"]


# -- memory: released values do not pile up on the thread driver ----------------------------

_MB = 1_000_000


def _big(**_: bytes) -> bytes:
    return bytes(_MB)  # a fresh 1 MB value per task


def _chain_peak(n: int, driver: str) -> int:
    """Peak traced bytes of a threaded run of an ``n``-task chain of released 1 MB values
    (``driver``: the run's own threads, quiet or with a hook, a ThreadPoolExecutor, or
    ``aexecute``)."""
    specs = [TaskSpec("t0", _big, retain_result=False)]
    specs += [
        TaskSpec(f"t{i}", _big, deps=(Dependency(f"t{i - 1}"),), retain_result=False)
        for i in range(1, n)
    ]
    planned = plan(TaskGraph.build(specs))
    gc.collect()
    tracemalloc.start()
    try:
        if driver == "pool":
            with ThreadPoolExecutor(4) as pool:
                snap = execute(planned, executor=pool)
        elif driver == "asyncio":
            snap = asyncio.run(asyncio.wait_for(aexecute(planned), timeout=120))
        else:
            hooks = [CallbackHook(lambda _: None)] if driver == "hooks" else []
            snap = execute(planned, hooks=hooks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert snap[f"t{n - 2}"].released
    return peak


@pytest.mark.parametrize("driver", ["quiet", "hooks", "pool", "asyncio"])
def test_released_values_keep_thread_runs_flat_in_memory(driver: str) -> None:
    # Each value is released once its consumer succeeded: whatever the chain's length, only a
    # bounded number of them may be alive at once (queued for the scheduler included).
    small, large = _chain_peak(60, driver), _chain_peak(240, driver)
    assert large < 24 * _MB, f"peak {large / _MB:.0f} MB for 240 tasks of 1 MB"
    assert large - small < 8 * _MB, f"peak grew {(large - small) / _MB:.0f} MB for 180 more"
