"""Trigger rules, optional dependencies, root causes and the planner's liveness proof."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import flowplan
from flowplan import (
    Fail,
    Flow,
    InlineExecutor,
    LivenessError,
    RecordingHook,
    Registry,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskSkipped,
    TaskSpec,
    TaskStatus,
    Value,
    aexecute,
    execute,
    optional,
    plan,
    simulate,
    task,
)
from flowplan._liveness import check_liveness
from flowplan.report import to_ascii, to_dot, to_mermaid

OK = TaskStatus.SUCCEEDED
FAILED = TaskStatus.FAILED
SKIPPED = TaskStatus.SKIPPED
CANCELLED = TaskStatus.CANCELLED


@pytest.fixture(params=["inline", "threads"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    if request.param == "inline":
        yield InlineExecutor()
        return
    pool = ThreadPoolExecutor(4, thread_name_prefix="test-triggers")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)


def boom() -> None:
    raise ValueError("boom")


def run(*specs: TaskSpec[..., Any], executor: Executor, fail_fast: bool = False) -> Snapshot:
    return execute(plan(TaskGraph.build(specs)), executor=executor, fail_fast=fail_fast)


def test_all_done_runs_after_a_failure_and_receives_none(
    registry: Registry, executor: Executor
) -> None:
    seen: list[tuple[object, object]] = []

    @task
    def load() -> int:
        raise ValueError("boom")

    @task
    def other() -> int:
        return 2

    @task(depends_on=[load, other], trigger="all_done")
    def cleanup(load: int | None, other: int | None) -> str:
        seen.append((load, other))
        return "cleaned"

    snap = run(load, other, cleanup, executor=executor)
    assert snap[cleanup].status is OK
    assert snap.value(cleanup) == "cleaned"
    assert seen == [(None, 2)]


def test_none_failed_skips_below_a_failure_with_the_rule_and_root_cause(
    registry: Registry, executor: Executor
) -> None:
    @task
    def load() -> int:
        raise ValueError("boom")

    @task(depends_on=[load])
    def transform(load: int) -> int:
        return load

    @task(depends_on=[transform], trigger="none_failed")
    def publish(transform: int | None) -> int:
        return 1

    @task(depends_on=[publish])
    def notify(publish: int) -> int:
        return publish

    snap = run(load, transform, publish, notify, executor=executor)
    assert snap[publish].status is SKIPPED
    assert snap[publish].reason == (
        "trigger rule none_failed: upstream 'transform' was skipped (root cause: 'load')"
    )
    assert snap[publish].root_cause == "load"
    assert snap[notify].status is SKIPPED
    assert snap[notify].reason == "upstream 'publish' was skipped"
    assert snap[notify].root_cause == "load"
    assert snap.root_causes() == {"load": ("transform", "publish", "notify")}


def test_none_failed_names_a_failed_dependency(registry: Registry, executor: Executor) -> None:
    @task
    def load() -> int:
        raise ValueError("boom")

    @task(depends_on=[load], trigger="none_failed")
    def publish(load: int | None) -> int:
        return 1

    snap = run(load, publish, executor=executor)
    assert snap[publish].reason == "trigger rule none_failed: upstream 'load' failed"
    assert snap[publish].root_cause == "load"


def test_none_failed_runs_below_a_gate_skip(registry: Registry, executor: Executor) -> None:
    received: list[object] = []

    @task
    def config() -> bool:
        return False

    @task(depends_on=[config], when=lambda config: config)
    def extra(config: bool) -> int:
        return 1

    @task(depends_on=[extra])
    def enrich(extra: int) -> int:
        return extra

    @task(depends_on=[config, enrich], trigger="none_failed")
    def report(config: bool | None, enrich: int | None) -> str:
        received.append(enrich)
        return "done"

    snap = run(config, extra, enrich, report, executor=executor)
    assert snap[extra].status is SKIPPED
    assert snap[enrich].status is SKIPPED
    assert snap[report].status is OK
    assert received == [None]


def test_any_succeeded(registry: Registry, executor: Executor) -> None:
    @task
    def primary() -> str:
        raise ConnectionError("down")

    @task
    def mirror() -> str:
        return "mirror"

    @task(depends_on=[primary, mirror], trigger="any_succeeded")
    def fetch(primary: str | None, mirror: str | None) -> str:
        return primary or mirror or "none"

    @task(depends_on=[primary], trigger="any_succeeded")
    def only_primary(primary: str | None) -> str:
        return "never"

    snap = run(primary, mirror, fetch, only_primary, executor=executor)
    assert snap.value(fetch) == "mirror"
    assert snap[only_primary].status is SKIPPED
    assert snap[only_primary].reason == (
        "trigger rule any_succeeded: no upstream succeeded ('primary' failed)"
    )
    assert snap[only_primary].root_cause == "primary"


def test_any_succeeded_without_dependencies_runs(registry: Registry) -> None:
    @task(trigger="any_succeeded")
    def alone() -> int:
        return 1

    assert run(alone, executor=InlineExecutor()).value(alone) == 1


def test_optional_dependency_skipped_by_a_gate_is_received_as_none(
    registry: Registry, executor: Executor
) -> None:
    @task
    def base() -> int:
        return 10

    @task(when=lambda: False)
    def extra() -> int:
        return 5

    @task(depends_on=[base, optional(extra)])
    def total(base: int, extra: int | None) -> int:
        return base + (extra or 0)

    snap = run(base, extra, total, executor=executor)
    assert snap[extra].status is SKIPPED
    assert snap.value(total) == 10


def test_optional_dependency_that_failed_still_skips(
    registry: Registry, executor: Executor
) -> None:
    @task
    def base() -> int:
        return 10

    @task
    def extra() -> int:
        raise ValueError("boom")

    @task(depends_on=[extra])
    def extra_clean(extra: int) -> int:
        return extra

    @task(depends_on=[base, optional(extra)])
    def total(base: int, extra: int | None) -> int:
        return base

    @task(depends_on=[base, optional("extra_clean")])
    def total2(base: int, extra_clean: int | None) -> int:
        return base

    snap = run(base, extra, extra_clean, total, total2, executor=executor)
    assert snap[total].status is SKIPPED
    assert snap[total].reason == "upstream 'extra' failed"
    assert snap[total].root_cause == "extra"
    # skipped because of a failure, not harmlessly: optional does not hide the failure
    assert snap[total2].status is SKIPPED
    assert snap[total2].root_cause == "extra"


def test_optional_required_dependency_still_required(registry: Registry) -> None:
    @task(when=lambda: False)
    def base() -> int:
        return 10

    @task
    def extra() -> int:
        return 5

    @task(depends_on=[base, optional(extra)])
    def total(base: int, extra: int | None) -> int:
        return base

    snap = run(base, extra, total, executor=InlineExecutor())
    assert snap[total].status is SKIPPED
    assert snap[total].reason == "upstream 'base' skipped"
    assert snap[total].root_cause == "base"


def test_gates_of_a_triggered_task_receive_none(registry: Registry, executor: Executor) -> None:
    seen: list[object] = []

    def gate(load: object) -> bool:
        seen.append(load)
        return True

    @task
    def load() -> int:
        raise ValueError("boom")

    @task(depends_on=[load], trigger="all_done", when=gate)
    def cleanup(load: int | None) -> str:
        return "ok"

    snap = run(load, cleanup, executor=executor)
    assert snap.value(cleanup) == "ok"
    assert seen == [None]


def test_failure_value_is_not_passed_on(registry: Registry) -> None:
    """A FAILED retry_until keeps its value on the record; a trigger task still gets None."""
    got: list[object] = []

    @task(retry_until=lambda value: value > 5)
    def poll() -> int:
        return 1

    @task(depends_on=[poll], trigger="all_done")
    def after(poll: int | None) -> None:
        got.append(poll)

    snap = run(poll, after, executor=InlineExecutor())
    assert snap[poll].status is FAILED
    assert snap[poll].has_value
    assert got == [None]


@pytest.mark.parametrize("order", ["gate_first", "failure_first"])
def test_root_cause_prefers_the_failure_whatever_ends_first(registry: Registry, order: str) -> None:
    """A task below both a gate skip and a failure is skipped because of the failure."""

    @task(when=lambda: False)
    def gated() -> int:
        return 1

    @task
    def broken() -> int:
        raise ValueError("boom")

    deps: list[TaskSpec[..., Any]] = [gated, broken] if order == "gate_first" else [broken, gated]

    @task(depends_on=deps)
    def both(gated: int, broken: int) -> int:
        return 1

    @task(depends_on=[both], trigger="none_failed")
    def final(both: int | None) -> str:
        return "ran"

    specs = [gated, broken] if order == "gate_first" else [broken, gated]
    snap = run(*specs, both, final, executor=InlineExecutor())
    assert snap[both].status is SKIPPED
    assert snap[both].root_cause == "broken"
    assert snap[both].reason == "upstream 'broken' failed"
    assert snap[final].status is SKIPPED
    assert snap[final].root_cause == "broken"


def test_fail_fast_still_runs_all_done_cleanup(registry: Registry, executor: Executor) -> None:
    @task
    def setup() -> str:
        return "resource"

    @task(depends_on=[setup])
    def work(setup: str) -> int:
        raise ValueError("boom")

    @task(depends_on=[work])
    def more(work: int) -> int:
        return work

    @task(depends_on=[setup, more], trigger="all_done")
    def teardown(setup: str | None, more: int | None) -> str:
        return f"released {setup} after {more}"

    @task(depends_on=[more], trigger="any_succeeded")
    def fallback(more: int | None) -> int:
        return 0

    snap = run(setup, work, more, teardown, fallback, executor=executor, fail_fast=True)
    assert snap[work].status is FAILED
    assert snap[more].status in (SKIPPED, CANCELLED)
    assert snap[more].root_cause == "work"
    assert snap.value(teardown) == "released resource after None"
    assert snap[fallback].status in (SKIPPED, CANCELLED)
    assert snap[fallback].root_cause == "work"


def test_fail_fast_cancels_what_cleanup_waits_on_then_runs_cleanup(registry: Registry) -> None:
    order: list[str] = []

    @task
    def first() -> int:
        raise ValueError("boom")

    @task
    def independent() -> int:
        order.append("independent")
        return 1

    @task(depends_on=[independent])
    def later(independent: int) -> int:
        order.append("later")
        return 2

    @task(depends_on=[later], trigger="all_done")
    def cleanup(later: int | None) -> int:
        order.append("cleanup")
        return 3

    snap = run(first, independent, later, cleanup, executor=InlineExecutor(), fail_fast=True)
    assert snap[independent].status is CANCELLED
    assert snap[later].status is CANCELLED
    assert snap[later].root_cause == "first"
    assert snap.value(cleanup) == 3
    assert order == ["cleanup"]


def test_cancelled_task_and_cleanup_do_not_chain_on_threads(registry: Registry) -> None:
    """A plain chain hand-off never carries a trigger task to the failing task's worker."""

    @task
    def step() -> int:
        raise ValueError("boom")

    @task(depends_on=[step], trigger="all_done")
    def after(step: int | None) -> str:
        return "after"

    with ThreadPoolExecutor(2) as pool:
        for _ in range(20):
            snap = run(step, after, executor=pool, fail_fast=True)
            assert snap.value(after) == "after"


