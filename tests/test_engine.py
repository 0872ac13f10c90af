"""flowplan.engine under hostile inputs, concurrency and resource limits."""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from flowplan.engine import (
    Engine,
    EngineClosedError,
    InMemoryStateStore,
    MemoryRunStore,
    RunContext,
    RunHook,
    RunInfo,
    SchedulerConfig,
    TaskRegistry,
    build_default_engine,
    task,
)
from flowplan.engine._hooks import EngineHook
from flowplan.errors import (
    CycleError,
    DefinitionError,
    DuplicateTaskError,
    FlowplanError,
    GraphValidationError,
    InvalidOptionError,
    SignatureMismatchError,
    StoreError,
    UnknownTaskError,
)
from flowplan.events import TaskFailed, TaskStarted, TaskSucceeded, TaskTimedOut
from flowplan.hooks import RecordingHook
from flowplan.snapshot import TaskRecord

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def engine() -> Any:
    built = build_default_engine(max_workers=4, max_parallel=4)
    yield built
    built.close()


def two_dags(engine: Engine) -> None:
    @engine.task(dag="etl_a")
    def extract() -> int:
        return 1

    @engine.task(dag="etl_b")
    def other() -> int:
        return 2


# -- DAG names, dependencies, cycles --------------------------------------------------------
def test_unknown_dag_suggests_and_lists_dags(engine: Engine) -> None:
    two_dags(engine)
    with pytest.raises(UnknownTaskError) as info:
        run(engine.run_once("etl_x"))
    message = str(info.value)
    assert "'etl_x' is not registered" in message
    assert "did you mean" in message
    assert "'etl_a', 'etl_b'" in message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LookupError)
    assert info.value.known == ("etl_a", "etl_b")
    with pytest.raises(ValueError, match="not registered"):
        engine.validate("nothing_alike_here")
    with pytest.raises(ValueError, match="not registered"):
        engine.list_tasks("nope")


def test_missing_dependency_has_a_suggestion(engine: Engine) -> None:
    @engine.task(dag="etl")
    def extract() -> int:
        return 1

    @engine.task(dag="etl", deps=["extrct"])
    def load() -> int:
        return 2

    with pytest.raises(GraphValidationError) as info:
        engine.validate("etl")
    assert "invalid DAG 'etl'" in str(info.value)
    (problem,) = info.value.exceptions
    assert isinstance(problem, UnknownTaskError)
    assert "did you mean 'extract'?" in str(problem)


def test_cycles_are_reported_with_their_path(engine: Engine) -> None:
    @engine.task(name="a", dag="loop", deps=["c"])
    def a() -> None: ...

    @engine.task(name="b", dag="loop", deps=["a"])
    def b() -> None: ...

    @engine.task(name="c", dag="loop", deps=["b"])
    def c() -> None: ...

    with pytest.raises(GraphValidationError) as info:
        run(engine.run_once("loop"))
    cycle = next(p for p in info.value.exceptions if isinstance(p, CycleError))
    assert set(cycle.cycle) == {"a", "b", "c"}
    assert " -> " in str(cycle)


def test_cross_dag_dependencies_are_errors_by_name_and_by_task(engine: Engine) -> None:
    @engine.task(dag="ingest")
    def raw() -> int:
        return 1

    @engine.task(dag="report", deps=["raw"])
    def by_name() -> int:
        return 1

    @engine.task(dag="report2", deps=[raw])
    def by_task(raw: int) -> int:
        return raw

    for dag, dependent in (("report", "by_name"), ("report2", "by_task")):
        with pytest.raises(GraphValidationError) as info:
            engine.validate(dag)
        (problem,) = info.value.exceptions  # no second "missing dependency" error
        assert f"task {dependent!r} of DAG {dag!r} depends on 'raw' of DAG 'ingest'" in str(problem)
        assert "cannot cross DAGs" in str(problem)
    engine.validate("ingest")


