"""Where the issue #6 features meet: trigger rules, effects, caching, simulation, resume."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flowplan
from flowplan import (
    Action,
    InlineExecutor,
    InvalidOptionError,
    MemoryCache,
    MemoryStore,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskStatus,
    Value,
    aexecute,
    execute,
    plan,
    simulate,
    task,
)
from flowplan.report import snapshot_table
from flowplan.store import JournalStore, SqliteStateStore

Runner = Callable[[flowplan.Plan], Snapshot]

RUNNERS: dict[str, Runner] = {
    "inline": lambda p: execute(p, executor=InlineExecutor()),
    "threads": execute,
    "async": lambda p: asyncio.run(aexecute(p)),
}


def _crashed(name: str) -> TaskRecord:
    """The record a crash mid-attempt leaves: attempt 1 started, no outcome."""
    return TaskRecord(name, TaskStatus.RUNNING, attempts=1, started_at=1.0)


# -- an at_most_once task stays in doubt until settled, whatever else happens in the run ----


@pytest.mark.parametrize("runner", RUNNERS)
def test_in_doubt_task_cancelled_by_fail_fast_stays_in_doubt(
    registry: flowplan.Registry, runner: str
) -> None:
    bodies: list[str] = []

    @task
    def flaky() -> int:
        raise ValueError("down")

    @task(effect="at_most_once")
    def charge() -> str:
        bodies.append("charge")
        return "ch"

    graph = TaskGraph.build([flaky, charge])
    crashed = Snapshot("r1", {"charge": _crashed("charge")})
    second = RUNNERS[runner](plan(graph, crashed))
    assert second["flaky"].status is TaskStatus.FAILED
    # fail-fast stopped the run before charge was settled: it must not lose its doubt
    assert second["charge"].status is TaskStatus.IN_DOUBT
    if runner == "inline":  # flaky ran first: charge was cancelled, not settled
        assert "not settled in this run (fail-fast: 'flaky' failed)" in str(second["charge"].reason)
    third = plan(graph, second)
    assert third.action(charge) is Action.IN_DOUBT
    assert bodies == []


def test_in_doubt_task_skipped_by_its_trigger_rule_stays_in_doubt(
    registry: flowplan.Registry,
) -> None:
    fail = [False]

    @task(when=lambda: not fail[0])
    def source() -> int:
        if fail[0]:
            raise AssertionError("never: gated")
        return 1

    @task
    def check() -> int:
        if fail[0]:
            raise ValueError("check failed")
        return 2

    @task(depends_on=[source, check], effect="at_most_once", trigger="none_failed")
    def notify(source: int | None, check: int | None) -> str:
        return "sent"

    graph = TaskGraph.build([source, check, notify])
    crashed = Snapshot(
        "r1",
        {
            "source": TaskRecord("source", TaskStatus.SKIPPED, reason="when", root_cause="source"),
            "check": TaskRecord("check", TaskStatus.FAILED, attempts=1),
            "notify": _crashed("notify"),
        },
    )
    fail[0] = True
    second = execute(plan(graph, crashed), executor=InlineExecutor(), fail_fast=False)
    assert second["check"].status is TaskStatus.FAILED
    assert second["notify"].status is TaskStatus.IN_DOUBT
    assert plan(graph, second).action(notify) is Action.IN_DOUBT


# -- result caching under trigger rules: the key describes what the body received --------


def test_cache_key_of_a_triggered_task_fingerprints_what_it_received(
    registry: flowplan.Registry,
) -> None:
    threshold = [100]

    @task(retry_until=lambda result: result > threshold[0])
    def measure() -> int:
        return 5

    @task(depends_on=[measure], trigger="all_done", cache=True)
    def summary(measure: int | None) -> str:
        return f"measure={measure}"

    graph = TaskGraph.build([measure, summary])
    cache = MemoryCache()
    first = execute(plan(graph, cache=cache), executor=InlineExecutor(), fail_fast=False)
    # retry_until gave up: measure FAILED but keeps its value; summary received None
    assert first["measure"].status is TaskStatus.FAILED
    assert first["measure"].value == 5
    assert first.value(summary) == "measure=None"
    threshold[0] = 0  # now measure succeeds with the same value, 5
    second = execute(plan(graph, cache=cache), executor=InlineExecutor())
    assert second.value(measure) == 5
    assert second.value(summary) == "measure=5"  # not the result computed from None
    assert not second["summary"].cached


@pytest.mark.parametrize("runner", RUNNERS)
def test_all_done_cleanup_after_fail_fast_uses_and_fills_the_cache(
    registry: flowplan.Registry, runner: str
) -> None:
    @task
    def acquire() -> str:
        return "lock"

    @task(depends_on=[acquire])
    def work(acquire: str) -> int:
        raise ValueError("bad input")

    @task(depends_on=[acquire, work], trigger="all_done", cache=True)
    def release(acquire: str | None, work: int | None) -> str:
        return f"released {acquire}"

    graph = TaskGraph.build([acquire, work, release])
    cache = MemoryCache()
    first = RUNNERS[runner](plan(graph, cache=cache))
    assert first.value(release) == "released lock"
    assert "result stored" in (first["release"].reason or "")
    second = RUNNERS[runner](plan(graph, cache=cache))
    assert second["release"].cached  # a hit: the cleanup body did not run again
    assert second["release"].attempts == 0
    assert second.value(release) == "released lock"


# -- a simulation never writes scripted values into a real cache --------------------------


def test_simulate_does_not_write_scripted_values_to_the_cache(
    registry: flowplan.Registry,
) -> None:
    @task(cache=True)
    def price() -> int:
        return 10

    graph = TaskGraph.build([price])
    cache = MemoryCache()
    sim = simulate(plan(graph, cache=cache), {price: Value(999)})
    assert sim.snapshot.value(price) == 999
    assert "simulat" in (sim.snapshot["price"].reason or "")
    real = execute(plan(graph, cache=cache), executor=InlineExecutor())
    assert real.value(price) == 10
    assert not real["price"].cached


# -- options that would be silently ignored ----------------------------------------------


def test_reconcile_without_at_most_once_is_refused(registry: flowplan.Registry) -> None:
    def found() -> Any:
        return flowplan.NotDone

    with pytest.raises(InvalidOptionError) as info:

        @task(effect="idempotent", reconcile=found)
        def upsert() -> int:
            return 1

    error = info.value
    assert error.task == "upsert"
    assert error.option == "reconcile"
    message = str(error)
    assert "effect='at_most_once'" in message
    assert "'idempotent'" in message


# -- a cache hit is not a journal replay ---------------------------------------------------


def test_cache_hit_reused_on_resume_is_explained_as_a_cache_hit(
    registry: flowplan.Registry,
) -> None:
    @task(cache=True)
    def load() -> int:
        return 1

    @task(depends_on=[load])
    def use(load: int) -> int:
        raise ValueError("boom")

    graph = TaskGraph.build([load, use])
    cache = MemoryCache()
    execute(plan(graph, cache=cache), executor=InlineExecutor(), fail_fast=False)
    second = execute(plan(graph, cache=cache), executor=InlineExecutor(), fail_fast=False)
    assert second["load"].cached
    explained = plan(graph, second).explain("load")
    assert "journal" not in explained
    assert explained.startswith("reuse load: succeeded in an earlier run (cache hit (key ")


def test_journal_records_a_cache_hit_so_a_new_process_need_not_run_it(
    registry: flowplan.Registry, tmp_path: Path
) -> None:
    @task(cache=True)
    def load() -> int:
        return 1

    graph = TaskGraph.build([load])
    cache = MemoryCache()
    execute(plan(graph, cache=cache), executor=InlineExecutor())  # fills the cache
    journal = JournalStore(tmp_path / "journal.jsonl")
    keys = graph.step_keys()
    hit = execute(
        plan(graph, cache=cache, step_keys=keys), executor=InlineExecutor(), store=journal
    )
    assert hit["load"].cached
    replayed = JournalStore(tmp_path / "journal.jsonl").load(keys)
    assert "load" in replayed.records  # a later process without this cache reuses it
    assert replayed.value(load) == 1


# -- an isolated at_most_once attempt that times out is killed and left in doubt ----------


def test_isolated_at_most_once_timeout_is_in_doubt_and_survives_the_store(
    registry: flowplan.Registry, tmp_path: Path
) -> None:
    @task(isolation="process", effect="at_most_once", timeout_s=1.0)
    def charge() -> str:
        import time

        time.sleep(30)  # killed with its child process after 1 s
        return "charged"

    @task(depends_on=[charge])
    def receipt(charge: str) -> str:
        return f"receipt for {charge}"

    graph = TaskGraph.build([charge, receipt])
    store = SqliteStateStore(tmp_path / "runs.sqlite")
    first = execute(plan(graph, run_id="r1"), store=store)
    assert first["charge"].status is TaskStatus.IN_DOUBT
    assert first["charge"].attempts == 1  # never retried
    assert first["receipt"].root_cause == "charge"
    store.close()
    with SqliteStateStore(tmp_path / "runs.sqlite") as again:
        loaded = again.load("r1")
    assert loaded.records == first.records
    resumed = plan(graph, loaded)
    assert resumed.action(charge) is Action.IN_DOUBT
    assert plan(graph, loaded, overrides={charge: "ch_1"}).action(receipt) is Action.RUN


# -- a released value (retain_result=False) comes back from the cache, not from its body ---


def test_released_cached_value_needed_on_resume_is_a_cache_hit(
    registry: flowplan.Registry,
) -> None:
    @task(cache=True, retain_result=False)
    def load() -> int:
        return 1

    @task(depends_on=[load])
    def use(load: int) -> int:
        return load + 1

    graph = TaskGraph.build([load, use])
    cache = MemoryCache()
    first = execute(plan(graph, cache=cache), executor=InlineExecutor())
    assert first["load"].released
    again = plan(graph, first, rerun=[use], cache=cache)
    assert again.action(load) is Action.REUSE
    assert again.explain(load).startswith("reuse load: cache hit (key ")
    second = execute(again, executor=InlineExecutor())
    assert second["load"].cached
    assert second["load"].attempts == 0
    assert second.value(use) == 2


# -- Flow.summary() says why a task is in doubt and how to settle it ------------------------


def test_flow_summary_shows_why_a_task_is_in_doubt(registry: flowplan.Registry) -> None:
    release = threading.Event()

    @task(effect="at_most_once", timeout_s=0.05)
    def charge() -> str:
        release.wait(5)  # times out: the charge may still go through
        return "ch"

    flow = flowplan.Flow(charge, hooks=[])
    try:
        flow.run()
    finally:
        release.set()
    (line,) = [ln for ln in flow.summary().splitlines() if ln.startswith("  IN_DOUBT  charge")]
    assert "in_doubt: attempt 1 timed out after 0.05s" in line
    assert "settle it with override()" in line


def test_snapshot_table_says_cache_hit_not_journal(registry: flowplan.Registry) -> None:
    @task(cache=True)
    def load() -> int:
        return 1

    graph = TaskGraph.build([load])
    cache = MemoryCache()
    execute(plan(graph, cache=cache), executor=InlineExecutor())
    hit = execute(plan(graph, cache=cache), executor=InlineExecutor())
    for reused in ((), ("load",)):  # `flowplan show` names the run's reused tasks
        row = snapshot_table(hit, reused=reused).splitlines()[1]
        assert "cache hit (key " in row
        assert "journal" not in row


def test_plan_refuses_a_cache_that_is_not_a_result_cache(registry: flowplan.Registry) -> None:
    @task(cache=True)
    def load() -> int:
        return 1

    with pytest.raises(InvalidOptionError) as info:
        plan(TaskGraph.build([load]), cache="results.sqlite")  # type: ignore[arg-type]
    assert info.value.option == "cache"
    assert "got 'results.sqlite' (str)" in str(info.value)
    assert "flowplan.SqliteCache('results.sqlite')" in str(info.value)


def test_task_cache_option_must_be_a_bool(registry: flowplan.Registry) -> None:
    not_a_bool: Any = MemoryCache()  # the cache belongs in plan(cache=...)
    with pytest.raises(InvalidOptionError) as info:

        @task(cache=not_a_bool)
        def load() -> int:
            return 1

    assert (info.value.task, info.value.option) == ("load", "cache")
    assert "cache= must be True or False, got <" in str(info.value)
    assert "plan(cache=...)" in str(info.value)


# -- a resume keys a task as a fresh run does (no spurious "input changed" later) ----------


def test_resume_keys_downstream_of_a_reused_cached_task_like_a_fresh_run(
    registry: flowplan.Registry,
) -> None:
    broken = [True]

    @task(cache=True)
    def load() -> int:
        return 1

    @task(cache=True, depends_on=[load])
    def shape(load: int) -> int:
        if broken[0]:
            raise ValueError("not yet")
        return load + 1

    graph = TaskGraph.build([load, shape])
    cache = MemoryCache()
    first = execute(plan(graph, cache=cache), executor=InlineExecutor(), fail_fast=False)
    assert first["shape"].status is TaskStatus.FAILED
    broken[0] = False
    resumed = execute(plan(graph, first, cache=cache), executor=InlineExecutor())
    assert resumed.value(shape) == 2
    fresh = plan(graph, cache=cache)
    assert fresh.action(shape) is Action.REUSE, fresh.explain(shape)
    assert fresh.explain(shape).startswith("reuse shape: cache hit (key ")


def test_a_reused_value_that_is_not_the_cached_one_is_keyed_by_its_fingerprint(
    registry: flowplan.Registry,
) -> None:
    @task(cache=True)
    def load() -> int:
        return 1

    @task(cache=True, depends_on=[load])
    def shape(load: int) -> int:
        return load + 1

    graph = TaskGraph.build([load, shape])
    cache = MemoryCache()
    execute(plan(graph, cache=cache), executor=InlineExecutor())
    # an earlier snapshot holds another value for load (e.g. computed by older code)
    old = Snapshot("old", {"load": TaskRecord("load", TaskStatus.SUCCEEDED, 1, 41, True)})
    resumed = plan(graph, old, cache=cache)
    assert resumed.action(shape) is Action.RUN  # never the result computed from load=1
    assert execute(resumed, executor=InlineExecutor()).value(shape) == 42


# -- every new status and field survives the stores -----------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_new_statuses_and_fields_survive_a_store_round_trip(
    registry: flowplan.Registry, tmp_path: Path, kind: str
) -> None:
    @task(cache=True)
    def load() -> int:
        return 1

    @task(when=lambda: False)
    def bonus() -> int:
        return 5

    @task(depends_on=[load, flowplan.optional(bonus)], effect="at_most_once")
    def charge(load: int, bonus: int | None) -> str:
        return "ch"

    @task(depends_on=[charge], trigger="none_failed")
    def receipt(charge: str | None) -> str:
        return "r"

    @task(depends_on=[charge], trigger="all_done")
    def cleanup(charge: str | None) -> str:
        return f"cleaned {charge}"

    graph = TaskGraph.build([load, bonus, charge, receipt, cleanup])
    cache = MemoryCache()
    execute(plan(graph, cache=cache), executor=InlineExecutor())  # fills the cache
    crashed = Snapshot("r1", {"charge": _crashed("charge")})
    store = SqliteStateStore(tmp_path / "runs.sqlite") if kind == "sqlite" else MemoryStore()
    snap = execute(plan(graph, crashed, cache=cache, run_id="r2"), store=store)
    assert snap["load"].cached
    assert snap["bonus"].status is TaskStatus.SKIPPED
    assert snap["charge"].status is TaskStatus.IN_DOUBT
    assert snap["receipt"].status is TaskStatus.SKIPPED
    assert snap["receipt"].root_cause == "charge"
    assert snap.value(cleanup) == "cleaned None"
    if isinstance(store, SqliteStateStore):
        store.close()
    again = SqliteStateStore(tmp_path / "runs.sqlite") if kind == "sqlite" else store
    loaded = again.load("r2")
    if isinstance(again, SqliteStateStore):
        again.close()
    assert loaded.records == snap.records
    assert plan(graph, loaded).action(charge) is Action.IN_DOUBT


@pytest.mark.parametrize("make", ["memory", "sqlite"])
def test_cache_options_are_checked(tmp_path: Path, make: str) -> None:
    def build(**options: Any) -> object:
        if make == "memory":
            return MemoryCache(**options)
        return flowplan.SqliteCache(tmp_path / "cache.sqlite", **options)

    with pytest.raises(InvalidOptionError) as info:
        build(serializer="json")
    assert info.value.option == "serializer"
    assert "got 'json' (str); pass flowplan.JsonSerializer()" in str(info.value)
    with pytest.raises(InvalidOptionError) as info:
        build(strict="yes")
    assert info.value.option == "strict"
    assert "expects True or False, got 'yes' (str)" in str(info.value)


# -- the engine takes optional() dependencies like @task does -------------------------------


def test_engine_task_accepts_optional_dependencies() -> None:
    from flowplan.engine import build_default_engine

    engine = build_default_engine(max_workers=2, max_parallel=2)
    try:

        @engine.task(dag="etl", when=lambda: False)
        def bonus() -> int:
            return 5

        @engine.task(dag="etl")
        def base() -> int:
            return 10

        @engine.task(dag="etl", deps=[base, flowplan.optional(bonus)])
        def total(upstream: dict[str, Any]) -> int:
            return int(upstream["base"]) + int(upstream["bonus"] or 0)

        run_id = asyncio.run(engine.run_once("etl"))
        report = engine.get_run_report(run_id)
    finally:
        engine.close()
    assert report["tasks"]["bonus"]["status"] == "SKIPPED"
    assert report["tasks"]["total"]["status"] == "SUCCESS"
    assert report["status"] == "SUCCESS"


def test_reconcile_of_a_triggered_task_receives_none_for_a_failed_dependency(
    registry: flowplan.Registry,
) -> None:
    seen: list[object] = []

    def look_up(load: int | None) -> object:
        seen.append(load)
        return "sent earlier"

    @task
    def load() -> int:
        raise ValueError("down")

    @task(depends_on=[load], trigger="all_done", effect="at_most_once", reconcile=look_up)
    def notify(load: int | None) -> str:
        raise AssertionError("never: reconcile says it took effect")

    graph = TaskGraph.build([load, notify])
    crashed = Snapshot("r1", {"notify": _crashed("notify")})
    second = execute(plan(graph, crashed), executor=InlineExecutor(), fail_fast=False)
    assert seen == [None]
    assert second.value(notify) == "sent earlier"
    assert second["load"].status is TaskStatus.FAILED


# -- a journal replay is not a resume: fresh runs get fresh idempotency keys ----------------


def test_runs_planned_from_a_journal_replay_get_their_own_lineage(
    registry: flowplan.Registry, tmp_path: Path
) -> None:
    keys: list[str] = []

    @task(effect="idempotent")
    def pay() -> int:
        attempt = flowplan.current_attempt()
        assert attempt is not None
        assert attempt.idempotency_key is not None
        keys.append(attempt.idempotency_key)
        return 1

    for day in ("monday", "tuesday"):
        flow = flowplan.Flow(pay, journal_path=tmp_path / f"{day}.jsonl", hooks=[])
        flow.run()
        snapshot = flow.snapshot
        assert snapshot is not None
        assert snapshot.lineage == snapshot.run_id  # a fresh run starts its own lineage
    assert len(set(keys)) == 2  # two unrelated payments are never deduplicated as one


def test_rerunning_an_upstream_task_does_not_settle_an_in_doubt_task(
    registry: flowplan.Registry,
) -> None:
    charged: list[int] = []

    @task
    def order() -> int:
        return 7

    @task(depends_on=[order], effect="at_most_once")
    def charge(order: int) -> str:
        charged.append(order)
        return "ch"

    graph = TaskGraph.build([order, charge])
    crashed = Snapshot(
        "r1",
        {
            "order": TaskRecord("order", TaskStatus.SUCCEEDED, 1, 7, True),
            "charge": _crashed("charge"),
        },
    )
    again = plan(graph, crashed, rerun=[order])
    assert again.action(order) is Action.RUN
    assert again.action(charge) is Action.IN_DOUBT  # only rerun=[charge] says "run it again"
    assert "rerun=" in again.explain(charge)
    snap = execute(again, executor=InlineExecutor())
    assert snap["charge"].status is TaskStatus.IN_DOUBT
    assert charged == []
    assert plan(graph, crashed, rerun=[charge]).action(charge) is Action.RUN


# -- the drivers agree on a graph that mixes the features -----------------------------------


def _mixed_graph() -> TaskGraph:
    @task(cache=True)
    def load() -> int:
        return 3

    @task(when=lambda: False)
    def bonus() -> int:
        return 5

    @task
    def flaky() -> int:
        raise ValueError("down")

    @task(depends_on=[load, flowplan.optional(bonus)], effect="pure")
    def total(load: int, bonus: int | None) -> int:
        return load + (bonus or 0)

    @task(depends_on=[flaky, total], trigger="any_succeeded", cache=True)
    def pick(flaky: int | None, total: int | None) -> int:
        return flaky or total or 0

    @task(depends_on=[flaky], trigger="none_failed")
    def publish(flaky: int | None) -> str:
        return "published"

    @task(depends_on=[pick, publish], trigger="all_done", effect="idempotent")
    def cleanup(pick: int | None, publish: str | None) -> str:
        return f"pick={pick} publish={publish}"

    return TaskGraph.build([load, bonus, flaky, total, pick, publish, cleanup])


def _outcome(snapshot: Snapshot) -> dict[str, tuple[object, ...]]:
    return {
        name: (r.status, r.value, r.cached, r.reason, r.root_cause, r.attempts)
        for name, r in snapshot.records.items()
    }


def test_threads_inline_and_asyncio_agree_on_a_mixed_graph(registry: flowplan.Registry) -> None:
    graph = _mixed_graph()
    outcomes = []
    runners: list[Runner] = [  # without fail-fast: the outcome does not depend on timing
        lambda p: execute(p, executor=InlineExecutor(), fail_fast=False),
        lambda p: execute(p, fail_fast=False),
        lambda p: asyncio.run(aexecute(p, fail_fast=False)),
    ]
    for runner in runners:
        cache = MemoryCache()
        cold = runner(plan(graph, cache=cache, run_id="r1"))
        warm = runner(plan(graph, cache=cache, run_id="r2"))
        outcomes.append((_outcome(cold), _outcome(warm)))
    assert outcomes[0] == outcomes[1] == outcomes[2]
    fresh, hits = outcomes[0]
    assert fresh["cleanup"][1] == "pick=3 publish=None"
    assert fresh["publish"][0] is TaskStatus.SKIPPED
    assert fresh["publish"][4] == "flaky"
    assert hits["load"][2]  # a cache hit
    assert hits["total"][2]
    assert hits["pick"][2]