def test_interrupt_cancels_cleanup_too(registry: Registry) -> None:
    @task
    def stop() -> None:
        raise KeyboardInterrupt

    @task(depends_on=[stop], trigger="all_done")
    def cleanup(stop: None) -> int:
        return 1

    with pytest.raises(KeyboardInterrupt) as info:
        run(stop, cleanup, executor=InlineExecutor())
    snap: Snapshot = info.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert snap[cleanup].status is SKIPPED  # an interrupt stops everything: no rule is asked
    assert snap[cleanup].root_cause == "stop"
    assert snap.is_complete


def test_detached_trigger_task_waits_for_the_main_dag(registry: Registry) -> None:
    order: list[str] = []

    @task
    def main() -> int:
        raise ValueError("boom")

    @task
    def slow() -> int:
        order.append("slow")
        return 1

    @task(depends_on=[main], detached=True, trigger="all_done")
    def audit(main: int | None) -> None:
        order.append("audit")

    snap = run(main, slow, audit, executor=InlineExecutor())
    assert snap[audit].status is OK
    assert order == ["slow", "audit"]


def test_trigger_events_reach_hooks(registry: Registry) -> None:
    hook = RecordingHook()

    @task
    def load() -> int:
        raise ValueError("boom")

    @task(depends_on=[load], trigger="none_failed")
    def publish(load: int | None) -> int:
        return 1

    execute(plan(TaskGraph.build([load, publish])), executor=InlineExecutor(), hooks=[hook])
    skips = [e for e in hook.events if isinstance(e, TaskSkipped)]
    assert [(e.task, e.root_cause) for e in skips] == [("publish", "load")]
    assert skips[0].reason.startswith("trigger rule none_failed")