def test_same_task_names_in_different_dags_are_fine_but_not_in_one(engine: Engine) -> None:
    etl_a, etl_b = engine.dag("etl_a"), engine.dag("etl_b")

    @etl_a.task(name="extract")
    def extract_a() -> str:
        return "a"

    @etl_b.task(name="extract")
    def extract_b() -> str:
        return "b"

    with pytest.raises(DuplicateTaskError, match="already has a task named 'extract'"):

        @etl_a.task(name="extract")
        def again() -> str:
            return "c"

    run_a = run(etl_a.run_once())
    run_b = run(etl_b.run_once())
    assert engine.get_run_report(run_a)["tasks"]["extract"]["result"] == "a"
    assert engine.get_run_report(run_b)["tasks"]["extract"]["result"] == "b"
    with pytest.raises(InvalidOptionError, match="scope of DAG 'etl_a'"):
        etl_a.task(name="x", dag="etl_b")


def test_unscoped_tasks_join_the_default_dag_once_dags_are_named(engine: Engine) -> None:
    @engine.task
    def loose() -> int:
        return 1

    assert run(engine.run_once("whatever-legacy-name")) != ""  # legacy: one implicit DAG

    @engine.task(dag="named")
    def scoped() -> int:
        return 2

    assert engine.list_dags() == ["default", "named"]
    assert engine.list_tasks("default") == ["loose"]
    with pytest.raises(UnknownTaskError, match="'whatever-legacy-name' is not registered"):
        engine.validate("whatever-legacy-name")


def test_an_engine_without_tasks_refuses_to_run(engine: Engine) -> None:
    with pytest.raises(UnknownTaskError, match="has no registered tasks"):
        run(engine.run_once("missing"))
    assert engine.list_dags() == []
    assert engine.state_store.list_runs() == []


# -- declarations -------------------------------------------------------------------------
def test_bad_task_options_teach_the_fix(engine: Engine) -> None:
    def fn() -> int:
        return 1

    with pytest.raises(InvalidOptionError, match=r"unknown option 'retrys'.*'retries'"):
        engine.task(dag="etl", retrys=2)(fn)  # type: ignore[call-overload]
    with pytest.raises(InvalidOptionError, match=r"deps=\['extract'\]"):
        engine.task(dag="etl", deps="extract")(fn)
    with pytest.raises(InvalidOptionError, match=r"decorate 'fn' with @engine.task"):
        engine.task(name="g", dag="etl", deps=[fn])(fn)  # type: ignore[list-item]
    with pytest.raises(InvalidOptionError, match="retries must be a whole number >= 0"):
        engine.task(name="h", dag="etl", retries=-1)(fn)
    with pytest.raises(InvalidOptionError, match="timeout_s"):
        engine.task(name="i", dag="etl", timeout_s=0)(fn)
    with pytest.raises(SignatureMismatchError, match="both annotated RunContext"):

        @engine.task(dag="etl")
        def two(a: RunContext[int], b: RunContext[int]) -> None: ...

    assert engine.list_dags() == []


def test_unsatisfied_parameters_are_found_at_validation(engine: Engine) -> None:
    @engine.task(dag="etl", deps=["fetch_users"])
    def consumer(fetch_user: int) -> int:
        return fetch_user

    @engine.task(dag="etl")
    def fetch_users() -> int:
        return 1

    with pytest.raises(GraphValidationError) as info:
        engine.validate("etl")
    assert "required parameter 'fetch_user'" in str(info.value)
    assert "supplied by nothing (did you mean 'fetch_users'?)" in str(info.value)


def test_template_bind_rejects_unknown_keywords(engine: Engine) -> None:
    def fetch_table(*, table: str, limit: int = 10) -> str:
        return f"{table}:{limit}"

    tpl = engine.task_template(fetch_table, dag="etl", retries=1)
    with pytest.raises(SignatureMismatchError, match=r"tabel=.*did you mean 'table'"):
        tpl.bind("bad", tabel="users")
    spec = tpl.with_options(timeout_s=5.0).bind("good", table="users", limit=3)
    assert (spec.retry.retries, spec.timeout_s) == (1, 5.0)
    assert run(engine.run_once("etl")) != ""
    with pytest.raises(InvalidOptionError, match="takes no name="):
        engine.task_template(fetch_table, name="x")


