"""Effects: idempotency keys, at-most-once attempts left in doubt, reconcile, crash-resume."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import flowplan
from flowplan import (
    Action,
    Flow,
    IdempotencyKeyError,
    InlineExecutor,
    InvalidOptionError,
    MemoryStore,
    NotDone,
    RecordingHook,
    Registry,
    StepState,
    TaskGraph,
    TaskInDoubt,
    TaskStatus,
    Timeout,
    Value,
    aexecute,
    current_attempt,
    execute,
    plan,
    simulate,
    task,
)
from flowplan._effects import idempotency_key
from flowplan.store import JournalStore, SqliteStateStore


def _key() -> str:
    ctx = current_attempt()
    assert ctx is not None
    key = ctx.idempotency_key
    assert key is not None
    return key


def _interrupted(graph: TaskGraph, **kwargs: Any) -> flowplan.Snapshot:
    """Run ``graph`` until a body raises KeyboardInterrupt; return the recorded snapshot."""
    with pytest.raises(KeyboardInterrupt) as info:
        execute(plan(graph), executor=InlineExecutor(), **kwargs)
    snap = info.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert isinstance(snap, flowplan.Snapshot)
    return snap


def _charge_graph(
    registry: Registry, calls: list[str], *, interrupt: bool = True, **options: Any
) -> TaskGraph:
    @task(registry=registry)
    def order() -> dict[str, Any]:
        return {"id": 7, "amount": 12.5}

    @task(registry=registry, effect="at_most_once", depends_on=[order], **options)
    def charge(order: dict[str, Any]) -> str:
        calls.append(_key())
        if interrupt and len(calls) == 1:
            raise KeyboardInterrupt  # the process "dies" mid-attempt
        return f"ch_{order['id']}"

    @task(registry=registry, depends_on=[charge])
    def receipt(charge: str) -> str:
        return f"receipt for {charge}"

    return TaskGraph.build([order, charge, receipt])


# -- at_most_once: in doubt, never run twice silently --------------------------------------------
def test_interrupted_at_most_once_is_in_doubt_on_resume_and_not_run(registry: Registry) -> None:
    calls: list[str] = []
    graph = _charge_graph(registry, calls)
    snap = _interrupted(graph)
    assert snap["charge"].error is not None
    assert snap["charge"].error.kind == "interrupted"

    resumed_plan = plan(graph, snap)
    assert resumed_plan.action("charge") is Action.IN_DOUBT
    assert "outcome was lost" in resumed_plan.explain("charge")
    hook = RecordingHook()
    store = MemoryStore()
    again = execute(resumed_plan, hooks=[hook], store=store)

    assert len(calls) == 1  # never silently run a second time
    record = again["charge"]
    assert record.status is TaskStatus.IN_DOUBT
    assert record.attempts == 1
    assert record.reason is not None
    assert "override()" in record.reason
    assert again["receipt"].status is TaskStatus.SKIPPED
    assert again["receipt"].root_cause == "charge"
    assert store.status(resumed_plan.run_id) == "failed"
    assert [e.task for e in hook.events if isinstance(e, TaskInDoubt)] == ["charge"]
    # still in doubt on the next resume: nothing settled it
    third = plan(graph, again)
    assert third.action("charge") is Action.IN_DOUBT
    assert "still in doubt" in third.explain("charge")


def test_override_and_rerun_settle_an_in_doubt_task(registry: Registry) -> None:
    calls: list[str] = []
    graph = _charge_graph(registry, calls)
    in_doubt = execute(plan(graph, _interrupted(graph)))
    assert in_doubt["charge"].status is TaskStatus.IN_DOUBT

    overridden = execute(plan(graph, in_doubt, overrides={"charge": "ch_manual"}))
    assert overridden.value("receipt") == "receipt for ch_manual"
    assert len(calls) == 1

    rerun = execute(plan(graph, in_doubt, rerun=["charge"]))
    assert rerun.value("charge") == "ch_7"
    assert len(calls) == 2
    assert calls[0] == calls[1]  # same lineage and inputs: same idempotency key


@pytest.mark.parametrize(
    ("verdict", "status", "ran"),
    [("ch_found", TaskStatus.SUCCEEDED, False), (NotDone, TaskStatus.SUCCEEDED, True)],
)
def test_reconcile_decides_whether_the_lost_attempt_took_effect(
    registry: Registry, verdict: object, status: TaskStatus, ran: bool
) -> None:
    calls: list[str] = []
    seen: list[dict[str, Any]] = []

    def reconcile(order: dict[str, Any]) -> object:
        seen.append(order)
        return verdict

    graph = _charge_graph(registry, calls, reconcile=reconcile)
    snap = _interrupted(graph)
    assert seen == []  # never called in the run that lost the attempt
    again = execute(plan(graph, snap))
    assert seen == [{"id": 7, "amount": 12.5}]  # called with the dependency values
    assert again["charge"].status is status
    assert len(calls) == (2 if ran else 1)
    if ran:
        assert again.value("receipt") == "receipt for ch_7"
    else:
        assert again.value("receipt") == "receipt for ch_found"
        assert "reconcile() reported" in (again["charge"].reason or "")


def test_reconcile_that_raises_fails_the_task(registry: Registry) -> None:
    def reconcile(order: dict[str, Any]) -> str:
        raise ConnectionError("payments API down")

    graph = _charge_graph(registry, [], reconcile=reconcile)
    again = execute(plan(graph, _interrupted(graph)))
    record = again["charge"]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "reconcile"
    assert "payments API down" in (record.reason or "")
    assert again["receipt"].status is TaskStatus.SKIPPED


def test_running_record_from_a_dead_process_is_in_doubt(registry: Registry) -> None:
    graph = _charge_graph(registry, [])
    crashed = flowplan.Snapshot(
        "dead",
        {
            "order": flowplan.TaskRecord(
                "order", TaskStatus.SUCCEEDED, 1, {"id": 7, "amount": 12.5}, True
            ),
            "charge": flowplan.TaskRecord("charge", TaskStatus.RUNNING, 2, started_at=1.0),
        },
    )
    decided = plan(graph, crashed)
    assert decided.action("charge") is Action.IN_DOUBT
    assert "attempt 2 started and no outcome was recorded" in decided.explain("charge")
    # the same record for a task without effect="at_most_once" just runs again
    failed = flowplan.TaskRecord("order", TaskStatus.RUNNING, 1, started_at=1.0)
    assert plan(graph, crashed.with_record(failed)).action("order") is Action.RUN


def test_at_most_once_timeout_is_in_doubt_in_the_same_run_and_never_retried(
    registry: Registry,
) -> None:
    started: list[int] = []
    release = threading.Event()

    @task(
        registry=registry, effect="at_most_once", timeout_s=0.05, retry=3, retry_backoff_base_ms=0
    )
    def slow() -> int:
        started.append(1)
        release.wait(5)
        return 1

    snap = execute(plan(TaskGraph.build([slow])))
    release.set()
    record = snap["slow"]
    assert record.status is TaskStatus.IN_DOUBT
    assert started == [1]  # retries=3, yet no second attempt
    assert "timed out after 0.05s and may still take effect" in (record.reason or "")


def test_async_at_most_once_timeout_is_in_doubt(registry: Registry) -> None:
    @task(registry=registry, effect="at_most_once", timeout_s=0.05, retry=2)
    async def call_api() -> int:
        await asyncio.sleep(5)
        return 1

    snap = asyncio.run(aexecute(plan(TaskGraph.build([call_api]))))
    assert snap["call_api"].status is TaskStatus.IN_DOUBT
    assert snap["call_api"].attempts == 1


def test_simulated_timeout_of_at_most_once_is_in_doubt(registry: Registry) -> None:
    @task(registry=registry, effect="at_most_once", timeout_s=1.0, retry=2)
    def send() -> str:
        return "sent"

    @task(registry=registry, effect="idempotent", timeout_s=1.0, retry=2)
    def upsert() -> str:
        return "ok"

    sim = simulate(
        plan(TaskGraph.build([send, upsert])),
        {"send": [Timeout()], "upsert": [Timeout(), Value("ok")]},
    )
    assert sim.snapshot["send"].status is TaskStatus.IN_DOUBT
    assert sim.snapshot.value("upsert") == "ok"


# -- stores -----------------------------------------------------------------------------------
def test_a_store_that_cannot_record_starts_refuses_at_most_once(
    registry: Registry, tmp_path: Path
) -> None:
    graph = _charge_graph(registry, [])
    with pytest.raises(
        InvalidOptionError, match=r"task 'charge' has effect='at_most_once'"
    ) as info:
        execute(plan(graph), store=JournalStore(tmp_path / "j.jsonl"))
    assert info.value.task == "charge"
    assert "SqliteStateStore" in str(info.value)


def test_flow_with_only_a_journal_refuses_at_most_once(registry: Registry, tmp_path: Path) -> None:
    @task(registry=registry, effect="at_most_once")
    def send() -> str:
        return "sent"

    flow = Flow(send, journal_path=tmp_path / "j.jsonl", registry=registry)
    with pytest.raises(InvalidOptionError, match="cannot record that an attempt started"):
        flow.run()


def test_batched_sqlite_commits_the_start_before_the_body_runs(
    registry: Registry, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    seen: list[tuple[str]] = []

    @task(registry=registry, effect="at_most_once")
    def send() -> str:
        other = sqlite3.connect(db)  # another connection sees only committed rows
        try:
            row = other.execute("SELECT status FROM tasks WHERE name = 'send'").fetchone()
        finally:
            other.close()
        seen.append(row)
        return "sent"

    with SqliteStateStore(db, commit_every=1000, commit_interval_s=None) as store:
        snap = execute(plan(TaskGraph.build([send])), store=store)
    assert snap.value(send) == "sent"
    assert seen == [("running",)]


def test_sqlite_keeps_the_lineage_across_chained_resumes(
    registry: Registry, tmp_path: Path
) -> None:
    keys: list[str] = []

    @task(registry=registry)
    def amount() -> int:
        return 5

    @task(registry=registry, effect="idempotent", depends_on=[amount])
    def pay(amount: int) -> int:
        keys.append(_key())
        raise KeyboardInterrupt

    graph = TaskGraph.build([amount, pay])
    with SqliteStateStore(tmp_path / "runs.db") as store:
        first = _interrupted(graph, store=store)
        second_plan = plan(graph, store.load(first.run_id))
        with pytest.raises(KeyboardInterrupt):
            execute(second_plan, store=store, executor=InlineExecutor())
        third_plan = plan(graph, store.load(second_plan.run_id))
    assert third_plan.lineage_id == first.run_id
    assert len(keys) == 2
    assert keys[0] == keys[1]


# -- idempotency keys -------------------------------------------------------------------------
def test_idempotency_key_is_stable_across_retries_and_changes_with_inputs(
    registry: Registry,
) -> None:
    keys: list[str] = []

    @task(registry=registry)
    def amount() -> int:
        return 5

    @task(
        registry=registry,
        effect="idempotent",
        retry=2,
        retry_backoff_base_ms=0,
        depends_on=[amount],
    )
    def pay(amount: int) -> int:
        keys.append(_key())
        if len(keys) < 3:
            raise ConnectionError("flaky")
        return amount

    @task(registry=registry)
    def plain() -> str | None:
        ctx = current_attempt()
        assert ctx is not None
        return ctx.idempotency_key

    graph = TaskGraph.build([amount, pay, plain])
    snap = execute(plan(graph, run_id="run-1"))
    assert snap.value(pay) == 5
    assert snap.value(plain) is None  # no effect declared: no key
    assert len(set(keys)) == 1
    assert keys[0] == idempotency_key("run-1", "pay", {"amount": 5})
    assert keys[0] != idempotency_key("run-1", "pay", {"amount": 6})
    assert keys[0] != idempotency_key("run-2", "pay", {"amount": 5})
    assert len(keys[0]) == 64


def test_idempotency_key_refuses_inputs_without_a_stable_fingerprint(registry: Registry) -> None:
    @task(registry=registry)
    def conn() -> dict[str, object]:
        return {"handle": object()}

    @task(registry=registry, effect="idempotent", depends_on=[conn])
    def use(conn: dict[str, object]) -> str:
        return _key()

    snap = execute(plan(TaskGraph.build([conn, use])))
    error = snap["use"].error
    assert error is not None
    assert isinstance(error.exception, IdempotencyKeyError)
    assert error.exception.path == "conn['handle']"
    assert error.exception.value_type == "builtins.object"
    assert "have the upstream task return plain data" in error.message


def test_idempotency_key_covers_structured_values() -> None:
    import dataclasses
    import datetime

    @dataclasses.dataclass
    class Item:
        sku: str
        when: datetime.date

    one = {"items": [Item("a", datetime.date(2026, 1, 2))], "tags": {"x", "y"}}
    two = {"tags": {"y", "x"}, "items": [Item("a", datetime.date(2026, 1, 2))]}
    assert idempotency_key("r", "t", {"o": one}) == idempotency_key("r", "t", {"o": two})
    changed = {"items": [Item("a", datetime.date(2026, 1, 3))], "tags": {"x", "y"}}
    assert idempotency_key("r", "t", {"o": one}) != idempotency_key("r", "t", {"o": changed})
    assert idempotency_key("r", "t", {"o": (1, 2)}) != idempotency_key("r", "t", {"o": [1, 2]})


def test_idempotent_retry_after_a_timeout_starts_at_once(registry: Registry) -> None:
    release = threading.Event()

    @task(registry=registry, effect="pure", timeout_s=0.05, retry=1, retry_backoff_base_ms=0)
    def compute() -> int:
        ctx = current_attempt()
        assert ctx is not None
        if ctx.attempt == 1:
            release.wait(5)  # abandoned; a pure retry does not wait for it
        return 3

    start = time.perf_counter()
    snap = execute(plan(TaskGraph.build([compute])))
    took = time.perf_counter() - start
    release.set()
    assert snap.value(compute) == 3
    assert took < 2.0


def test_idempotency_key_is_the_same_in_a_worker_process(registry: Registry) -> None:
    snap = execute(
        plan(TaskGraph.build([_remote_amount, _remote_pay]), run_id="run-remote"),
        executor=flowplan.ProcessExecutor(1),
    )
    assert snap.value(_remote_pay) == idempotency_key(
        "run-remote", "_remote_pay", {"_remote_amount": 5}
    )


_remote_registry = Registry()


@task(registry=_remote_registry)
def _remote_amount() -> int:
    return 5


@task(registry=_remote_registry, effect="idempotent", depends_on=[_remote_amount])
def _remote_pay(_remote_amount: int) -> str:
    return _key()


# -- façades ----------------------------------------------------------------------------------
def test_flow_resume_and_override_settle_in_doubt(registry: Registry) -> None:
    calls: list[str] = []
    graph = _charge_graph(registry, calls)
    flow = Flow(graph.specs["receipt"], registry=registry)
    with pytest.raises(KeyboardInterrupt):
        flow.run()
    results = flow.resume()
    assert results["charge"].state is StepState.IN_DOUBT
    assert results["receipt"].state is StepState.SKIPPED
    flow.override("charge", "ch_manual")
    assert flow.resume()["receipt"].value == "receipt for ch_manual"
    assert len(calls) == 1


def test_engine_task_takes_effect_and_reports_in_doubt() -> None:
    from flowplan.engine import TaskFailureEvent, build_default_engine, fn_hook

    failures: list[TaskFailureEvent] = []
    engine = build_default_engine(max_workers=2, hooks=[fn_hook(on_task_failure=failures.append)])
    release = threading.Event()
    try:

        @engine.task(dag="pay", effect="at_most_once", timeout_s=0.05, retries=2)
        def charge() -> str:
            release.wait(5)
            return "ch"

        run_id = asyncio.run(engine.run_once("pay"))
        release.set()
        report = engine.get_run_report(run_id)
        assert report["status"] == "FAILED"
        assert report["tasks"]["charge"]["status"] == "IN_DOUBT"
        assert "may still take effect" in report["tasks"]["charge"]["error"]
        assert [(f.task_name, f.error[:9]) for f in failures] == [("charge", "in doubt:")]
        resumed = asyncio.run(engine.resume(run_id))
        assert engine.get_run_report(resumed)["tasks"]["charge"]["status"] == "IN_DOUBT"
    finally:
        engine.close()


def test_engine_resumes_keep_the_idempotency_key() -> None:
    from flowplan.engine import build_default_engine

    engine = build_default_engine(max_workers=2)
    keys: list[str] = []
    try:

        @engine.task(dag="sync", effect="idempotent")
        def push() -> int:
            keys.append(_key())
            if len(keys) < 3:
                raise ConnectionError("remote down")
            return len(keys)

        first = asyncio.run(engine.run_once("sync"))
        second = asyncio.run(engine.resume(first))
        third = asyncio.run(engine.resume(second))  # a resume of a resume: same lineage
        assert engine.get_run_report(third)["status"] == "SUCCESS"
        assert len(keys) == 3
        assert len(set(keys)) == 1
        fresh = asyncio.run(engine.run_once("sync"))  # a new run: a new lineage, a new key
        assert engine.get_run_report(fresh)["status"] == "SUCCESS"
        assert keys[3] != keys[0]
    finally:
        engine.close()


# -- crash-resume in real processes (SIGKILL mid-attempt) -------------------------------------
_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from flowplan import Registry, TaskGraph, current_attempt, execute, plan, task
    from flowplan.store import SqliteStateStore

    db, calls, effect, phase = sys.argv[1:5]
    reg = Registry()

    @task(registry=reg)
    def order():
        return {"id": 7, "amount": 12.5}

    @task(registry=reg, effect=effect, depends_on=[order])
    def charge(order):
        with open(calls, "a") as out:
            out.write(f"{phase} {current_attempt().idempotency_key}\\n")
        if phase == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return f"ch_{order['id']}"

    graph = TaskGraph.build([order, charge])
    with SqliteStateStore(db, commit_every=100) as store:
        if phase == "crash":
            execute(plan(graph), store=store)
        else:
            snap = execute(plan(graph, store.load(store.list_runs()[-1].run_id)), store=store)
            print(json.dumps({n: r.status.value for n, r in snap.records.items()}))
    """
)


def _phase(tmp_path: Path, effect: str, phase: str) -> tuple[int, str]:
    script = tmp_path / "crash_pipeline.py"
    script.write_text(_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [str(tmp_path / "runs.db"), str(tmp_path / "calls.txt"), effect, phase]
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout


@pytest.mark.parametrize(
    ("effect", "charge_after_resume", "bodies"),
    [("at_most_once", "in_doubt", 1), ("idempotent", "succeeded", 2), ("pure", "succeeded", 2)],
)
def test_sigkill_mid_attempt_then_resume_honours_the_effect(
    tmp_path: Path, effect: str, charge_after_resume: str, bodies: int
) -> None:
    code, _ = _phase(tmp_path, effect, "crash")
    assert code == -9  # killed by SIGKILL in the middle of the attempt
    code, out = _phase(tmp_path, effect, "resume")
    assert code == 0
    statuses = json.loads(out.strip().splitlines()[-1])
    assert statuses["charge"] == charge_after_resume
    lines = (tmp_path / "calls.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == bodies  # at_most_once: never run again after the crash
    keys = {line.split()[1] for line in lines}
    assert len(keys) == 1  # the resumed attempt got the crashed attempt's idempotency key