def test_aexecute_honours_trigger_rules(registry: Registry) -> None:
    @task
    async def load() -> int:
        raise ValueError("boom")

    @task(depends_on=[load], trigger="all_done")
    async def cleanup(load: int | None) -> str:
        return f"got {load}"

    @task(depends_on=[load], trigger="none_failed")
    def publish(load: int | None) -> int:
        return 1

    snap = asyncio.run(aexecute(plan(TaskGraph.build([load, cleanup, publish]))))
    assert snap.value(cleanup) == "got None"
    assert snap[publish].status is SKIPPED
    assert snap[publish].root_cause == "load"


def test_simulate_drives_trigger_rules() -> None:
    def never(**_: Any) -> Any:
        raise AssertionError("a simulation never runs task bodies")

    dep = flowplan.Dependency
    a = TaskSpec("a", never)
    b = TaskSpec("b", never)
    c = TaskSpec("c", never, deps=(dep("a"), dep("b")), trigger="any_succeeded")
    d = TaskSpec("d", never, deps=(dep("a"), dep("b", optional=True)))
    sim = simulate(
        plan(TaskGraph.build([a, b, c, d])),
        {a: Value(1), b: Fail(ValueError("boom"))},
        fail_fast=False,
    )
    assert sim.snapshot[c].status is OK
    assert sim.snapshot[d].status is SKIPPED
    assert sim.snapshot[d].root_cause == "b"