def test_context_parameter_is_found_in_any_position_and_as_a_string() -> None:
    registry = TaskRegistry()

    @task(registry=registry)
    def middle(a: int = 0, ctx: RunContext[dict[str, int]] | None = None, *, b: int = 0) -> int:
        return a

    @task(registry=registry)
    def keyword_only(*, deps_ctx: RunContext[Any]) -> None: ...

    @task(registry=registry)
    def unresolvable(c: RunContext[NotDefinedAnywhere]) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    @task(registry=registry)
    def plain(context: int = 0) -> None: ...

    found = {name: registry.spec(name).context_param for name in registry}
    assert found == {
        "middle": "ctx",
        "keyword_only": "deps_ctx",
        "unresolvable": "c",
        "plain": None,
    }


def test_missing_context_fails_up_front_before_any_task_runs(engine: Engine) -> None:
    calls: list[str] = []

    @engine.task(dag="etl")
    def first() -> int:
        calls.append("first")
        return 1

    @engine.task(dag="etl", deps=[first])
    def needs(first: int, context: RunContext[dict[str, int]]) -> int:
        calls.append("needs")
        return first

    with pytest.raises(InvalidOptionError, match=r"'needs' take a RunContext.*context=None"):
        run(engine.run_once("etl"))
    assert calls == []
    assert engine.state_store.list_runs() == []
    context = RunContext({"x": 1})
    assert copy.deepcopy(context) == context == pickle.loads(pickle.dumps(context))
    with pytest.raises(AttributeError):
        context.deps = {}  # type: ignore[misc]
    run_id = run(engine.run_once("etl", context=context))
    assert engine.get_run_report(run_id)["status"] == "SUCCESS"


# -- runs: targets, resume, closing ---------------------------------------------------------
def test_unknown_targets_and_from_tasks_suggest_names(engine: Engine) -> None:
    @engine.task(dag="etl")
    def extract() -> int:
        return 1

    @engine.task(dag="etl", deps=[extract])
    def load(extract: int) -> int:
        return extract

    @engine.task(dag="etl", deps=[extract])
    def audit(extract: int) -> int:
        return extract

    with pytest.raises(UnknownTaskError, match=r"unknown target 'laod'.*did you mean 'load'"):
        run(engine.run_subgraph("etl", ["laod"]))
    with pytest.raises(InvalidOptionError, match="at least one target"):
        run(engine.run_subgraph("etl", []))
    with pytest.raises(InvalidOptionError, match=r"targets=\['load'\]"):
        run(engine.run_subgraph("etl", "load"))
    sub = run(engine.run_subgraph("etl", [load]))
    with pytest.raises(UnknownTaskError, match=r"'extrct'.*did you mean 'extract'"):
        run(engine.resume(sub, from_tasks=["extrct"]))
    with pytest.raises(UnknownTaskError, match="'audit', which is not part of run"):
        run(engine.resume(sub, from_tasks=["audit"]))
    with pytest.raises(UnknownTaskError, match="no run 'nope'"):
        run(engine.resume("nope"))
    with pytest.raises(UnknownTaskError, match="no run 'nope'"):
        engine.get_run_report("nope")


def test_a_subgraph_run_resumes_as_a_subgraph(engine: Engine) -> None:
    calls: list[str] = []

    @engine.task(dag="etl")
    def extract() -> int:
        calls.append("extract")
        return 1

    @engine.task(dag="etl", deps=[extract])
    def load(extract: int) -> int:
        calls.append("load")
        return extract

    @engine.task(dag="etl", deps=[extract])
    def audit(extract: int) -> int:
        calls.append("audit")
        return extract

    sub = run(engine.run_subgraph("etl", ["load"]))
    again = run(engine.resume(sub, from_tasks=["load"]))
    assert calls == ["extract", "load", "load"]
    assert set(engine.get_run_report(again)["tasks"]) == {"extract", "load"}


