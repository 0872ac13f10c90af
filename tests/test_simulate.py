"""simulate(): a plan's control flow with scripted outcomes on a fake clock, and its laws."""

from __future__ import annotations

import collections
import doctest
import sys
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowplan
from flowplan import (
    Dependency,
    Fail,
    FakeClock,
    InlineExecutor,
    InvalidOptionError,
    Registry,
    RetryBudget,
    RetryPolicy,
    TaskGraph,
    TaskRetrying,
    TaskSpec,
    TaskStarted,
    TaskStatus,
    TaskTimedOut,
    Timeout,
    UnknownTaskError,
    Value,
    execute,
    plan,
    simulate,
    task,
)


def _never(**_: Any) -> Any:
    raise AssertionError("a simulation never runs task bodies")


def test_module_doctests() -> None:
    failures, tests = doctest.testmod(sys.modules["flowplan.simulate"])
    assert tests > 0
    assert failures == 0


def test_scripted_failures_retry_on_the_fake_clock() -> None:
    reg = Registry()
    fetch = task(registry=reg, name="fetch", retry=3, retry_backoff_base_ms=1000)(_never)
    load = task(registry=reg, name="load", depends_on=[fetch])(_never)
    sim = simulate(
        plan(TaskGraph.build([fetch, load])),
        {
            "fetch": [Fail(ConnectionError("down"), duration_s=1), Fail(ConnectionError), Value(7)],
            load: Value("ok", duration_s=2),
        },
        clock=FakeClock(100),
    )
    snap = sim.snapshot
    assert snap[fetch].status is TaskStatus.SUCCEEDED
    assert snap[fetch].attempts == 3
    assert snap[fetch].retry_delays == (1.0, 2.0)
    assert snap.value(fetch) == 7
    assert snap.value(load) == "ok"
    starts = [(e.task, e.time) for e in sim.events if isinstance(e, TaskStarted)]
    # fetch: 100 (+1 body, +1 backoff) → 102 (+0, +2 backoff) → 104; load starts at 104
    assert starts == [("fetch", 100), ("fetch", 102), ("fetch", 104), ("load", 104)]
    assert snap[load].finished_at == 106
    assert sim.events[-1].time == 106
    assert isinstance(sim.events[-1], flowplan.RunFinished)
    assert sim.events[-1].duration_ms == 6000


def test_failures_exhaust_retries_with_the_real_reason() -> None:
    reg = Registry()
    fetch = task(registry=reg, name="fetch", retry=1, retry_backoff_base_ms=0)(_never)
    load = task(registry=reg, name="load", depends_on=[fetch])(_never)
    snap = simulate(plan(TaskGraph.build([fetch, load])), {fetch: Fail(KeyError("k"))}).snapshot
    assert snap[fetch].status is TaskStatus.FAILED
    assert snap[fetch].reason == "raised KeyError on attempt 2/2"
    assert snap[load].status is TaskStatus.SKIPPED
    assert snap[load].root_cause == "fetch"


def test_timeouts_advance_the_clock_by_the_timeout() -> None:
    reg = Registry()
    slow = task(registry=reg, name="slow", retry=1, retry_backoff_base_ms=500, timeout_s=5)(_never)
    sim = simulate(plan(TaskGraph.build([slow])), {slow: [Timeout(), Value(1)]})
    assert [type(e).__name__ for e in sim.events if isinstance(e, TaskTimedOut)] == ["TaskTimedOut"]
    assert sim.snapshot[slow].attempts == 2
    assert sim.snapshot[slow].started_at == 0
    assert sim.snapshot[slow].finished_at == 5.5
    retry = next(e for e in sim.events if isinstance(e, TaskRetrying))
    assert retry.error.kind == "timeout"


def test_timeout_needs_a_task_timeout() -> None:
    reg = Registry()
    t = task(registry=reg, name="t")(_never)
    with pytest.raises(InvalidOptionError, match="has no timeout_s"):
        simulate(plan(TaskGraph.build([t])), {t: Timeout()})


def test_unscripted_tasks_return_none_and_unknown_keys_are_errors() -> None:
    reg = Registry()
    load = task(registry=reg, name="load")(_never)
    graph = TaskGraph.build([load])
    snap = simulate(plan(graph)).snapshot
    assert snap[load].status is TaskStatus.SUCCEEDED
    assert snap.value(load) is None
    with pytest.raises(UnknownTaskError, match="did you mean 'load'") as err:
        simulate(plan(graph), {"laod": Value(1)})
    assert err.value.suggestion == "load"
    with pytest.raises(InvalidOptionError, match="must be Value"):
        simulate(plan(graph), {"load": 3})  # type: ignore[dict-item]
    with pytest.raises(InvalidOptionError, match="sequence is empty"):
        simulate(plan(graph), {"load": []})
    with pytest.raises(InvalidOptionError, match="exception or an exception class"):
        Fail("boom")