def test_resume_after_a_trigger_skip_runs_the_skipped_tasks_again(registry: Registry) -> None:
    attempts = {"n": 0}

    @task
    def flaky() -> int:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ValueError("first time")
        return 7

    @task(depends_on=[flaky], trigger="none_failed")
    def use(flaky: int | None) -> int | None:
        return flaky

    graph = TaskGraph.build([flaky, use])
    first = execute(plan(graph), executor=InlineExecutor(), fail_fast=False)
    assert first[use].status is SKIPPED
    second = execute(plan(graph, first), executor=InlineExecutor())
    assert second.value(use) == 7


def test_flow_summary_shows_root_causes_apart_from_cascades(registry: Registry) -> None:
    @task
    def load() -> int:
        raise ValueError("boom")

    @task(depends_on=[load])
    def transform(load: int) -> int:
        return load

    @task(depends_on=[transform], trigger="all_done")
    def cleanup(transform: int | None) -> str:
        return "ok"

    flow = Flow(cleanup, fail_fast=False, hooks=[])
    results = flow.run()
    assert results["cleanup"].value == "ok"
    summary = flow.summary()
    lines = summary.splitlines()
    assert "root causes:" in lines
    tail = lines[lines.index("root causes:") :]
    assert tail[1] == "  load failed (ValueError: boom) -> skipped 1: transform"


def test_engine_task_accepts_trigger() -> None:
    from flowplan.engine import build_default_engine

    engine = build_default_engine(max_workers=2, max_parallel=2)
    try:

        @engine.task(dag="etl")
        def load() -> int:
            raise ValueError("boom")

        @engine.task(dag="etl", deps=[load], trigger="all_done")
        def cleanup() -> str:
            return "ok"

        run_id = asyncio.run(engine.run_once("etl"))
        report = engine.get_run_report(run_id)
    finally:
        engine.close()
    assert report["tasks"]["cleanup"]["status"] == "SUCCESS"
    assert report["tasks"]["load"]["status"] == "FAILED"
    assert report["status"] == "FAILED"