def test_closed_engine_refuses_new_runs_with_a_clear_error() -> None:
    engine = build_default_engine()

    @engine.task(dag="etl")
    def one() -> int:
        return 1

    first = run(engine.run_once("etl"))
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineClosedError, match="Engine is closed") as info:
        run(engine.run_once("etl"))
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(RuntimeError, match="Engine is closed"):
        run(engine.resume(first))
    with pytest.raises(RuntimeError, match="cannot schedule new futures"):
        engine.executor.submit(int)
    assert engine.get_run_report(first)["status"] == "SUCCESS"  # reports still readable


def test_an_external_executor_is_never_shut_down() -> None:
    pool = ThreadPoolExecutor(2)
    engine = build_default_engine(executor=pool)

    @engine.task(dag="etl")
    def one() -> str:
        return threading.current_thread().name

    async def main() -> str:
        async with engine:
            return await engine.run_once("etl")

    run_id = run(main())
    assert engine.closed
    assert pool.submit(lambda: 7).result() == 7
    assert engine.get_run_report(run_id)["tasks"]["one"]["result"].startswith("ThreadPoolExecutor")
    pool.shutdown()


def test_close_during_a_run_lets_it_finish_then_shuts_the_pool() -> None:
    engine = build_default_engine()

    @engine.task(dag="etl")
    async def first() -> int:
        engine.close()
        return 1

    @engine.task(dag="etl", deps=[first])
    def second(first: int) -> int:
        return first + 1

    run_id = run(engine.run_once("etl"))
    assert engine.get_run_report(run_id)["tasks"]["second"]["result"] == 2
    with pytest.raises(RuntimeError):
        engine.executor.submit(int)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"max_parallel": 0}, "max_parallel"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_parallel": 1.5}, "max_parallel"),
    ],
)
def test_bad_limits_are_rejected(kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(InvalidOptionError, match=f"{option} must be a whole number >= 1") as info:
        build_default_engine(**kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.option == option


def test_scheduler_config_validates_and_is_used() -> None:
    with pytest.raises(ValueError, match="max_parallel"):
        SchedulerConfig(max_parallel=0)
    engine = Engine(config=SchedulerConfig(max_parallel=1), state_store=InMemoryStateStore())
    assert engine.config.max_parallel == 1
    engine.close()


# -- concurrency --------------------------------------------------------------------------
def test_concurrent_runs_on_one_engine_are_independent(engine: Engine) -> None:
    @engine.task(dag="batch")
    async def chunk(context: RunContext[dict[str, int]]) -> int:
        await asyncio.sleep(0.01)
        return context.deps["value"]

    @engine.task(dag="batch", deps=[chunk])
    def double(chunk: int) -> int:
        time.sleep(0.01)
        return chunk * 2

    async def main() -> list[str]:
        contexts = [RunContext({"value": v}) for v in range(6)]
        return list(await asyncio.gather(*(engine.run_once("batch", c) for c in contexts)))

    run_ids = run(main())
    assert len(set(run_ids)) == 6
    results = [engine.get_run_report(r)["tasks"]["double"]["result"] for r in run_ids]
    assert results == [0, 2, 4, 6, 8, 10]
    assert len(engine.state_store.list_runs("batch")) == 6


def test_max_parallel_is_respected() -> None:
    engine = build_default_engine(max_workers=8, max_parallel=2)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def body() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.03)
        with lock:
            state["now"] -= 1

    for i in range(6):
        engine.task(name=f"t{i}", dag="wide")(body)
    run_id = run(engine.run_once("wide"))
    assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    assert state["peak"] == 2
    engine.close()


def test_max_parallel_holds_per_run_when_runs_share_the_pool() -> None:
    engine = build_default_engine(max_workers=8, max_parallel=2)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def body() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.03)
        with lock:
            state["now"] -= 1

    for i in range(6):
        engine.task(name=f"t{i}", dag="wide")(body)

    async def main() -> list[str]:
        return list(await asyncio.gather(engine.run_once("wide"), engine.run_once("wide")))

    run_ids = run(main())
    assert [engine.get_run_report(r)["status"] for r in run_ids] == ["SUCCESS", "SUCCESS"]
    assert state["peak"] <= 4  # two runs, two tasks each at most
    engine.close()


