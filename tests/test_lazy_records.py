"""Lazy success records: an inline run with no store and no hooks keeps a plain task's success
as a plain tuple and builds its :class:`TaskRecord` when the snapshot is read.

Every test here checks public behaviour only: a snapshot from that direct path must be
indistinguishable from one built by the general path (a no-op hook) or by threads, apart from
timings; and the GC test checks the claim the tuples exist for.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest

from flowplan import (
    CallbackHook,
    InlineExecutor,
    MemoryStore,
    Plan,
    RetryPolicy,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    execute,
    plan,
)
from flowplan.spec import Dependency

Specs = list[TaskSpec[..., Any]]


def deps(*names: str) -> tuple[Dependency, ...]:
    return tuple(Dependency(name) for name in names)


def run(kind: str, the_plan: Plan, **options: Any) -> Snapshot:
    """Execute ``the_plan`` one way.

    ``direct``: inline, no store, no hooks (the lazy-record path); ``hook``: inline with a
    no-op hook; ``store``: inline with a :class:`MemoryStore`, every record folded from events
    as it happens (the eager reference); ``threads``: the owned thread pool.
    """
    if kind == "threads":
        return execute(the_plan, max_workers=4, **options)
    if kind == "hook":
        options["hooks"] = [CallbackHook(lambda event: None)]
    elif kind == "store":
        options["store"] = MemoryStore()
    else:
        assert kind == "direct"
    return execute(the_plan, executor=InlineExecutor(), **options)


def direct(graph: TaskGraph, snapshot: Snapshot | None = None, **options: Any) -> Snapshot:
    return run("direct", plan(graph, snapshot, run_id="r"), **options)


def general(graph: TaskGraph, snapshot: Snapshot | None = None, **options: Any) -> Snapshot:
    return run("hook", plan(graph, snapshot, run_id="r"), **options)


def eager(graph: TaskGraph, snapshot: Snapshot | None = None, **options: Any) -> Snapshot:
    return run("store", plan(graph, snapshot, run_id="r"), **options)


OTHERS = ["hook", "store", "threads"]


def one() -> int:
    return 1


def inc(a: int) -> int:
    return a + 1


def untimed(record: TaskRecord) -> TaskRecord:
    """``record`` without what differs between two runs: timings, traceback text and the live
    exception object (which ``ErrorInfo.__eq__`` ignores but ``attrs.asdict`` shows)."""
    error = record.error
    if error is not None:
        error = attrs.evolve(error, traceback="", exception=None)
    return attrs.evolve(record, started_at=None, finished_at=None, duration_ms=0.0, error=error)


def normalised(snap: Snapshot) -> Snapshot:
    records = {name: untimed(rec) for name, rec in snap.records.items()}
    return Snapshot(snap.run_id, records, lineage_id=snap.lineage_id)


def assert_same_run(left: Snapshot, right: Snapshot) -> None:
    """Equal field by field (timings aside), in the same record order."""
    assert list(left.records) == list(right.records)
    for name in left.records:
        assert attrs.asdict(untimed(left[name])) == attrs.asdict(untimed(right[name])), name
    assert normalised(left) == normalised(right)


def assert_direct_success(record: TaskRecord, value: object) -> None:
    assert type(record) is TaskRecord
    assert record.status is TaskStatus.SUCCEEDED
    assert record.attempts == 1
    assert record.has_value is True
    assert record.value == value
    assert record.error is None
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.started_at <= record.finished_at
    assert record.duration_ms >= 0
    assert (record.reason, record.root_cause, record.retry_delays) == (None, None, ())
    assert (record.cached, record.released, record.overridden) == (False, False, False)


def statuses(snap: Snapshot) -> dict[str, TaskStatus]:
    return {name: rec.status for name, rec in snap.records.items()}


# -- a graph of plain tasks: bare, tuple/None/list values, upstream and context parameters -----


def plain_graph() -> TaskGraph:
    def combine(upstream: dict[str, Any], ctx: str) -> str:
        return f"{ctx}:{sorted(upstream)}"

    def pair() -> tuple[int, int]:  # a tuple value: never read as a stored tuple
        return (1, 2)

    def nothing() -> None:
        return None

    def b(a: int, pair: tuple[int, int]) -> list[int]:
        return [a, *pair]

    def c(b: list[int], nothing: None) -> dict[str, object]:
        return {"b": b, "n": nothing}

    def e(pair: tuple[int, int], d: str) -> tuple[object, ...]:
        return (pair, d)

    specs: Specs = [
        TaskSpec("a", one),
        TaskSpec("pair", pair),
        TaskSpec("nothing", nothing),
        TaskSpec("b", b, deps=deps("a", "pair")),
        TaskSpec("c", c, deps=deps("b", "nothing")),
        TaskSpec(
            "d",
            combine,
            deps=deps("a", "c"),
            upstream_param="upstream",
            context_param="ctx",
        ),
        TaskSpec("e", e, deps=deps("pair", "d")),
    ]
    return TaskGraph.build(specs)


EXPECTED: dict[str, object] = {
    "a": 1,
    "pair": (1, 2),
    "nothing": None,
    "b": [1, 1, 2],
    "c": {"b": [1, 1, 2], "n": None},
    "d": "ctx:['a', 'c']",
    "e": ((1, 2), "ctx:['a', 'c']"),
}


def test_the_direct_path_keeps_successes_unbuilt_until_read() -> None:
    # Guards the other tests: the direct path is really the one taken (private peek).
    snap = direct(plain_graph(), context="ctx")
    raw: Mapping[str, object] = getattr(snap.records, "_raw")  # noqa: B009
    assert all(type(raw[name]) is tuple for name in EXPECTED)
    snap["b"]
    assert type(raw["b"]) is TaskRecord
    assert all(type(raw[name]) is tuple for name in EXPECTED if name != "b")


@pytest.mark.parametrize("other", OTHERS)
def test_a_direct_snapshot_equals_the_general_and_threaded_ones(other: str) -> None:
    keys = {"a": "key-a", "e": "key-e"}
    graph = plain_graph()
    fast = run("direct", plan(graph, run_id="r", step_keys=keys), context="ctx")
    slow = run(other, plan(graph, run_id="r", step_keys=keys), context="ctx")
    assert_same_run(fast, slow)
    assert fast["a"].step_key == "key-a"
    assert fast["e"].step_key == "key-e"
    assert fast["b"].step_key is None


def test_every_record_of_a_direct_run_is_a_real_succeeded_record() -> None:
    graph = plain_graph()
    the_plan = plan(graph, run_id="r")
    snap = execute(the_plan, executor=InlineExecutor(), context="ctx")
    for name, value in EXPECTED.items():
        assert_direct_success(snap[name], value)
        assert snap.value(name) == value
        assert snap[name] is snap[name]
        assert snap.records[name] is snap[name]
        assert snap.get(name) is snap[name]
    assert snap.value(graph.specs["e"]) == EXPECTED["e"]
    assert snap.get("missing") is None
    assert snap.records.get("missing") is None


def test_a_direct_snapshot_reads_as_a_mapping() -> None:
    graph = plain_graph()
    the_plan = plan(graph, run_id="r")
    snap = execute(the_plan, executor=InlineExecutor(), context="ctx")
    order = list(the_plan.to_run)
    assert sorted(order) == sorted(EXPECTED)
    assert list(snap.records) == order
    assert list(snap) == order
    assert len(snap) == len(snap.records) == len(EXPECTED)
    assert "a" in snap
    assert "a" in snap.records
    assert graph.specs["a"] in snap
    assert "missing" not in snap
    assert "missing" not in snap.records
    items = list(snap.records.items())
    assert [name for name, _ in items] == order
    assert all(rec is snap[name] for name, rec in items)
    assert list(snap.records.values()) == [snap[name] for name in order]
    copy = dict(snap.records)
    assert list(copy) == order
    assert all(type(rec) is TaskRecord and rec is snap[name] for name, rec in copy.items())
    assert {name: rec.value for name, rec in copy.items()} == EXPECTED
    assert snap.by_status(TaskStatus.SUCCEEDED) == tuple(order)
    assert snap.by_status(TaskStatus.FAILED) == ()
    assert snap.is_complete
    assert dict(snap.root_causes()) == {}
    text = repr(snap)
    assert all(repr(name) in text for name in order)


def test_two_direct_snapshots_compare_and_with_record_copies() -> None:
    graph = plain_graph()
    first = direct(graph, context="ctx")
    second = direct(graph, context="ctx")
    assert first == first
    # Timings differ between runs: equal once normalised, and a copy of the records is equal.
    assert normalised(first) == normalised(second)
    assert first == Snapshot(first.run_id, dict(first.records))
    assert first != Snapshot(first.run_id, {})

    fresh = direct(graph, context="ctx")  # nothing read yet
    changed = fresh.with_record(attrs.evolve(fresh["a"], value=99))
    assert changed.value("a") == 99
    assert fresh.value("a") == 1  # the original is untouched
    assert list(changed) == list(fresh)
    assert all(changed[name] is fresh[name] for name in EXPECTED if name != "a")
    assert changed != fresh
    added = fresh.with_record(TaskRecord("extra", TaskStatus.SKIPPED))
    assert list(added) == [*fresh, "extra"]
    assert "extra" not in fresh


def test_a_direct_snapshot_refuses_mutation() -> None:
    snap = direct(plain_graph(), context="ctx")
    record = snap["a"]
    with pytest.raises(TypeError):
        snap.records["a"] = TaskRecord("a", TaskStatus.FAILED)  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.records["new"] = TaskRecord("new", TaskStatus.FAILED)  # type: ignore[index]
    with pytest.raises(TypeError):
        del snap.records["b"]  # type: ignore[attr-defined]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap.records = {}  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.value = 2  # type: ignore[misc]
    assert snap["a"] is record
    assert snap.value("b") == EXPECTED["b"]  # never read before the attempts
    assert len(snap) == len(EXPECTED)
    assert "new" not in snap


# -- resume -----------------------------------------------------------------------------------


def test_resume_from_a_direct_snapshot_reuses_every_task() -> None:
    graph = plain_graph()
    snap = direct(graph, context="ctx")
    again = plan(graph, snap)
    assert again.to_run == ()
    assert set(again.reused) == set(EXPECTED)
    resumed = execute(again, executor=InlineExecutor(), context="ctx")
    assert {name: resumed.value(name) for name in EXPECTED} == EXPECTED
    assert all(resumed[name].status is TaskStatus.SUCCEEDED for name in EXPECTED)


def test_resume_after_a_failure_runs_only_the_failed_task_and_downstream() -> None:
    calls: list[str] = []
    broken = [True]

    def make(name: str, fn: Callable[..., object]) -> Callable[..., object]:
        def body(**kwargs: Any) -> object:
            calls.append(name)
            return fn(**kwargs)

        return body

    def boom(b: int) -> int:
        if broken[0]:
            raise ValueError("broken")
        return b * 10

    def x(a: int) -> tuple[str, int]:
        return ("x", a)

    def c(boom: int, x: tuple[str, int]) -> tuple[object, ...]:
        return (boom, x)

    specs: Specs = [
        TaskSpec("a", make("a", one)),
        TaskSpec("b", make("b", inc), deps=deps("a")),
        TaskSpec("x", make("x", x), deps=deps("a")),  # done before boom
        TaskSpec("boom", make("boom", boom), deps=deps("b")),
        TaskSpec("c", make("c", c), deps=deps("boom", "x")),
    ]
    graph = TaskGraph.build(specs)
    first = direct(graph)
    assert calls == ["a", "b", "x", "boom"]
    assert statuses(first) == {
        "a": TaskStatus.SUCCEEDED,
        "b": TaskStatus.SUCCEEDED,
        "x": TaskStatus.SUCCEEDED,
        "boom": TaskStatus.FAILED,
        "c": TaskStatus.SKIPPED,
    }
    assert first["boom"].error is not None
    assert first["boom"].error.type == "builtins.ValueError"
    assert first["c"].root_cause == "boom"
    assert_direct_success(first["x"], ("x", 1))

    calls.clear()
    broken[0] = False
    again = plan(graph, first)
    assert set(again.to_run) == {"boom", "c"}
    resumed = execute(again, executor=InlineExecutor())
    assert calls == ["boom", "c"]
    assert resumed.value("boom") == 20
    assert resumed.value("c") == (20, ("x", 1))
    assert all(resumed[name].status is TaskStatus.SUCCEEDED for name in ("a", "b", "x", "c"))
    assert resumed["a"] == first["a"]  # reused as they were


# -- mixed runs: plain tasks around gated and retried ones ------------------------------------


def mixed_graph(gate: bool, attempts_to_fail: int = 1) -> TaskGraph:
    left = [attempts_to_fail]

    def flaky(a: int, b: int) -> int:
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("try again")
        return a + b

    def a() -> int:
        return 2

    def b(a: int) -> int:
        return a * 3

    def gated(a: int, b: int) -> list[int]:
        return [a, b]

    def open_gate(a: int, b: int) -> bool:
        return gate

    def after_gate(gated: list[int]) -> tuple[object, ...]:
        return (*gated, "g")

    def last(after_gate: tuple[object, ...]) -> int:
        return len(after_gate)

    def after_retry(retried: int, b: int) -> int:
        return retried - b

    def alone() -> str:
        return "alone"

    def alone_next(alone: str) -> str:
        return alone.upper()

    specs: Specs = [
        TaskSpec("a", a),
        TaskSpec("b", b, deps=deps("a")),
        TaskSpec("gated", gated, deps=deps("a", "b"), when=open_gate),
        TaskSpec("after_gate", after_gate, deps=deps("gated")),
        TaskSpec("last", last, deps=deps("after_gate")),
        TaskSpec(
            "retried",
            flaky,
            deps=deps("a", "b"),
            retry=RetryPolicy(retries=2, backoff_base_ms=0, max_backoff_ms=0),
        ),
        TaskSpec("after_retry", after_retry, deps=deps("retried", "b")),
        TaskSpec("alone", alone),
        TaskSpec("alone_next", alone_next, deps=deps("alone")),
    ]
    return TaskGraph.build(specs)


def test_values_flow_through_gated_and_retried_tasks() -> None:
    snap = direct(mixed_graph(gate=True))
    assert snap.is_complete
    assert {name: snap.value(name) for name in snap} == {
        "a": 2,
        "b": 6,
        "gated": [2, 6],
        "after_gate": (2, 6, "g"),
        "last": 3,
        "retried": 8,
        "after_retry": 2,
        "alone": "alone",
        "alone_next": "ALONE",
    }
    assert snap["retried"].attempts == 2
    assert snap["retried"].retry_delays == (0.0,)
    for name in ("a", "b", "after_gate", "last", "after_retry", "alone", "alone_next"):
        assert_direct_success(snap[name], snap.value(name))


@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("other", OTHERS)
def test_a_mixed_direct_run_equals_the_general_and_threaded_ones(gate: bool, other: str) -> None:
    fast = direct(mixed_graph(gate))
    assert_same_run(fast, run(other, plan(mixed_graph(gate), run_id="r")))


def test_a_false_gate_skips_downstream_while_other_branches_succeed() -> None:
    snap = direct(mixed_graph(gate=False))
    assert snap.is_complete
    assert snap.by_status(TaskStatus.SKIPPED) == ("gated", "after_gate", "last")
    assert snap["gated"].root_cause == "gated"
    assert snap["gated"].attempts == 0
    for name in ("after_gate", "last"):
        assert snap[name].root_cause == "gated"
        assert not snap[name].has_value
    assert dict(snap.root_causes()) == {"gated": ("after_gate", "last")}
    assert snap.value("after_retry") == 2
    assert snap.value("alone_next") == "ALONE"
    for name in ("a", "b", "after_retry", "alone", "alone_next"):
        assert_direct_success(snap[name], snap.value(name))


def fail_fast_graph() -> TaskGraph:
    def boom(b: int) -> int:
        raise ValueError(f"boom after {b}")

    def late(b: int) -> int:
        return b

    def yes(b: int) -> bool:
        return True

    def after(boom: int) -> int:
        return boom

    specs: Specs = [
        TaskSpec("a", one),
        TaskSpec("b", inc, deps=deps("a")),
        TaskSpec("boom", boom, deps=deps("b")),
        TaskSpec("late", late, deps=deps("b")),  # ready with boom, queued after it
        TaskSpec("gated_late", late, deps=deps("b"), when=yes),
        TaskSpec("after", after, deps=deps("boom")),
    ]
    return TaskGraph.build(specs)


def test_fail_fast_cancels_pending_tasks_and_keeps_earlier_successes() -> None:
    snap = direct(fail_fast_graph())
    assert snap.is_complete
    assert statuses(snap) == {
        "a": TaskStatus.SUCCEEDED,
        "b": TaskStatus.SUCCEEDED,
        "boom": TaskStatus.FAILED,
        "late": TaskStatus.CANCELLED,
        "gated_late": TaskStatus.CANCELLED,
        "after": TaskStatus.SKIPPED,
    }
    assert_direct_success(snap["a"], 1)
    assert_direct_success(snap["b"], 2)
    assert snap["boom"].error is not None
    assert snap["boom"].error.message == "boom after 2"
    assert snap["boom"].attempts == 1
    for name in ("late", "gated_late", "after"):
        assert snap[name].root_cause == "boom"
    assert snap.by_status(TaskStatus.SUCCEEDED) == ("a", "b")
    assert_same_run(snap, general(fail_fast_graph()))
    assert_same_run(snap, eager(fail_fast_graph()))


def test_without_fail_fast_the_pending_tasks_run() -> None:
    snap = direct(fail_fast_graph(), fail_fast=False)
    assert snap["boom"].status is TaskStatus.FAILED
    assert_direct_success(snap["late"], 2)
    assert snap["gated_late"].status is TaskStatus.SUCCEEDED
    assert snap["after"].status is TaskStatus.SKIPPED
    assert_same_run(snap, general(fail_fast_graph(), fail_fast=False))
    assert_same_run(snap, eager(fail_fast_graph(), fail_fast=False))


# -- interruption -----------------------------------------------------------------------------


def interrupted_graph() -> TaskGraph:
    def interrupt(b: int) -> int:
        raise KeyboardInterrupt

    def sibling(b: int) -> int:
        return b

    def other(sibling: int) -> int:
        return sibling

    def after(stop: int) -> int:
        return stop

    specs: Specs = [
        TaskSpec("a", one),
        TaskSpec("b", inc, deps=deps("a")),
        TaskSpec("stop", interrupt, deps=deps("b")),
        TaskSpec("sibling", sibling, deps=deps("b")),  # queued after stop
        TaskSpec("other", other, deps=deps("sibling")),
        TaskSpec("after", after, deps=deps("stop")),
    ]
    return TaskGraph.build(specs)


def interrupted(run: Callable[[TaskGraph], Snapshot]) -> Snapshot:
    with pytest.raises(KeyboardInterrupt) as info:
        run(interrupted_graph())
    snap = info.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert isinstance(snap, Snapshot)
    return snap


def test_a_keyboard_interrupt_in_a_body_carries_the_snapshot() -> None:
    snap = interrupted(direct)
    assert snap.is_complete
    assert_direct_success(snap["a"], 1)
    assert_direct_success(snap["b"], 2)
    record = snap["stop"]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "interrupted"
    assert record.attempts == 1
    assert snap["sibling"].status is TaskStatus.CANCELLED
    assert snap["other"].status is TaskStatus.CANCELLED
    assert snap["after"].status is TaskStatus.SKIPPED  # downstream of the failure itself
    for name in ("sibling", "other", "after"):
        assert snap[name].root_cause == "stop"
        assert not snap[name].has_value
    assert_same_run(snap, interrupted(general))
    assert_same_run(snap, interrupted(eager))
    # ... and a resume runs the interrupted task and everything after it, reusing the rest.
    assert set(plan(interrupted_graph(), snap).to_run) == {"stop", "sibling", "other", "after"}


# -- the garbage-collector claim ------------------------------------------------------------


def noop(**deps: object) -> int:
    return 0


def tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_a_large_direct_run_adds_almost_no_tracked_objects_until_read() -> None:
    n = 5_000
    specs: Specs = [TaskSpec("t0", noop)]
    specs += [TaskSpec(f"t{i}", noop, deps=(Dependency(f"t{i - 1}"),)) for i in range(1, n)]
    graph = TaskGraph.build(specs)
    the_plan = plan(graph)
    direct(TaskGraph.build([TaskSpec("warm", noop)]))  # imports and one-off caches
    before = tracked()
    snap = execute(the_plan, executor=InlineExecutor())
    after_run = tracked()
    assert after_run - before < 0.5 * n, (before, after_run)
    records = [snap[f"t{i}"] for i in range(n)]
    after_read = tracked()
    per_task = (after_read - after_run) / n
    assert 0.9 <= per_task <= 1.5, per_task  # one TaskRecord per task, built when read
    assert len(records) == n
    assert all(rec.status is TaskStatus.SUCCEEDED and rec.value == 0 for rec in records)
    assert tracked() - after_read < 0.1 * n  # reading again builds nothing new
    assert all(snap[f"t{i}"] is records[i] for i in range(n))


def test_status_queries_answer_without_building_records() -> None:
    snap = direct(fail_fast_graph())
    raw: Mapping[str, object] = getattr(snap.records, "_raw")  # noqa: B009
    assert snap.by_status(TaskStatus.SUCCEEDED) == ("a", "b")
    assert snap.by_status(TaskStatus.FAILED) == ("boom",)
    assert snap.by_status(TaskStatus.CANCELLED) == ("late", "gated_late")
    assert snap.by_status(TaskStatus.SKIPPED) == ("after",)
    assert snap.is_complete
    assert type(raw["a"]) is tuple  # still unbuilt: the answers came from the tuples
    assert type(raw["b"]) is tuple
    # and they agree with the same questions asked of an eagerly built snapshot
    reference = eager(fail_fast_graph())
    for status in TaskStatus:
        assert snap.by_status(status) == reference.by_status(status)