def test_ascii_report_lists_root_causes(registry: Registry) -> None:
    @task
    def load() -> int:
        raise ValueError("boom")

    @task(depends_on=[load])
    def transform(load: int) -> int:
        return load

    graph = TaskGraph.build([load, transform])
    snap = execute(plan(graph), executor=InlineExecutor())
    text = to_ascii(graph, snapshot=snap)
    assert text.splitlines()[-2:] == [
        "root causes:",
        "  load failed (ValueError: boom) -> skipped 1: transform",
    ]


def test_mermaid_and_dot_mark_root_causes(registry: Registry) -> None:
    @task
    def load() -> int:
        raise ValueError("boom")

    @task(depends_on=[load])
    def transform(load: int) -> int:
        return load

    graph = TaskGraph.build([load, transform])
    snap = execute(plan(graph), executor=InlineExecutor())
    mermaid = to_mermaid(graph, snapshot=snap).splitlines()
    assert mermaid[-2:] == ["    classDef rootcause stroke-width:4px", "    class n0 rootcause"]
    assert "rootcause" not in to_mermaid(graph)
    dot = to_dot(graph, snapshot=snap)
    assert '"load" [fillcolor="#f8d7da", color="#dc3545", tooltip="failed, root cause", ' in dot
    assert "penwidth=3" in dot.split('"transform" [')[0]
    assert "penwidth" not in dot.split('"transform" [')[1]


# -- liveness ------------------------------------------------------------------------------


def _chain() -> TaskGraph:
    a = TaskSpec("a", lambda: 1)
    b = TaskSpec("b", lambda a: a, deps=(flowplan.Dependency("a", a),))
    return TaskGraph.build([a, b])


def test_liveness_refuses_a_dependency_that_never_ends() -> None:
    with pytest.raises(LivenessError) as info:
        check_liveness(_chain(), ("b",), {})
    assert info.value.task == "b"
    assert info.value.dependency == "a"
    assert "neither scheduled nor reused" in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_liveness_refuses_a_reused_failure_or_released_value() -> None:
    failed = TaskRecord("a", FAILED)
    with pytest.raises(LivenessError, match="reused record is failed"):
        check_liveness(_chain(), ("b",), {"a": failed})
    released = TaskRecord("a", OK, released=True)
    with pytest.raises(LivenessError, match="released"):
        check_liveness(_chain(), ("b",), {"a": released})
    check_liveness(_chain(), ("b",), {"a": TaskRecord("a", OK, value=1, has_value=True)})


def test_liveness_refuses_main_waiting_on_detached() -> None:
    a = TaskSpec("a", lambda: 1, detached=True)
    b = TaskSpec("b", lambda a: a, deps=(flowplan.Dependency("a", a),), detached=True)
    c = TaskSpec("c", lambda: 1)
    graph = TaskGraph.build([a, b, c])
    check_liveness(graph, ("a", "b"), {})
    main = attrs_evolve_detached(graph, "b")
    with pytest.raises(LivenessError, match="detached"):
        check_liveness(main, ("a", "b"), {})


def attrs_evolve_detached(graph: TaskGraph, name: str) -> TaskGraph:
    """The same graph with ``name`` no longer detached (a graph build() would refuse)."""
    import attrs

    return attrs.evolve(graph, detached=graph.detached - {name})


def test_plan_with_targets_and_resume_is_live(registry: Registry) -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a

    @task(depends_on=[b], trigger="all_done")
    def c(b: int | None) -> int:
        return 2

    graph = TaskGraph.build([a, b, c])
    first = execute(plan(graph, targets=[b]), executor=InlineExecutor())
    again = plan(graph, first, targets=[c])
    assert again.to_run == ("c",)
    assert execute(again, executor=InlineExecutor()).value(c) == 2


# -- properties: random DAGs against a reference model of the rules ---------------------------

RULES = ("all_succeeded", "all_done", "none_failed", "any_succeeded")
SETTINGS = settings(max_examples=120, deadline=None)


