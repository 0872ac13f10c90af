"""Run ownership in one process: a lineage of runs has one live owner per store, threads too.

The cross-process cases (three processes racing, a SIGKILLed owner taken over, ``recover``
and a run resumed under its own id) are in ``test_reliability_crash.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import flowplan
from flowplan import (
    Flow,
    RunOwnedError,
    TaskGraph,
    TaskStatus,
    execute,
    plan,
    task,
)
from flowplan.engine import MemoryRunStore, build_default_engine
from flowplan.errors import FlowplanError
from flowplan.store import SqliteStateStore

WAIT = 60.0  # seconds: generous bounds on a loaded machine; nothing here should take long


class Blocker:
    """A task body that blocks until released, and says when it started."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        self.started.set()
        assert self.release.wait(WAIT), "never released"
        return 1


@pytest.fixture
def blocker() -> Iterator[Blocker]:
    gate = Blocker()
    yield gate
    gate.release.set()


def _graph(registry: flowplan.Registry, blocker: Blocker) -> TaskGraph:
    """``fails`` fails in the first run only; ``hold`` (at most once) then blocks."""
    runs: list[int] = []

    @task(registry=registry)
    def fails() -> int:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        return 1

    @task(depends_on=[fails], registry=registry, name="hold", effect="at_most_once")
    def hold(fails: int) -> int:
        return blocker()

    @task(depends_on=[hold], registry=registry)
    def after(hold: int) -> int:
        return hold + 1

    return TaskGraph.build([fails, hold, after])


def _in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def test_a_second_thread_cannot_run_a_live_run_again_on_sqlite(
    tmp_path: Path, registry: flowplan.Registry, blocker: Blocker
) -> None:
    graph = _graph(registry, blocker)
    with SqliteStateStore(tmp_path / "s.db") as store:
        execute(plan(graph, run_id="r1"), store=store)  # fails: resumable
        thread, out = _in_thread(
            lambda: execute(plan(graph, store.load("r1"), run_id="r2"), store=store)
        )
        assert blocker.started.wait(WAIT)
        for run_id in ("r3", "r1"):  # a new resume, and a resume under the first id
            with pytest.raises(RunOwnedError) as caught:
                execute(plan(graph, store.load("r1"), run_id=run_id), store=store)
            err = caught.value
            assert isinstance(err, FlowplanError)
            assert isinstance(err, RuntimeError)
            assert (err.run_id, err.lineage_id, err.owner_run_id) == (run_id, "r1", "r2")
            assert (err.owner_pid, err.owner_host) == (os.getpid(), socket.gethostname())
            assert "this process" in str(err)
            assert "on another thread" in str(err)
            assert "wait for that run to finish" in str(err)
        # the refusals wrote nothing: no run r3, r1 still failed, r2 untouched
        assert [info.run_id for info in store.list_runs()] == ["r1", "r2"]
        assert store.get_run("r1").status == "failed"
        assert store.load("r2")["hold"].status is TaskStatus.RUNNING
        blocker.release.set()
        thread.join(WAIT)
        (done,) = out
        assert isinstance(done, flowplan.Snapshot)
        assert done.value("after") == 2
        assert blocker.calls == 1  # the at-most-once body ran once
        # finished: the lineage is free again (everything is reused, nothing runs)
        again = execute(plan(graph, store.load("r2"), run_id="r4"), store=store)
        assert again.value("after") == 2
        assert blocker.calls == 1


def test_two_stores_on_one_file_in_one_process_share_the_owner(
    tmp_path: Path, registry: flowplan.Registry, blocker: Blocker
) -> None:
    graph = _graph(registry, blocker)
    db = tmp_path / "s.db"
    with SqliteStateStore(db) as first, SqliteStateStore(db) as second:
        execute(plan(graph, run_id="r1"), store=first)  # fails
        thread, _ = _in_thread(lambda: execute(plan(graph, run_id="r1"), store=first))
        assert blocker.started.wait(WAIT)
        with pytest.raises(RunOwnedError, match="on another thread"):
            execute(plan(graph, run_id="r1"), store=second)
        blocker.release.set()
        thread.join(WAIT)


def test_the_engine_refuses_to_resume_a_run_live_on_another_thread(
    registry: flowplan.Registry, blocker: Blocker
) -> None:
    store = MemoryRunStore()
    engine = build_default_engine(state_store=store)

    @engine.task(name="hold", dag="d")
    def hold() -> int:
        return blocker()

    run_ids: list[str] = []

    def first() -> None:
        async def go() -> str:
            return await engine.run_once("d")

        run_ids.append(asyncio.run(go()))

    thread, _ = _in_thread(first)
    assert blocker.started.wait(WAIT)
    (live,) = [info.run_id for info in store.list_runs()]
    with pytest.raises(RunOwnedError) as caught:
        asyncio.run(engine.resume(live))
    assert caught.value.owner_run_id == live
    assert "this MemoryRunStore" in str(caught.value)
    assert [info.run_id for info in store.list_runs()] == [live]  # nothing recorded
    blocker.release.set()
    thread.join(WAIT)
    resumed = asyncio.run(engine.resume(live))  # finished: resumable at once
    assert engine.get_run_report(resumed)["status"] == "SUCCESS"
    assert blocker.calls == 1
    engine.close()