def test_a_dag_of_sync_tasks_pays_no_event_loop_task_per_task() -> None:
    engine = build_default_engine(max_parallel=4)
    for i in range(50):
        engine.task(name=f"t{i}", dag="sync", deps=[f"t{i - 1}"] if i else [])(lambda **_: 0)

    @engine.task(name="a0", dag="mixed")
    async def a0() -> int:
        return 0

    for i in range(1, 50):
        engine.task(name=f"a{i}", dag="mixed", deps=[f"a{i - 1}"])(lambda **_: 0)

    async def count_tasks(dag: str) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        created = [0]

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            created[0] += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        try:
            run_id = await engine.run_once(dag)
        finally:
            loop.set_task_factory(None)
        return run_id, created[0]

    sync_run, sync_tasks = run(count_tasks("sync"))
    assert engine.get_run_report(sync_run)["status"] == "SUCCESS"
    assert sync_tasks == 0  # the thread driver: no asyncio Task per task
    mixed_run, mixed_tasks = run(count_tasks("mixed"))  # an async task: the asyncio driver
    assert engine.get_run_report(mixed_run)["status"] == "SUCCESS"
    assert mixed_tasks >= 50
    engine.close()


def test_independent_branches_keep_running_after_a_failure(engine: Engine) -> None:
    @engine.task(dag="etl")
    def bad() -> int:
        raise ValueError("no")

    @engine.task(dag="etl", deps=[bad])
    def after_bad(bad: int) -> int:
        return bad

    @engine.task(dag="etl")
    async def independent() -> str:
        await asyncio.sleep(0.02)
        return "done"

    tasks = engine.get_run_report(run(engine.run_once("etl")))["tasks"]
    assert tasks["independent"]["result"] == "done"
    assert [tasks[n]["status"] for n in ("bad", "after_bad")] == ["FAILED", "SKIPPED"]


# -- status rules for flowplan's additions ------------------------------------------------
def test_when_gates_and_detached_tasks_do_not_fail_the_run(engine: Engine) -> None:
    @engine.task(dag="etl")
    def source() -> int:
        return 0

    @engine.task(dag="etl", deps=[source], when=lambda source: source > 0)
    def gated(source: int) -> int:
        return source

    @engine.task(dag="etl", deps=[gated])
    def below(gated: int) -> int:
        return gated

    @engine.task(dag="etl", deps=[source], detached=True)
    def notify(source: int) -> None:
        raise RuntimeError("smtp down")

    report = engine.get_run_report(run(engine.run_once("etl")))
    statuses = {n: t["status"] for n, t in report["tasks"].items()}
    assert statuses == {
        "source": "SUCCESS",
        "gated": "SKIPPED",
        "below": "SKIPPED",
        "notify": "FAILED",
    }
    assert report["status"] == "SUCCESS"


def test_display_dag_marks_shared_tasks_and_lists_topologically(engine: Engine) -> None:
    @engine.task(dag="d")
    def a() -> int:
        return 1

    @engine.task(dag="d", deps=[a])
    def b(a: int) -> int:
        return a

    @engine.task(dag="d", deps=[a])
    def c(a: int) -> int:
        return a

    @engine.task(dag="d", deps=[b, c])
    def e(b: int, c: int) -> int:
        return b + c

    assert engine.list_tasks("d") == ["a", "b", "c", "e"]
    assert engine.display_dag("d") == (
        "d\n`-- a\n    |-- b\n    |   `-- e\n    `-- c\n        `-- e [shared]"
    )


def test_core_hooks_receive_raw_events_and_errors_share_one_root() -> None:
    recorder = RecordingHook()
    engine = build_default_engine(hooks=[recorder])

    @engine.task(dag="etl")
    def one() -> int:
        return 1

    run(engine.run_once("etl"))
    names = [type(e).__name__ for e in recorder.events]
    assert names[0] == "RunStarted"
    assert names[-1] == "RunFinished"
    assert issubclass(UnknownTaskError, FlowplanError)
    assert issubclass(DefinitionError, ValueError)
    engine.close()