def test_gates_are_called_on_scripted_values() -> None:
    reg = Registry()
    a = task(registry=reg, name="a")(_never)
    b = task(registry=reg, name="b", depends_on=[a], when=lambda a: a > 1)(_never)
    c = task(registry=reg, name="c", depends_on=[a], validate=lambda a: 1 / 0)(_never)
    graph = TaskGraph.build([a, b, c])
    snap = simulate(plan(graph), {a: Value(1)}, fail_fast=False).snapshot
    assert snap[b].status is TaskStatus.SKIPPED
    assert snap[c].status is TaskStatus.FAILED
    assert snap[c].reason == "validate() raised ZeroDivisionError: division by zero"
    assert simulate(plan(graph), {a: Value(2)}, fail_fast=False).snapshot[b].attempts == 1


def test_retry_until_is_applied_to_scripted_values() -> None:
    reg = Registry()
    poll = task(registry=reg, name="poll", retry=3, retry_backoff_base_ms=0, retry_until=bool)(
        _never
    )
    snap = simulate(plan(TaskGraph.build([poll])), {poll: [Value(0), Value(0), Value(5)]}).snapshot
    assert snap[poll].attempts == 3
    assert snap.value(poll) == 5


def test_fail_fast_and_detached_behave_as_in_real_runs() -> None:
    reg = Registry()
    a = task(registry=reg, name="a")(_never)
    b = task(registry=reg, name="b")(_never)
    notify = task(registry=reg, name="notify", detached=True)(_never)
    graph = TaskGraph.build([a, b, notify])
    sim = simulate(plan(graph), {a: Fail(ValueError("x"))})
    snap = sim.snapshot
    assert snap[a].status is TaskStatus.FAILED
    assert snap[b].status is TaskStatus.CANCELLED
    assert snap[b].root_cause == "a"
    assert snap[notify].status is TaskStatus.SUCCEEDED  # detached tasks still run
    finished = sim.events[-1]
    assert isinstance(finished, flowplan.RunFinished)
    assert finished.status == "failed"
    assert simulate(plan(graph), {a: Fail(ValueError)}, fail_fast=False).snapshot[b].attempts == 1
    ok = simulate(plan(graph), {notify: Fail(ValueError)}).events[-1]
    assert isinstance(ok, flowplan.RunFinished)
    assert ok.status == "succeeded"  # a detached failure never fails the run


def test_resume_simulates_only_what_is_left() -> None:
    reg = Registry()
    a = task(registry=reg, name="a")(_never)
    b = task(registry=reg, name="b", depends_on=[a])(_never)
    graph = TaskGraph.build([a, b])
    first = simulate(plan(graph), {a: Value(1), b: Fail(OSError)}).snapshot
    assert first[b].status is TaskStatus.FAILED
    second = simulate(plan(graph, first), {b: Value(2)})
    assert second.snapshot.value(b) == 2
    assert second.snapshot.value(a) == 1
    started = [e.task for e in second.events if isinstance(e, TaskStarted)]
    assert started == ["b"]


def test_same_script_and_seed_give_identical_events() -> None:
    reg = Registry()
    flaky = task(registry=reg, name="flaky", retry=4, retry_backoff_base_ms=100, retry_jitter=0.9)(
        _never
    )
    graph = TaskGraph.build([flaky])
    the_plan = plan(graph)
    script = {flaky: [Fail(OSError("x")), Fail(OSError("x")), Value(1, duration_s=0.25)]}
    one = simulate(the_plan, script, seed=7)
    two = simulate(the_plan, script, seed=7)
    other = simulate(the_plan, script, seed=8)
    assert one.events == two.events
    assert one.snapshot.records == two.snapshot.records
    assert one.snapshot[flaky].retry_delays != other.snapshot[flaky].retry_delays
    # with no seed, jitter is seeded by the run id, as in a real run
    default = simulate(the_plan, script)
    expected = tuple(flaky.retry.delay_s(n, task="flaky", seed=the_plan.run_id) for n in (1, 2))
    assert default.snapshot[flaky].retry_delays == expected