def test_a_run_the_engine_created_but_never_started_is_released(
    tmp_path: Path, registry: flowplan.Registry
) -> None:
    """A run that fails before it begins (an isolated task that cannot be pickled) keeps no
    ownership: resuming it in the same process gets that error again, not RunOwnedError."""
    lock = threading.Lock()  # cannot be sent to a child process
    with SqliteStateStore(tmp_path / "s.db") as store:
        engine = build_default_engine(state_store=store)

        @engine.task(name="isolated", dag="d", isolation="process")
        def isolated() -> int:
            with lock:
                return 1

        with pytest.raises(flowplan.SerializationError):
            asyncio.run(engine.run_once("d"))
        (info,) = store.list_runs()
        with pytest.raises(flowplan.SerializationError):
            asyncio.run(engine.resume(info.run_id))
        engine.close()


def test_flow_refuses_a_second_run_while_one_is_live(
    registry: flowplan.Registry, blocker: Blocker
) -> None:
    @task(registry=registry)
    def hold() -> int:
        return blocker()

    flow = Flow(hold, registry=registry)
    thread, _ = _in_thread(flow.run)
    assert blocker.started.wait(WAIT)
    with pytest.raises(RunOwnedError, match="in this Flow"):
        flow.resume()
    blocker.release.set()
    thread.join(WAIT)
    assert flow.value(hold) == 1
    flow.resume()  # finished: the Flow runs again
    assert blocker.calls == 1  # reused, not run again


def _forge_owner(db: Path, lineage: str, host: str, lease_until: float) -> None:
    """An owner row as another host's process writes it (there is no second host here)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "INSERT OR REPLACE INTO run_owners VALUES (?, ?, 'other-owner', 4242, 'tok', ?, ?, ?)",
            (lineage, lineage, host, time.time() - 5, lease_until),
        )
        conn.commit()
    finally:
        conn.close()


def test_another_hosts_owner_holds_until_its_lease_expires(
    tmp_path: Path, registry: flowplan.Registry
) -> None:
    @task(registry=registry)
    def one() -> int:
        return 1

    graph = TaskGraph.build([one])
    db = tmp_path / "s.db"
    SqliteStateStore(db).close()
    _forge_owner(db, "r1", "elsewhere.example", time.time() + 600)
    with SqliteStateStore(db) as store:
        with pytest.raises(RunOwnedError) as caught:
            execute(plan(graph, run_id="r1"), store=store)
        assert caught.value.owner_host == "elsewhere.example"
        assert "lease expires at" in str(caught.value)
        _forge_owner(db, "r1", "elsewhere.example", time.time() - 1)  # it stopped renewing
        assert execute(plan(graph, run_id="r1"), store=store).value(one) == 1


def test_a_live_run_renews_its_lease_and_frees_its_lineage_when_it_ends(
    tmp_path: Path, registry: flowplan.Registry, blocker: Blocker
) -> None:
    @task(registry=registry)
    def hold() -> int:
        return blocker()

    graph = TaskGraph.build([hold])
    db = tmp_path / "s.db"

    def lease() -> list[tuple[str, float]]:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT run_id, lease_until FROM run_owners").fetchall()
        finally:
            conn.close()

    with SqliteStateStore(db, owner_lease_s=0.4) as store:
        thread, _ = _in_thread(lambda: execute(plan(graph, run_id="r1"), store=store))
        assert blocker.started.wait(WAIT)
        ((run_id, first),) = lease()
        deadline = time.monotonic() + WAIT
        while lease()[0][1] <= first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.05)
        assert run_id == "r1"
        blocker.release.set()
        thread.join(WAIT)
        assert lease() == []  # finished: nobody owns the lineage


def test_an_unknown_owner_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(flowplan.InvalidOptionError, match="owner_lease_s"):
        SqliteStateStore(tmp_path / "s.db", owner_lease_s=-1)


def test_a_version_1_file_is_migrated_and_its_runs_resume(
    tmp_path: Path, registry: flowplan.Registry
) -> None:
    @task(registry=registry)
    def one() -> int:
        return 1

    @task(depends_on=[one], registry=registry)
    def two(one: int) -> int:
        return one + 1

    graph = TaskGraph.build([one, two])
    db = tmp_path / "old.db"
    with SqliteStateStore(db) as store:
        execute(plan(graph, targets=[one], run_id="old"), store=store)
    conn = sqlite3.connect(db)  # make it a version-1 file: no owners table
    conn.execute("DROP TABLE run_owners")
    conn.execute("UPDATE flowplan_schema SET version = 1")
    conn.commit()
    conn.close()
    with SqliteStateStore(db) as store:
        resumed = execute(plan(graph, store.load("old"), run_id="new"), store=store)
    assert resumed.value(two) == 2
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT version FROM flowplan_schema").fetchall() == [(3,)]
        assert conn.execute("SELECT COUNT(*) FROM run_owners").fetchone() == (0,)
    finally:
        conn.close()