class _FailingWrites(MemoryRunStore):
    """A store whose disk is full once tasks finish."""

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        if record.status.is_terminal:
            raise StoreError("disk full")
        super().save_record(run_id, record)


def test_a_store_that_cannot_write_ends_the_run_with_its_error() -> None:
    engine = build_default_engine(state_store=_FailingWrites())
    engine.task(name="a", dag="etl")(lambda: 1)

    async def main() -> str:
        return await asyncio.wait_for(engine.run_once("etl"), 0.5)

    with pytest.raises(StoreError, match="disk full"):
        run(main())
    engine.close()


def test_runs_are_listed_with_their_metadata(engine: Engine) -> None:
    engine.task(name="a", dag="etl")(lambda: 1)
    engine.task(name="b", dag="etl", deps=["a"])(lambda a: a)
    sub = run(engine.run_subgraph("etl", ["a"]))
    resumed = run(engine.resume(sub))
    infos = engine.state_store.list_runs("etl")
    assert [i.run_id for i in infos] == [sub, resumed]
    assert all(isinstance(i, RunInfo) for i in infos)
    assert (infos[0].targets, infos[0].tasks, infos[0].status) == (("a",), ("a",), "succeeded")
    assert infos[1].resumed_from == sub


def test_the_hook_adapter_asks_only_for_the_events_its_logger_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("flowplan.engine.test_wanted")
    engine = build_default_engine(logger=logger)

    @engine.task(dag="etl")
    def good() -> int:
        return 1

    @engine.task(dag="etl")
    def bad() -> int:
        raise ValueError("boom")

    graph = engine.graph("etl")
    quiet = EngineHook("etl", graph, [], logger)
    logger.setLevel(logging.WARNING)
    wanted = quiet.wanted_events()
    assert wanted is not None
    assert TaskFailed in wanted
    assert TaskTimedOut in wanted
    assert TaskSucceeded not in wanted
    assert TaskStarted not in wanted
    logger.setLevel(logging.ERROR)
    assert quiet.wanted_events() == ()
    logger.setLevel(logging.INFO)
    wanted = quiet.wanted_events()
    assert wanted is not None
    assert TaskSucceeded in wanted
    assert TaskStarted not in wanted
    logger.setLevel(logging.DEBUG)
    assert quiet.wanted_events() is None  # launch lines need every event
    logger.setLevel(logging.WARNING)
    assert EngineHook("etl", graph, [RunHook()], logger).wanted_events() is None  # user hooks

    with caplog.at_level(logging.WARNING, logger=logger.name):  # the lines a WARNING logger shows
        run_id = run(engine.run_once("etl"))
    assert engine.get_run_report(run_id)["tasks"]["good"]["status"] == "SUCCESS"
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert len(messages) == 1
    assert "'bad' failed" in messages[0]
    assert "boom" in messages[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=logger.name):
        run(engine.run_once("etl"))
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert any("'good' succeeded" in m for m in messages)
    assert any(m.startswith("Finished DAG 'etl'") for m in messages)
    engine.close()


def test_a_sync_task_interrupting_the_run_ends_it_recorded() -> None:
    engine = build_default_engine()
    release = threading.Event()

    @engine.task(dag="d")
    def a() -> int:
        return 1

    @engine.task(dag="d", deps=[a])
    def b(a: int) -> int:
        raise KeyboardInterrupt

    @engine.task(dag="d", deps=[b])
    def c(b: int) -> int:
        return b

    @engine.task(dag="d")
    def slow() -> int:
        release.wait(30)
        return 1

    try:
        with pytest.raises(KeyboardInterrupt) as info:
            run(engine.run_once("d"))
        assert hasattr(info.value, "flowplan_snapshot")
        (record,) = engine.state_store.list_runs("d")
        assert record.status == "failed"
        snap = engine.state_store.load(record.run_id)
        assert snap["a"].succeeded
        for name in ("b", "slow"):  # the interrupted task, and the one abandoned running
            error = snap[name].error
            assert error is not None
            assert error.kind == "interrupted"
        assert snap["c"].status.value == "skipped"
    finally:
        release.set()
        engine.close()