def test_retry_policies_on_the_fake_clock() -> None:
    reg = Registry()
    a = task(
        registry=reg,
        name="a",
        retry=10,
        retry_backoff_base_ms=1000,
        retry_max_elapsed_s=10,
    )(_never)
    snap = simulate(plan(TaskGraph.build([a])), {a: Fail(OSError, duration_s=1)}).snapshot
    # attempts start at 0, 2, 5, 10 (1s body + 1s, 2s, 4s backoff); the next would be at 19
    assert snap[a].attempts == 4
    assert snap[a].retry_delays == (1.0, 2.0, 4.0)
    reason = str(snap[a].reason)
    assert "retry_max_elapsed_s=10 would be exceeded (11s spent, next delay 8s)" in reason
    many = [
        task(registry=reg, name=f"t{i}", retry=5, retry_backoff_base_ms=0)(_never)
        for i in range(50)
    ]
    sim = simulate(
        plan(TaskGraph.build(many)),
        dict.fromkeys(many, Fail(OSError)),
        fail_fast=False,
        retry_budget=RetryBudget(max_retries=10),
    )
    assert sum(1 for e in sim.events if isinstance(e, TaskRetrying)) == 10
    starved = [r for r in sim.snapshot.records.values() if "budget" in str(r.reason)]
    assert len(starved) == 48


def test_clock_must_be_fake() -> None:
    reg = Registry()
    t = task(registry=reg, name="t")(_never)
    with pytest.raises(InvalidOptionError, match="FakeClock"):
        simulate(plan(TaskGraph.build([t])), clock=lambda: 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot go back"):
        FakeClock().advance(-1)


# -- property: simulate(plan, script) == execute(plan) with bodies following the script ---------
@attrs.frozen
class Case:
    deps: tuple[tuple[int, ...], ...]
    detached: frozenset[int]
    retries: tuple[int, ...]
    gated: frozenset[int]
    until: frozenset[int]
    script: tuple[tuple[int | None, ...], ...]  # per task, per attempt: a value, or None = raise
    fail_fast: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 8))
    deps = tuple(
        tuple(sorted(draw(st.sets(st.integers(0, j - 1), max_size=2)))) if j else ()
        for j in range(n)
    )
    indices = st.frozensets(st.integers(0, n - 1), max_size=max(1, n // 3))
    detached = set(draw(indices))
    for j in range(n):
        if any(d in detached for d in deps[j]):
            detached.add(j)
    outcome = st.one_of(st.none(), st.integers(0, 5))
    return Case(
        deps=deps,
        detached=frozenset(detached),
        retries=tuple(draw(st.integers(0, 2)) for _ in range(n)),
        gated=draw(indices),
        until=draw(indices),
        script=tuple(tuple(draw(st.lists(outcome, min_size=1, max_size=3))) for _ in range(n)),
        fail_fast=draw(st.booleans()),
    )


def _name(i: int) -> str:
    return f"t{i}"


def _step(item: int | None) -> Value | Fail:
    return Fail(ValueError("scripted")) if item is None else Value(item)


def _graph(case: Case, calls: collections.Counter[str]) -> TaskGraph:
    def body_for(i: int) -> Any:
        def body(**_: Any) -> int:
            calls[_name(i)] += 1
            steps = case.script[i]
            item = steps[min(calls[_name(i)], len(steps)) - 1]
            if item is None:
                raise ValueError("scripted")
            return item

        return body

    specs = [
        TaskSpec(
            name=_name(i),
            fn=body_for(i),
            deps=tuple(Dependency(_name(d)) for d in case.deps[i]),
            retry=RetryPolicy(retries=case.retries[i], backoff_base_ms=0),
            detached=i in case.detached,
            when=(lambda **d: all(v % 2 == 0 for v in d.values())) if i in case.gated else None,
            retry_until=(lambda v: v != 3) if i in case.until else None,
        )
        for i in range(len(case.deps))
    ]
    return TaskGraph.build(specs)


def _view(snap: flowplan.Snapshot) -> dict[str, tuple[Any, ...]]:
    return {
        name: (
            r.status,
            r.attempts,
            r.has_value,
            r.value,
            r.reason,
            r.root_cause,
            r.retry_delays,
            r.error.type if r.error else None,
        )
        for name, r in snap.records.items()
    }


def _shape(events: Any) -> list[tuple[str, Any, Any]]:
    return [
        (type(e).__name__, getattr(e, "task", None), getattr(e, "attempt", None)) for e in events
    ]


@settings(max_examples=80, deadline=None)
@given(cases())
def test_simulation_matches_a_real_inline_run(case: Case) -> None:
    calls: collections.Counter[str] = collections.Counter()
    graph = _graph(case, calls)
    the_plan = plan(graph, run_id="property")
    recorder = flowplan.RecordingHook()
    real = execute(the_plan, executor=InlineExecutor(), fail_fast=case.fail_fast, hooks=[recorder])
    ran = dict(calls)
    calls.clear()
    script = {_name(i): [_step(item) for item in steps] for i, steps in enumerate(case.script)}
    sim = simulate(the_plan, script, fail_fast=case.fail_fast)
    assert not calls  # no body ran
    assert _view(sim.snapshot) == _view(real)
    assert _shape(sim.events) == _shape(recorder.events)  # the same events, in the same order
    assert ran == {n: r.attempts for n, r in real.records.items() if r.attempts}