@attrs.frozen
class Case:
    """A random DAG (edges from lower to higher index) with rules, optional edges, outcomes."""

    deps: tuple[tuple[int, ...], ...]
    optional: tuple[tuple[bool, ...], ...]
    rules: tuple[str, ...]
    outcomes: tuple[str, ...]  # "ok", "fail" (the body raises) or "gate" (when= is falsy)
    detached: frozenset[int]

    @property
    def size(self) -> int:
        return len(self.deps)


@st.composite
def trigger_cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 10))
    deps = tuple(
        tuple(sorted(draw(st.sets(st.integers(0, j - 1), max_size=3)))) if j else ()
        for j in range(n)
    )
    optional_flags = tuple(tuple(draw(st.booleans()) for _ in d) for d in deps)
    rules = tuple(draw(st.sampled_from(RULES)) for _ in range(n))
    outcomes = tuple(draw(st.sampled_from(("ok", "ok", "fail", "gate"))) for _ in range(n))
    detached = set(draw(st.sets(st.integers(0, n - 1), max_size=2)))
    for j in range(n):  # a main task may not depend on a detached one
        if any(d in detached for d in deps[j]):
            detached.add(j)
    return Case(deps, optional_flags, rules, outcomes, frozenset(detached))


def model(case: Case) -> tuple[dict[int, TaskStatus], dict[int, bool]]:
    """The rules, written plainly: each task's status, and whether a failure caused its skip."""
    status: dict[int, TaskStatus] = {}
    harmful: dict[int, bool] = {}
    for i in range(case.size):
        deps, rule = case.deps[i], case.rules[i]

        def accepted(k: int, d: int, i: int = i, rule: str = rule) -> bool:
            if status[d] is OK:
                return True
            gated = status[d] is SKIPPED and not harmful[d]
            return gated and (rule == "none_failed" or case.optional[i][k])

        if not deps or rule == "all_done":
            blocking: list[int] = []
        elif rule == "any_succeeded":
            blocking = [] if any(status[d] is OK for d in deps) else list(deps)
        else:
            blocking = [d for k, d in enumerate(deps) if not accepted(k, d)]
        if blocking:
            status[i] = SKIPPED
            harmful[i] = any(status[d] is FAILED or harmful[d] for d in blocking)
        else:
            outcome = case.outcomes[i]
            status[i] = {"ok": OK, "fail": FAILED, "gate": SKIPPED}[outcome]
            harmful[i] = outcome == "fail"
    return status, harmful


def build(case: Case, calls: list[tuple[int, dict[str, Any]]]) -> TaskGraph:
    specs: list[TaskSpec[..., Any]] = []
    for i in range(case.size):

        def body(_i: int = i, **kwargs: Any) -> str:
            calls.append((_i, kwargs))
            if case.outcomes[_i] == "fail":
                raise ValueError(f"t{_i} failed")
            return f"v{_i}"

        gate = (lambda **_: False) if case.outcomes[i] == "gate" else None
        specs.append(
            TaskSpec(
                f"t{i}",
                body,
                deps=tuple(
                    flowplan.Dependency(f"t{d}", optional=opt)
                    for d, opt in zip(case.deps[i], case.optional[i], strict=True)
                ),
                when=gate,
                trigger=case.rules[i],  # type: ignore[arg-type]  # drawn from RULES
                detached=i in case.detached,
            )
        )
    return TaskGraph.build(specs, check_types=False)


def check_against_model(
    case: Case, snap: Snapshot, calls: list[tuple[int, dict[str, Any]]]
) -> None:
    status, harmful = model(case)
    assert snap.is_complete
    for i in range(case.size):
        record = snap[f"t{i}"]
        assert record.status is status[i], (i, record)
        if record.status is SKIPPED:
            root = snap[record.root_cause or ""]
            assert (root.status is FAILED) is harmful[i], (i, record, root)
            if not harmful[i]:
                assert root.status is SKIPPED
                assert root.root_cause == root.name
    for i, kwargs in calls:  # what each body received: a value, or None if it did not succeed
        for d in case.deps[i]:
            expected = f"v{d}" if status[d] is OK else None
            assert kwargs[f"t{d}"] == expected, (i, d, kwargs)


