"""Tests for Plan.decisions (a lazy name → Decision mapping) and the fresh-plan fast path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from flowplan import (
    Action,
    Decision,
    Dependency,
    InlineExecutor,
    MemoryCache,
    Plan,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    execute,
    plan,
)

NO_RECORD = "no earlier record"
DETACHED = " (detached: its failure never fails the run)"


# -- tasks (module level: stable code for the cache's keys) ---------------------------------------
def extract() -> int:
    return 1


def left(extract: int) -> int:
    return extract + 1


def right(extract: int) -> int:
    return extract + 2


def report(left: int, right: int) -> int:
    return left + right


def notify(report: int) -> None:
    return None


class Calls:
    """Counts calls by task name; its repr carries an address, so it is no part of a cache key."""

    def __init__(self) -> None:
        self.names: list[str] = []


CALLS = Calls()


def cached_source() -> int:
    CALLS.names.append("cached_source")
    return 20


def uncached_sink(cached_source: int) -> int:
    CALLS.names.append("uncached_sink")
    return cached_source + 1


# -- helpers -------------------------------------------------------------------------------------
def _diamond_specs() -> list[TaskSpec[..., Any]]:
    """extract → (left, right) → report → notify (detached)."""
    return [
        TaskSpec("extract", extract),
        TaskSpec("left", left, deps=(Dependency("extract"),)),
        TaskSpec("right", right, deps=(Dependency("extract"),)),
        TaskSpec("report", report, deps=(Dependency("left"), Dependency("right"))),
        TaskSpec("notify", notify, deps=(Dependency("report"),), detached=True),
    ]


@pytest.fixture
def diamond() -> TaskGraph:
    return TaskGraph.build(_diamond_specs(), check_types=False)


ORDER = ("extract", "left", "right", "report", "notify")


def succeeded(name: str, value: Any, **kw: Any) -> TaskRecord:
    return TaskRecord(name, TaskStatus.SUCCEEDED, attempts=1, value=value, has_value=True, **kw)


def _assert_topological(graph: TaskGraph, names: list[str]) -> None:
    position = {name: i for i, name in enumerate(names)}
    assert set(position) == set(graph.order)
    for name in names:
        for upstream in graph.predecessors[name]:
            assert position[upstream] < position[name], (upstream, name)


# -- the mapping ---------------------------------------------------------------------------------
def test_decisions_iterate_in_topological_order(diamond: TaskGraph) -> None:
    p = plan(diamond, run_id="r")
    assert tuple(p.decisions) == ORDER == diamond.order
    assert tuple(p.decisions.keys()) == ORDER
    _assert_topological(diamond, list(p.decisions))


def test_decisions_iterate_in_topological_order_when_specs_come_shuffled() -> None:
    shuffled = list(reversed(_diamond_specs()))
    graph = TaskGraph.build(shuffled, check_types=False)
    for p in (
        plan(graph),  # fast path
        plan(graph, targets=["report"]),  # task by task
        plan(graph, Snapshot("r0", {"extract": succeeded("extract", 1)})),
    ):
        assert tuple(p.decisions) == graph.order
        _assert_topological(graph, list(p.decisions))
        assert [d.task for d in p.decisions.values()] == list(graph.order)


def test_a_fresh_plan_reads_as_a_mapping_of_decisions(diamond: TaskGraph) -> None:
    decisions = plan(diamond).decisions
    assert isinstance(decisions, Mapping)
    assert len(decisions) == 5
    assert "report" in decisions
    assert "nope" not in decisions
    not_a_name: object = 3
    assert not_a_name not in decisions
    assert decisions["left"] == Decision("left", Action.RUN, NO_RECORD)
    assert decisions.get("left") == Decision("left", Action.RUN, NO_RECORD)
    assert decisions.get("nope") is None
    sentinel = Decision("nope", Action.NOT_NEEDED, "x")
    assert decisions.get("nope", sentinel) is sentinel
    with pytest.raises(KeyError):
        decisions["nope"]
    assert list(decisions.items()) == [(n, Decision(n, Action.RUN, NO_RECORD)) for n in ORDER]
    assert list(decisions.values()) == [Decision(n, Action.RUN, NO_RECORD) for n in ORDER]
    for name in ORDER:
        decision = decisions[name]
        assert decision == Decision(name, Action.RUN, NO_RECORD)
        assert (decision.task, decision.action, decision.reason) == (name, Action.RUN, NO_RECORD)


def test_decisions_are_read_only(diamond: TaskGraph) -> None:
    decisions: Any = plan(diamond).decisions
    with pytest.raises(TypeError):
        decisions["left"] = Decision("left", Action.REUSE, "x")
    with pytest.raises((TypeError, AttributeError)):
        del decisions["left"]
    assert decisions["left"].action is Action.RUN
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        decisions["left"].action = Action.REUSE


def test_decisions_compare_equal_to_a_plain_dict(diamond: TaskGraph) -> None:
    expected = {name: Decision(name, Action.RUN, NO_RECORD) for name in ORDER}
    one, two = plan(diamond, run_id="a"), plan(diamond, run_id="b")
    assert dict(one.decisions) == expected
    assert dict(two.decisions) == expected
    assert one.decisions == expected
    assert one.decisions == two.decisions
    different = {**expected, "left": Decision("left", Action.REUSE, NO_RECORD)}
    assert one.decisions != different
    assert dict(one.decisions) != different


def test_the_fast_path_matches_planning_task_by_task(diamond: TaskGraph) -> None:
    fast = plan(diamond, run_id="r")
    # Targeting the last main task needs every main task, and notify (detached) comes along:
    # planned task by task, every decision is the same.
    slow = plan(diamond, targets=["report"], run_id="r")
    assert slow.decisions == fast.decisions
    assert dict(slow.decisions) == dict(fast.decisions)
    assert slow.to_run == fast.to_run == diamond.order
    assert slow.explain() == fast.explain()


def test_an_empty_snapshot_plans_like_a_fresh_run(diamond: TaskGraph) -> None:
    p = plan(diamond, Snapshot("r0", {}))
    assert dict(p.decisions) == {n: Decision(n, Action.RUN, NO_RECORD) for n in ORDER}
    assert p.to_run == diamond.order
    assert dict(p.reused) == {}


def test_action_reads_the_decisions(diamond: TaskGraph) -> None:
    p = plan(diamond, overrides={"right": 3})
    assert p.action("right") is Action.REUSE
    assert p.action(diamond["left"]) is Action.RUN
    assert p.decisions["right"].action is p.action("right")


# -- explain() -----------------------------------------------------------------------------------
def test_explain_a_fresh_plan(diamond: TaskGraph) -> None:
    p = plan(diamond)
    assert p.explain().splitlines() == [
        "5 to run, 0 to reuse, 0 not needed",
        *(f"run {n}: {NO_RECORD}" for n in ORDER[:-1]),
        f"run notify: {NO_RECORD}{DETACHED}",
    ]
    assert p.explain("report") == f"run report: {NO_RECORD}"
    assert p.explain(diamond["notify"]) == f"run notify: {NO_RECORD}{DETACHED}"


def test_explain_a_resume(diamond: TaskGraph) -> None:
    snap = Snapshot(
        "r0",
        {
            "extract": succeeded("extract", 1),
            "left": succeeded("left", 2),
            "right": TaskRecord("right", TaskStatus.FAILED, attempts=1),
        },
    )
    p = plan(diamond, snap)
    assert p.explain().splitlines() == [
        "3 to run, 2 to reuse, 0 not needed (resuming r0)",
        "reuse extract: succeeded in an earlier run",
        "reuse left: succeeded in an earlier run",
        "run right: failed earlier",
        f"run report: {NO_RECORD}",
        f"run notify: {NO_RECORD}{DETACHED}",
    ]
    assert p.decisions["left"] == Decision("left", Action.REUSE, "succeeded in an earlier run")
    assert p.to_run == ("right", "report", "notify")
    assert set(p.reused) == {"extract", "left"}
    assert not set(p.to_run) & set(p.reused)


def test_explain_targets(diamond: TaskGraph) -> None:
    p = plan(diamond, targets=["left"])
    assert p.explain().splitlines() == [
        "2 to run, 0 to reuse, 3 not needed",
        f"run extract: {NO_RECORD}",
        f"run left: {NO_RECORD}",
        "not needed right: not upstream of any target",
        "not needed report: not upstream of any target",
        f"not needed notify: not upstream of any target{DETACHED}",
    ]
    assert p.decisions["right"] == Decision(
        "right", Action.NOT_NEEDED, "not upstream of any target"
    )
    assert p.to_run == ("extract", "left")


def test_explain_rerun(diamond: TaskGraph) -> None:
    first = execute(plan(diamond), executor=InlineExecutor())
    p = plan(diamond, first, rerun=["left"])
    assert p.explain().splitlines() == [
        f"3 to run, 2 to reuse, 0 not needed (resuming {first.run_id[:12]})",
        "reuse extract: succeeded in an earlier run",
        "run left: rerun requested",
        "reuse right: succeeded in an earlier run",
        "run report: an upstream task is rerun",
        f"run notify: an upstream task is rerun{DETACHED}",
    ]
    assert p.decisions["left"] == Decision("left", Action.RUN, "rerun requested")
    assert p.to_run == ("left", "report", "notify")


def test_explain_overrides(diamond: TaskGraph) -> None:
    p = plan(diamond, overrides={"right": 40, diamond["left"]: 2})
    assert p.explain().splitlines() == [
        "3 to run, 2 to reuse, 0 not needed",
        f"run extract: {NO_RECORD}",
        "reuse left: overridden with a supplied value",
        "reuse right: overridden with a supplied value",
        f"run report: {NO_RECORD}",
        f"run notify: {NO_RECORD}{DETACHED}",
    ]
    assert p.to_run == ("extract", "report", "notify")
    assert p.reused["right"].value == 40
    assert execute(p, executor=InlineExecutor()).value("report") == 42


def test_explain_a_released_value_in_doubt(diamond: TaskGraph) -> None:
    released = attrs.evolve(succeeded("left", None), has_value=False, released=True)
    snap = Snapshot(
        "r0",
        {
            "extract": succeeded("extract", 1),
            "left": released,
            "right": succeeded("right", 3),
        },
    )
    p = plan(diamond, snap)
    reason = (
        "succeeded earlier, but its value was released (retain_result=False) and 'report' "
        "needs it; running it again could repeat its effect (no effect declared), so it is "
        "not run again silently: plan from a store that keeps values (store.load(run_id) of "
        "SqliteStateStore), or declare effect='pure' if running it again is harmless"
    )
    assert p.explain().splitlines() == [
        "2 to run, 2 to reuse, 0 not needed, 1 in doubt (resuming r0)",
        "reuse extract: succeeded in an earlier run",
        f"in doubt left: {reason}",
        "reuse right: succeeded in an earlier run",
        f"run report: {NO_RECORD}",
        f"run notify: {NO_RECORD}{DETACHED}",
    ]
    assert p.decisions["left"] == Decision("left", Action.IN_DOUBT, reason)
    assert "left" not in p.reused
    assert p.to_run == ("left", "report", "notify")


def test_to_run_of_a_resume_excludes_reused_tasks(diamond: TaskGraph) -> None:
    snap = Snapshot("r0", {"extract": succeeded("extract", 1), "right": succeeded("right", 3)})
    p = plan(diamond, snap)
    assert p.to_run == ("left", "report", "notify")
    assert [n for n, d in p.decisions.items() if d.action is Action.RUN] == list(p.to_run)
    assert execute(p, executor=InlineExecutor()).value("report") == 2 + 3


# -- the result cache on a fresh plan --------------------------------------------------------------
def _cache_graph() -> TaskGraph:
    return TaskGraph.build(
        [
            TaskSpec("cached_source", cached_source, cache=True),
            TaskSpec("uncached_sink", uncached_sink, deps=(Dependency("cached_source"),)),
        ],
        check_types=False,
    )


def _reason_of(p: Plan, name: str) -> str:
    return p.decisions[name].reason


def test_a_cache_hit_on_a_fresh_plan_is_reused_and_not_run() -> None:
    CALLS.names.clear()
    cache = MemoryCache()
    graph = _cache_graph()

    first = plan(graph, cache=cache)
    assert first.to_run == graph.order
    assert {d.action for d in first.decisions.values()} == {Action.RUN}
    assert _reason_of(first, "cached_source").startswith(f"{NO_RECORD}; cache miss")
    assert execute(first, executor=InlineExecutor()).value("uncached_sink") == 21
    assert CALLS.names == ["cached_source", "uncached_sink"]

    second = plan(graph, cache=cache)
    hit = second.decisions["cached_source"]
    assert hit.action is Action.REUSE
    assert hit.reason.startswith("cache hit")
    assert second.explain("cached_source").startswith("reuse cached_source: cache hit")
    assert second.decisions["uncached_sink"] == Decision("uncached_sink", Action.RUN, NO_RECORD)
    assert second.to_run == ("uncached_sink",)
    assert "cached_source" in second.reused
    assert tuple(second.decisions) == graph.order

    snap = execute(second, executor=InlineExecutor())
    assert snap.value("uncached_sink") == 21
    assert CALLS.names == ["cached_source", "uncached_sink", "uncached_sink"]  # source not rerun


def test_an_empty_cache_leaves_the_fresh_plan_running_everything() -> None:
    graph = _cache_graph()
    p = plan(graph, cache=MemoryCache())
    assert p.to_run == graph.order
    assert dict(p.reused) == {}
    assert [d.action for d in p.decisions.values()] == [Action.RUN, Action.RUN]


# -- repr ----------------------------------------------------------------------------------------
def test_repr_is_one_short_line_of_counts(diamond: TaskGraph) -> None:
    assert repr(plan(diamond, run_id="r1")) == (
        "Plan(run_id='r1', 5 tasks: 5 to run, 0 to reuse, 0 not needed)"
    )
    partial = plan(diamond, overrides={"extract": 1}, targets=["left"], run_id="r2")
    assert repr(partial) == "Plan(run_id='r2', 5 tasks: 1 to run, 1 to reuse, 3 not needed)"
    chain = [TaskSpec("t0", extract)] + [
        TaskSpec(f"t{i}", extract, deps=(Dependency(f"t{i - 1}", ordering_only=True),))
        for i in range(1, 2000)
    ]
    big = plan(TaskGraph.build(chain, check_types=False), run_id="big")
    assert repr(big) == "Plan(run_id='big', 2000 tasks: 2000 to run, 0 to reuse, 0 not needed)"
