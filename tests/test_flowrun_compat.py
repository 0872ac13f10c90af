"""flowrun's README programs, run unchanged except the import (``flowplan.engine``)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

import flowplan.engine as flowrun
from flowplan.engine import (
    RunContext,
    RunHook,
    TaskFailureEvent,
    TaskRegistry,
    TaskRetryEvent,
    TaskSkipEvent,
    build_default_engine,
    fn_hook,
    task,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_quick_start_runs_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    engine = build_default_engine(max_workers=4, max_parallel=3)

    @dataclass(frozen=True)
    class Deps:
        source_path: str

    @engine.task(name="extract", dag="daily_etl")
    def extract(context: RunContext[Deps]) -> list[dict[str, int]]:
        # flowrun's own quick start reads deps through the context: delegated at run time, an
        # error to type checkers (typed code reads context.deps.source_path)
        assert context.source_path == "/tmp/data.json"  # type: ignore[attr-defined]
        return [{"id": 1, "amount": 10}, {"id": 2, "amount": 15}]

    @engine.task(name="transform", dag="daily_etl", deps=[extract])
    def transform(extract: list[dict[str, int]]) -> dict[str, int]:
        total = sum(row["amount"] for row in extract)
        return {"rows": len(extract), "total": total}

    @engine.task(name="load", dag="daily_etl", deps=[transform])
    def load(transform: dict[str, int]) -> str:
        return f"loaded rows={transform['rows']} total={transform['total']}"

    reports: list[dict[str, Any]] = []

    async def main() -> None:
        ctx = RunContext(Deps(source_path="/tmp/data.json"))
        async with engine:
            engine.validate("daily_etl")
            run_id = await engine.run_once("daily_etl", context=ctx)
            report = engine.get_run_report(run_id)
            print(report["status"])  # SUCCESS | FAILED | RUNNING
            reports.append(report)

    asyncio.run(main())
    assert capsys.readouterr().out == "SUCCESS\n"
    assert reports[0]["tasks"]["load"]["result"] == "loaded rows=2 total=25"
    assert engine.closed
    # Decorated tasks stay plain functions for unit tests.
    assert transform([{"id": 1, "amount": 4}]) == {"rows": 1, "total": 4}


def test_dag_scope_declares_and_runs_without_repeating_dag() -> None:
    engine = build_default_engine()
    etl = engine.dag("daily_etl")

    @etl.task(name="extract")
    def extract() -> list[int]:
        return [1, 2, 3]

    @etl.task(name="sum_values", deps=[extract])
    def sum_values(extract: list[int]) -> int:
        return sum(extract)

    async def main() -> str:
        async with engine:
            etl.validate()
            return await etl.run_once()

    run_id = run(main())
    report = engine.get_run_report(run_id)
    assert report["dag_name"] == "daily_etl"
    assert report["tasks"]["sum_values"]["result"] == 6
    assert etl.list_tasks() == ["extract", "sum_values"]
    assert etl.display() == "daily_etl\n`-- extract\n    `-- sum_values"
    assert engine.list_dags() == ["daily_etl"]


def test_global_task_with_activated_registry_in_all_three_spellings() -> None:
    registry = TaskRegistry()
    token = registry.activate()

    @task
    def my_task() -> int:
        return 1

    @task("renamed", deps=[my_task])
    def second(my_task: int) -> int:
        return my_task + 1

    @task(name="third", deps=["renamed"])
    def third(renamed: int) -> int:
        return renamed * 10

    TaskRegistry.deactivate(token)
    assert list(registry) == ["my_task", "renamed", "third"]
    assert registry.spec("renamed") is second
    assert registry.get("renamed").func is second.fn

    engine = build_default_engine(registry=registry)
    run_id = run(engine.run_once("any-name"))  # unscoped registry: one implicit DAG
    assert engine.get_run_report(run_id)["tasks"]["third"]["result"] == 20
    assert engine.list_dags() == ["default"]
    engine.close()


def test_global_task_without_registry_is_a_clear_error() -> None:
    with pytest.raises(flowrun.NoActiveRegistryError, match=r"registry=\.\.\..*activate"):

        @task
        def orphan() -> int:
            return 1

    registry = TaskRegistry()

    @task(registry=registry)
    def explicit() -> int:
        return 1

    assert "explicit" in registry


def test_named_and_upstream_injection() -> None:
    engine = build_default_engine()

    @engine.task(name="a", dag="etl")
    def a() -> int:
        return 1

    @engine.task(name="b", dag="etl")
    def b() -> str:
        return "two"

    @engine.task(name="combine", dag="etl", deps=["a", "b"])
    def combine(upstream: dict[str, object]) -> object:
        return (upstream["a"], upstream["b"])

    @engine.task(name="named", dag="etl", deps=[a, b])
    def named(a: int) -> int:  # b is ordering-only: no parameter receives it
        return a + 100

    run_id = run(engine.run_once("etl"))
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["combine"]["result"] == (1, "two")
    assert tasks["named"]["result"] == 101
    engine.close()


def test_run_context_attribute_access_delegates_to_deps() -> None:
    engine = build_default_engine()

    @dataclass(frozen=True)
    class Deps:
        api_base: str

    @engine.task(name="pull", dag="etl")
    def pull(context: RunContext[Deps]) -> dict[str, str]:
        return {"base": context.api_base}  # type: ignore[attr-defined]  # run time only

    @engine.task(name="mapping", dag="config")  # another Deps class: another DAG
    def mapping(ctx: RunContext[dict[str, str]]) -> str:
        return str(ctx.suffix)  # type: ignore[attr-defined]  # run time only

    async def main() -> str:
        return await engine.run_once("etl", context=RunContext(Deps(api_base="https://x")))

    run_id = run(main())
    assert engine.get_run_report(run_id)["tasks"]["pull"]["result"] == {"base": "https://x"}
    config_run = run(engine.run_once("config", context=RunContext({"suffix": "!"})))
    assert engine.get_run_report(config_run)["tasks"]["mapping"]["result"] == "!"
    assert RunContext({"suffix": "!"}).suffix == "!"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match=r"api_bse.*Deps.*api_base"):
        _ = RunContext(Deps(api_base="u")).api_bse  # type: ignore[attr-defined]
    engine.close()


def test_task_templates_bind_fixed_arguments() -> None:
    engine = build_default_engine()

    def fetch_table(*, table: str) -> str:
        return f"select * from {table}"

    tpl = engine.task_template(fetch_table, dag="etl")
    users = tpl.bind("fetch_users", table="users")
    tpl.bind("fetch_orders", table="orders")

    @engine.task(name="both", dag="etl", deps=["fetch_users", "fetch_orders"])
    def both(fetch_users: str, fetch_orders: str) -> str:
        return f"{fetch_users}; {fetch_orders}"

    run_id = run(engine.run_once("etl"))
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["both"]["result"] == "select * from users; select * from orders"
    assert users() == "select * from users"
    assert engine.list_tasks("etl") == ["fetch_users", "fetch_orders", "both"]
    engine.close()


def test_fn_hook_and_run_hook_receive_events(capsys: pytest.CaptureFixture[str]) -> None:
    hook = fn_hook(
        on_task_failure=lambda e: print(f"FAIL {e.task_name}: {e.error}"),
        on_dag_end=lambda e: print(f"DAG done: {e.dag_name}"),
    )
    seen: list[object] = []

    class Recorder(RunHook):
        def on_task_skip(self, event: TaskSkipEvent) -> None:
            seen.append(event)

        def on_task_retry(self, event: TaskRetryEvent) -> None:
            seen.append(event)

    engine = build_default_engine(hooks=[hook, Recorder()])
    attempts = {"n": 0}

    @engine.task(name="flaky", dag="etl", retries=2)
    def flaky() -> int:
        attempts["n"] += 1
        raise ValueError(f"boom {attempts['n']}")

    @engine.task(name="after", dag="etl", deps=[flaky])
    def after(flaky: int) -> int:
        return flaky

    run(engine.run_once("etl"))
    assert capsys.readouterr().out == "FAIL flaky: ValueError: boom 3\nDAG done: etl\n"
    retries = [e for e in seen if isinstance(e, TaskRetryEvent)]
    assert [(e.attempt, e.next_attempt, e.max_attempts) for e in retries] == [(1, 2, 3), (2, 3, 3)]
    skip = next(e for e in seen if isinstance(e, TaskSkipEvent))
    assert (skip.task_name, skip.root_cause) == ("after", "flaky")
    engine.close()


def test_hook_errors_are_logged_and_never_break_the_run(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("hook bug")

    later: list[str] = []
    logger = logging.getLogger("test.compat.hooks")
    engine = build_default_engine(
        logger=logger,
        hooks=[fn_hook(on_task_start=broken), fn_hook(on_task_start=lambda e: later.append("ok"))],
    )

    @engine.task(dag="etl")
    def one() -> int:
        return 1

    with caplog.at_level(logging.ERROR, logger="test.compat.hooks"):
        run_id = run(engine.run_once("etl"))
    assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    assert later == ["ok"]
    assert any("raised in on_task_start" in r.getMessage() for r in caplog.records)
    engine.close()


def test_resume_from_tasks_reruns_them_and_downstream_only() -> None:
    engine = build_default_engine()
    calls: list[str] = []
    side_ran = threading.Event()

    @engine.task(name="extract", dag="etl")
    def extract() -> int:
        calls.append("extract")
        return 2

    @engine.task(name="transform", dag="etl", deps=[extract])
    def transform(extract: int) -> int:
        side_ran.wait(timeout=10)  # side, ready at the same time, may well go first
        calls.append("transform")
        return extract * 10

    @engine.task(name="load", dag="etl", deps=[transform])
    def load(transform: int) -> str:
        calls.append("load")
        return f"loaded {transform}"

    @engine.task(name="side", dag="etl", deps=[extract])
    def side(extract: int) -> int:
        calls.append("side")
        side_ran.set()
        return extract

    async def main() -> tuple[str, str]:
        old_run_id = await engine.run_once("etl")
        new_run_id = await engine.resume(old_run_id, from_tasks=["transform"], context=None)
        return old_run_id, new_run_id

    old, new = run(main())
    assert old != new
    # transform and side become ready together: the first run orders them either way
    first, resumed = calls[:4], calls[4:]
    assert sorted(first) == ["extract", "load", "side", "transform"]
    assert first[0] == "extract"
    assert first.index("transform") < first.index("load")
    assert resumed == ["transform", "load"]  # from_tasks and downstream only; side is reused
    report = engine.get_run_report(new)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["extract"]["result"] == 2  # preserved from the first run
    assert report["tasks"]["load"]["result"] == "loaded 20"
    engine.close()


def test_resume_after_failure_keeps_succeeded_work() -> None:
    engine = build_default_engine()
    calls: list[str] = []
    broken = {"on": True}

    @engine.task(dag="etl")
    def extract() -> int:
        calls.append("extract")
        return 1

    @engine.task(dag="etl", deps=[extract])
    def transform(extract: int) -> int:
        calls.append("transform")
        if broken["on"]:
            raise RuntimeError("upstream API down")
        return extract + 1

    @engine.task(dag="etl", deps=[transform])
    def load(transform: int) -> int:
        calls.append("load")
        return transform

    first = run(engine.run_once("etl"))
    report = engine.get_run_report(first)
    assert report["status"] == "FAILED"
    assert report["tasks"]["transform"]["error"] == "RuntimeError: upstream API down"
    assert report["tasks"]["load"]["status"] == "SKIPPED"
    assert "transform" in report["tasks"]["load"]["error"]
    broken["on"] = False
    second = run(engine.resume(first))
    assert engine.get_run_report(second)["status"] == "SUCCESS"
    assert calls == ["extract", "transform", "transform", "load"]
    engine.close()


def test_run_subgraph_runs_targets_and_their_dependencies() -> None:
    engine = build_default_engine()
    calls: list[str] = []

    @engine.task(dag="daily_etl")
    def extract() -> int:
        calls.append("extract")
        return 1

    @engine.task(dag="daily_etl", deps=[extract])
    def load(extract: int) -> int:
        calls.append("load")
        return extract

    @engine.task(dag="daily_etl", deps=[extract])
    def report_task(extract: int) -> int:
        calls.append("report_task")
        return extract

    run_id = run(engine.run_subgraph("daily_etl", targets=["load"], context=None))
    report = engine.get_run_report(run_id)
    assert sorted(calls) == ["extract", "load"]
    assert set(report["tasks"]) == {"extract", "load"}
    assert report["status"] == "SUCCESS"
    engine.close()


def test_report_shape_and_status_rules() -> None:
    engine = build_default_engine()
    midway: list[str] = []
    holder: dict[str, Any] = {}

    def on_start(event: Any) -> None:
        if event.task_name == "second":
            midway.append(holder["engine"].get_run_report(event.run_id)["status"])

    engine = build_default_engine(hooks=[fn_hook(on_task_start=on_start)])
    holder["engine"] = engine

    @engine.task(dag="etl")
    def first() -> dict[str, int]:
        return {"n": 1}

    @engine.task(dag="etl", deps=[first])
    def second(first: dict[str, int]) -> int:
        return first["n"]

    run_id = run(engine.run_once("etl"))
    report = engine.get_run_report(run_id)
    assert set(report) == {"run_id", "dag_name", "created_at", "finished_at", "status", "tasks"}
    assert report["run_id"] == run_id
    assert isinstance(report["created_at"], float)
    assert report["finished_at"] >= report["created_at"]
    entry = report["tasks"]["first"]
    assert set(entry) == {"status", "attempt", "started_at", "finished_at", "error", "result"}
    assert entry["status"] == "SUCCESS"
    assert entry["attempt"] == 1
    assert entry["error"] is None
    assert entry["result"] == {"n": 1}
    assert midway == ["RUNNING"]  # seen from a hook while the run was going
    engine.close()


def test_retries_skip_downstream_only_when_exhausted_and_timeouts_fail() -> None:
    engine = build_default_engine()
    tries = {"n": 0}

    @engine.task(dag="etl", retries=1)
    def flaky() -> str:
        tries["n"] += 1
        if tries["n"] == 1:
            raise ConnectionError("transient")
        return "ok"

    @engine.task(dag="etl", deps=[flaky])
    def child(flaky: str) -> str:
        return flaky + "!"

    @engine.task(dag="etl", timeout_s=0.05)
    async def slow_async() -> None:
        await asyncio.sleep(5)

    @engine.task(dag="etl", timeout_s=0.05)
    def slow_sync() -> None:
        time.sleep(0.3)

    run_id = run(engine.run_once("etl"))
    tasks = engine.get_run_report(run_id)["tasks"]
    assert (tasks["flaky"]["status"], tasks["flaky"]["attempt"]) == ("SUCCESS", 2)
    assert tasks["child"]["result"] == "ok!"
    for name in ("slow_async", "slow_sync"):
        assert tasks[name]["status"] == "FAILED"
        assert "exceeded its timeout of 0.05s" in tasks[name]["error"]
    engine.close()


def test_retain_result_false_clears_result_when_safe_and_resume_still_works() -> None:
    engine = build_default_engine()
    calls: list[str] = []

    @engine.task(dag="etl", retain_result=False, effect="pure")
    def big() -> list[int]:
        calls.append("big")
        return list(range(5))

    @engine.task(dag="etl", deps=[big])
    def small(big: list[int]) -> int:
        calls.append("small")
        return len(big)

    first = run(engine.run_once("etl"))
    tasks = engine.get_run_report(first)["tasks"]
    assert tasks["big"] == {**tasks["big"], "status": "SUCCESS", "result": None}
    assert tasks["small"]["result"] == 5
    second = run(engine.resume(first, from_tasks=["small"]))
    assert engine.get_run_report(second)["tasks"]["small"]["result"] == 5
    assert calls == ["big", "small", "big", "small"]  # released pure value recomputed
    engine.close()


def test_a_released_value_of_a_task_not_declared_pure_is_never_recomputed() -> None:
    engine = build_default_engine()
    calls: list[str] = []

    @engine.task(dag="etl", retain_result=False)
    def send() -> str:
        calls.append("send")
        return "sent"

    @engine.task(dag="etl", deps=[send])
    def log(send: str) -> str:
        calls.append("log")
        return send

    first = run(engine.run_once("etl"))
    second = run(engine.resume(first, from_tasks=["log"]))
    tasks = engine.get_run_report(second)["tasks"]
    assert tasks["send"]["status"] == "IN_DOUBT"
    assert "value was released" in tasks["send"]["error"]
    assert tasks["log"]["status"] == "SKIPPED"
    assert calls == ["send", "log"]
    engine.close()


def test_logger_gets_flowrun_levels(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.compat.levels")
    engine = build_default_engine(logger=logger)
    tries = {"n": 0}

    @engine.task(dag="etl", retries=1)
    def flaky() -> int:
        tries["n"] += 1
        if tries["n"] == 1:
            raise ValueError("once")
        return 1

    @engine.task(dag="etl")
    def broken() -> int:
        raise KeyError("missing")

    @engine.task(dag="etl", deps=[broken])
    def blocked(broken: int) -> int:
        return broken

    @engine.task(dag="etl", timeout_s=0.02)
    async def slow() -> None:
        await asyncio.sleep(1)

    with caplog.at_level(logging.DEBUG, logger="test.compat.levels"):
        run(engine.run_once("etl"))
    engine.close()
    by_level: dict[int, list[str]] = {}
    for record in caplog.records:
        by_level.setdefault(record.levelno, []).append(record.getMessage())

    def logged(level: int, *words: str) -> bool:
        return any(all(w in m for w in words) for m in by_level.get(level, []))

    assert logged(logging.INFO, "Starting DAG", "etl")
    assert logged(logging.INFO, "Finished DAG", "FAILED")
    assert logged(logging.INFO, "flaky", "succeeded")
    assert logged(logging.INFO, "retry", "flaky")
    assert logged(logging.INFO, "Skipping", "blocked")
    assert logged(logging.WARNING, "broken", "failed", "KeyError")
    assert logged(logging.WARNING, "slow", "timed out")
    assert logged(logging.DEBUG, "Launching", "flaky")
    assert logged(logging.DEBUG, "Traceback", "broken", "KeyError")


def test_async_tasks_are_awaited_and_sync_tasks_use_the_executor() -> None:
    engine = build_default_engine(max_workers=2)
    threads: dict[str, str] = {}

    @engine.task(dag="etl")
    async def fetch() -> int:
        await asyncio.sleep(0)
        return 41

    @engine.task(dag="etl", deps=[fetch])
    def bump(fetch: int) -> int:
        threads["bump"] = threading.current_thread().name
        return fetch + 1

    run_id = run(engine.run_once("etl"))
    assert engine.get_run_report(run_id)["tasks"]["bump"]["result"] == 42
    assert threads["bump"].startswith("flowplan-engine")
    engine.close()


def test_failure_event_carries_error_text_and_traceback() -> None:
    failures: list[TaskFailureEvent] = []
    engine = build_default_engine(hooks=[fn_hook(on_task_failure=failures.append)])

    @engine.task(dag="etl")
    def bad() -> None:
        raise ValueError("bad input")

    run(engine.run_once("etl"))
    (event,) = failures
    assert (event.dag_name, event.task_name, event.attempt) == ("etl", "bad", 1)
    assert event.error == "ValueError: bad input"
    assert "Traceback" in event.traceback
    engine.close()