GATE_THEN_FAILURE = Case(  # a gate skip ends before a failure: the failure is the root
    deps=((), (), (0, 1), (2,)),
    optional=((), (), (False, False), (False,)),
    rules=("all_succeeded", "all_succeeded", "all_succeeded", "none_failed"),
    outcomes=("gate", "fail", "ok", "ok"),
    detached=frozenset(),
)


@SETTINGS
@example(case=GATE_THEN_FAILURE)
@given(case=trigger_cases())
def test_random_dags_agree_with_the_reference_model_inline(case: Case) -> None:
    calls: list[tuple[int, dict[str, Any]]] = []
    snap = execute(plan(build(case, calls)), executor=InlineExecutor(), fail_fast=False)
    check_against_model(case, snap, calls)


_POOL = ThreadPoolExecutor(4, thread_name_prefix="test-trigger-props")


@settings(max_examples=60, deadline=None)
@given(case=trigger_cases())
def test_random_dags_agree_with_the_reference_model_on_threads(case: Case) -> None:
    calls: list[tuple[int, dict[str, Any]]] = []
    snap = execute(plan(build(case, calls)), executor=_POOL, fail_fast=False)
    check_against_model(case, snap, calls)


@settings(max_examples=60, deadline=None)
@given(case=trigger_cases())
def test_random_dags_agree_with_the_reference_model_async_and_simulated(case: Case) -> None:
    calls: list[tuple[int, dict[str, Any]]] = []
    graph = build(case, calls)
    snap = asyncio.run(aexecute(plan(graph), fail_fast=False))
    check_against_model(case, snap, calls)
    script = {
        f"t{i}": Fail(ValueError("x")) for i in range(case.size) if case.outcomes[i] == "fail"
    }
    sim = simulate(plan(graph), script, fail_fast=False)
    status, _ = model(case)
    assert {n: r.status for n, r in sim.snapshot.records.items()} == {
        f"t{i}": s for i, s in status.items()
    }


@SETTINGS
@given(case=trigger_cases(), threads=st.booleans())
def test_fail_fast_ends_every_task_and_only_cleanup_starts_after_the_stop(
    case: Case, threads: bool
) -> None:
    calls: list[tuple[int, dict[str, Any]]] = []
    executor: Executor = _POOL if threads else InlineExecutor()
    graph = build(case, calls)
    snap = execute(plan(graph), executor=executor, fail_fast=True)
    assert snap.is_complete
    for i in range(case.size):
        record = snap[f"t{i}"]
        if case.rules[i] == "all_done":  # cleanup is never cancelled by a fail-fast stop
            assert record.status is not CANCELLED, record
        if record.status in (SKIPPED, CANCELLED) and record.root_cause != record.name:
            assert snap[record.root_cause or ""].status in (FAILED, SKIPPED)
        if record.status is SKIPPED and record.root_cause != record.name:
            assert record.root_cause in graph.ancestors([record.name]), record
    if not threads:  # inline: nothing but cleanup (and detached tasks) starts after the stop
        order = [i for i, _ in calls]
        main_failures = [
            k for k, i in enumerate(order) if case.outcomes[i] == "fail" and i not in case.detached
        ]
        if main_failures:
            after = order[main_failures[0] + 1 :]
            assert all(case.rules[i] == "all_done" or i in case.detached for i in after), after


@SETTINGS
@given(case=trigger_cases(), data=st.data())
def test_targets_and_resume_always_end_with_every_planned_task_terminal(
    case: Case, data: st.DataObject
) -> None:
    calls: list[tuple[int, dict[str, Any]]] = []
    graph = build(case, calls)
    targets = data.draw(st.sets(st.sampled_from(graph.order), min_size=1, max_size=3))
    first = execute(plan(graph, targets=targets), executor=InlineExecutor(), fail_fast=False)
    assert first.is_complete
    succeeded = {n for n, r in first.records.items() if r.status is OK}
    calls.clear()
    second_plan = plan(graph, first)  # resume the whole graph: liveness holds, nothing hangs
    second = execute(second_plan, executor=InlineExecutor(), fail_fast=data.draw(st.booleans()))
    assert second.is_complete
    assert set(second.records) == set(graph.order)
    assert not {f"t{i}" for i, _ in calls} & succeeded  # resume never reruns a success
