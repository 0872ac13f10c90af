"""Tests for the sync driver (``execute``) with the inline executor and with threads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import pytest

from flowplan import (
    CallbackHook,
    Event,
    InlineExecutor,
    Plan,
    RecordingHook,
    Registry,
    RetryPolicy,
    RetryUntilError,
    RunFinished,
    RunStarted,
    SerializationError,
    Snapshot,
    StateStore,
    StoreError,
    TaskEvent,
    TaskFailed,
    TaskFailedError,
    TaskGraph,
    TaskRecord,
    TaskReleased,
    TaskRetrying,
    TaskSpec,
    TaskStarted,
    TaskStatus,
    TaskSucceeded,
    execute,
    plan,
    task,
)

WAIT = 5.0  # upper bound for waits on events that a correct scheduler sets at once


@pytest.fixture(params=["inline", "threads"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    if request.param == "inline":
        yield InlineExecutor()
        return
    pool = ThreadPoolExecutor(4, thread_name_prefix="test-pool")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)


def threaded(executor: Executor) -> bool:
    return not isinstance(executor, InlineExecutor)


def run(
    *specs: TaskSpec[..., Any],
    executor: Executor,
    snapshot: Snapshot | None = None,
    **options: Any,
) -> tuple[Snapshot, list[Event]]:
    """Build, plan and execute ``specs``; return the snapshot and every event."""
    recorder = RecordingHook()
    hooks = [recorder, *options.pop("hooks", ())]
    the_plan = plan(TaskGraph.build(specs), snapshot, run_id=options.pop("run_id", None))
    snap = execute(the_plan, executor=executor, hooks=hooks, **options)
    assert snap.is_complete
    return snap, recorder.events


def statuses(snap: Snapshot) -> dict[str, str]:
    return {name: rec.status.value for name, rec in snap.records.items()}


def index(events: list[Event], kind: type[TaskEvent], name: str) -> int:
    for i, event in enumerate(events):
        if isinstance(event, kind) and event.task == name:
            return i
    raise AssertionError(f"no {kind.__name__} for {name!r}")


# -- values ---------------------------------------------------------------------------------


def test_values_flow_as_keyword_arguments(registry: Registry, executor: Executor) -> None:
    @task
    def fetch() -> dict[str, list[int]]:
        return {"items": [1, 2, 3]}

    @task(depends_on=[fetch])
    def total(fetch: dict[str, list[int]]) -> int:
        return sum(fetch["items"])

    @task(depends_on=[fetch, total])
    def mean(fetch: dict[str, list[int]], total: int) -> float:
        return total / len(fetch["items"])

    snap, events = run(fetch, total, mean, executor=executor)
    assert snap.value(total) == 6
    assert snap.value(mean) == 2.0
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    assert events[-1].status == "succeeded"
    assert snap[mean].attempts == 1
    assert snap[mean].started_at is not None
    assert snap[mean].finished_at is not None


def test_var_keyword_receives_every_dependency(registry: Registry, executor: Executor) -> None:
    @task
    def a() -> int:
        return 1

    @task
    def b() -> int:
        return 2

    @task(depends_on=[a, b])
    def everything(**deps: int) -> dict[str, int]:
        return deps

    snap, _ = run(a, b, everything, executor=executor)
    assert snap.value(everything) == {"a": 1, "b": 2}


def test_upstream_and_context_parameters(executor: Executor) -> None:
    from flowplan import Dependency

    def combine(upstream: dict[str, int], ctx: dict[str, str]) -> str:
        return f"{ctx['who']}:{sorted(upstream.items())}"

    a = TaskSpec("a", lambda: 1)
    b = TaskSpec("b", lambda: 2)
    c = TaskSpec(
        "c",
        combine,
        deps=(Dependency("a"), Dependency("b")),
        upstream_param="upstream",
        context_param="ctx",
    )
    snap, _ = run(a, b, c, executor=executor, context={"who": "me"})
    assert snap.value("c") == "me:[('a', 1), ('b', 2)]"


def test_nothing_to_run_returns_the_reused_records(registry: Registry, executor: Executor) -> None:
    @task
    def a() -> int:
        return 1

    graph = TaskGraph.build([a])
    first = execute(plan(graph), executor=executor)
    recorder = RecordingHook()
    again = execute(plan(graph, first), executor=executor, hooks=[recorder])
    assert again[a] == first[a]
    assert [type(e).__name__ for e in recorder.events] == [
        "RunStarted",
        "TaskReused",
        "RunFinished",
    ]


# -- gates ----------------------------------------------------------------------------------


def test_when_falsy_skips_and_spreads_with_the_root_cause(
    registry: Registry, executor: Executor
) -> None:
    seen: list[dict[str, Any]] = []

    @task
    def fetch() -> dict[str, bool]:
        return {"needs_processing": False}

    def gate(**deps: Any) -> bool:
        seen.append(deps)
        return bool(deps["fetch"]["needs_processing"])

    @task(depends_on=[fetch], when=gate)
    def process(fetch: dict[str, bool]) -> str:
        raise AssertionError("must not run")

    @task(depends_on=[process])
    def store(process: str) -> None:
        raise AssertionError("must not run")

    @task(depends_on=[fetch])
    def independent(fetch: dict[str, bool]) -> str:
        return "ran"

    snap, _ = run(fetch, process, store, independent, executor=executor)
    assert seen == [{"fetch": {"needs_processing": False}}]
    assert snap[process].status is TaskStatus.SKIPPED
    assert snap[process].root_cause == "process"
    assert snap[process].attempts == 0
    assert snap[process].reason == "when() returned a falsy value"
    assert snap[store].status is TaskStatus.SKIPPED
    assert snap[store].root_cause == "process"
    assert snap[store].reason == "upstream 'process' skipped"
    assert snap.value(independent) == "ran"
    assert snap.root_causes() == {"process": ("store",)}


def test_when_truthy_runs(registry: Registry, executor: Executor) -> None:
    @task
    def fetch() -> int:
        return 3

    @task(depends_on=[fetch], when=lambda fetch: fetch > 2)
    def process(fetch: int) -> int:
        return fetch * 2

    snap, _ = run(fetch, process, executor=executor)
    assert snap.value(process) == 6


def test_validate_raising_fails_without_running_or_retrying(
    registry: Registry, executor: Executor
) -> None:
    calls: list[str] = []

    @task
    def fetch() -> dict[str, list[int]]:
        return {"items": []}

    def must_have_items(fetch: dict[str, list[int]]) -> None:
        calls.append("validate")
        if not fetch.get("items"):
            raise ValueError("fetch returned empty payload")

    @task(depends_on=[fetch], validate=must_have_items, retry=3, retry_backoff_base_ms=0)
    def process(fetch: dict[str, list[int]]) -> int:
        calls.append("body")
        return 1

    @task(depends_on=[process])
    def after(process: int) -> int:
        return process

    snap, events = run(fetch, process, after, executor=executor, fail_fast=False)
    record = snap[process]
    assert calls == ["validate"]
    assert record.status is TaskStatus.FAILED
    assert record.attempts == 0
    assert record.error is not None
    assert record.error.kind == "validate"
    assert record.error.type == "builtins.ValueError"
    assert record.error.message == "fetch returned empty payload"
    assert "Traceback" in record.error.traceback
    assert record.reason == "validate() raised ValueError: fetch returned empty payload"
    assert not any(
        isinstance(e, TaskStarted | TaskRetrying) and e.task == "process" for e in events
    )
    assert snap[after].status is TaskStatus.SKIPPED
    assert snap[after].root_cause == "process"


def test_when_raising_fails_the_task(registry: Registry, executor: Executor) -> None:
    @task(when=lambda: 1 / 0)
    def gated() -> int:
        return 1

    snap, _ = run(gated, executor=executor)
    assert snap[gated].status is TaskStatus.FAILED
    error = snap[gated].error
    assert error is not None
    assert error.kind == "when"


def test_retry_until_retries_until_accepted(registry: Registry, executor: Executor) -> None:
    values = iter([{"valid": False, "n": 1}, {"valid": False, "n": 2}, {"valid": True, "n": 3}])

    @task(retry=4, retry_until=lambda r: r["valid"], retry_backoff_base_ms=0)
    def generate() -> dict[str, Any]:
        return next(values)

    snap, events = run(generate, executor=executor)
    assert snap.value(generate) == {"valid": True, "n": 3}
    assert snap[generate].attempts == 3
    retries = [e for e in events if isinstance(e, TaskRetrying)]
    assert [e.attempt for e in retries] == [1, 2]
    assert all(e.error.kind == "retry_until" for e in retries)


def test_retry_until_exhausted_fails_keeping_the_last_value(
    registry: Registry, executor: Executor
) -> None:
    counter = iter(range(10))

    @task(retry=2, retry_until=lambda r: False, retry_backoff_base_ms=0)
    def generate() -> int:
        return next(counter)

    snap, _ = run(generate, executor=executor)
    record = snap[generate]
    assert record.status is TaskStatus.FAILED
    assert record.attempts == 3
    assert record.has_value
    assert record.value == 2
    assert record.error is not None
    assert record.error.kind == "retry_until"
    assert record.error.type.endswith("RetryUntilError")
    assert isinstance(record.error.exception, RetryUntilError)
    assert record.reason == "retry_until() stayed falsy for all 3 attempt(s)"
    with pytest.raises(TaskFailedError, match="status=failed"):
        snap.value(generate)


def test_retry_until_raising_fails_at_once(registry: Registry, executor: Executor) -> None:
    calls = []

    def broken(value: int) -> bool:
        raise KeyError("valid")

    @task(retry=3, retry_until=broken, retry_backoff_base_ms=0)
    def generate() -> int:
        calls.append(1)
        return 5

    snap, _ = run(generate, executor=executor)
    record = snap[generate]
    assert calls == [1]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert (record.error.kind, record.error.type) == ("retry_until", "builtins.KeyError")
    assert (record.value, record.has_value) == (5, True)


def test_evaluation_order_is_deps_when_validate_attempts(
    registry: Registry, executor: Executor
) -> None:
    order: list[str] = []

    @task
    def dep() -> int:
        order.append("dep")
        return 1

    def when(dep: int) -> bool:
        order.append("when")
        return True

    def validate(dep: int) -> None:
        order.append("validate")

    def until(value: int) -> bool:
        order.append(f"retry_until:{value}")
        return value >= 2

    attempts = iter([1, 2])

    @task(
        depends_on=[dep],
        when=when,
        validate=validate,
        retry_until=until,
        retry=1,
        retry_backoff_base_ms=0,
    )
    def body(dep: int) -> int:
        order.append("body")
        return next(attempts)

    run(dep, body, executor=executor)
    assert order == ["dep", "when", "validate", "body", "retry_until:1", "body", "retry_until:2"]


# -- retries --------------------------------------------------------------------------------


def test_retries_record_exponential_capped_delays(registry: Registry, executor: Executor) -> None:
    failures = iter([True, True, True, False])

    @task(retry=4, retry_backoff_base_ms=1, retry_max_backoff_ms=3)
    def flaky() -> str:
        if next(failures):
            raise ConnectionError("try again")
        return "ok"

    snap, events = run(flaky, executor=executor)
    record = snap[flaky]
    assert snap.value(flaky) == "ok"
    assert record.attempts == 4
    assert record.retry_delays == (0.001, 0.002, 0.003)
    retrying = [e for e in events if isinstance(e, TaskRetrying)]
    assert [e.delay_s for e in retrying] == [0.001, 0.002, 0.003]
    assert all(e.error.type == "builtins.ConnectionError" for e in retrying)
    started = [e.attempt for e in events if isinstance(e, TaskStarted)]
    assert started == [1, 2, 3, 4]


def test_exhausted_retries_fail_with_the_last_error(registry: Registry, executor: Executor) -> None:
    @task(retry=2, retry_backoff_base_ms=0)
    def always() -> None:
        raise ValueError("nope")

    snap, _ = run(always, executor=executor)
    record = snap[always]
    assert record.status is TaskStatus.FAILED
    assert record.attempts == 3
    assert record.error is not None
    assert (record.error.kind, record.error.message) == ("error", "nope")
    assert record.reason == "raised ValueError on attempt 3/3"
    assert record.root_cause == "always"


def test_jitter_is_deterministic_per_run_task_and_attempt(
    registry: Registry, executor: Executor
) -> None:
    def make() -> TaskSpec[..., Any]:
        outcomes = iter([True, True, False])

        def flaky() -> int:
            if next(outcomes):
                raise OSError("again")
            return 1

        policy = RetryPolicy(retries=2, backoff_base_ms=2, max_backoff_ms=10, jitter=0.5)
        return TaskSpec("flaky", flaky, retry=policy)

    one, _ = run(make(), executor=executor, run_id="run-a")
    two, _ = run(make(), executor=executor, run_id="run-a")
    other, _ = run(make(), executor=executor, run_id="run-b")
    delays = one["flaky"].retry_delays
    assert len(delays) == 2
    assert delays == two["flaky"].retry_delays
    assert delays != other["flaky"].retry_delays
    assert 0.001 <= delays[0] <= 0.002  # up to half of each delay is jittered away
    assert 0.002 <= delays[1] <= 0.004


# -- fail-fast ------------------------------------------------------------------------------


def test_fail_fast_cancels_never_started_tasks_and_keeps_finished_ones(
    registry: Registry, executor: Executor
) -> None:
    bad_failed = threading.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFailed) and event.task == "bad":
            bad_failed.set()

    @task
    def slow() -> str:
        if threaded(executor):  # keep running until the failure is recorded
            assert bad_failed.wait(WAIT)
        return "slow done"

    @task
    def bad() -> None:
        raise RuntimeError("boom")

    @task(depends_on=[slow])
    def after_slow(slow: str) -> str:
        raise AssertionError("must not start after a fail-fast stop")

    @task(depends_on=[bad])
    def after_bad(bad: None) -> None:
        raise AssertionError("must not run")

    @task(depends_on=[slow], detached=True)
    def side(slow: str) -> str:
        return f"side saw {slow}"

    @task(depends_on=[after_slow], detached=True)
    def side_of_cancelled(after_slow: str) -> None:
        raise AssertionError("must not run")

    snap, events = run(
        slow,
        bad,
        after_slow,
        after_bad,
        side,
        side_of_cancelled,
        executor=executor,
        hooks=[CallbackHook(on_event)],
    )
    assert statuses(snap) == {
        "slow": "succeeded",
        "bad": "failed",
        "after_slow": "cancelled",
        "after_bad": "skipped",
        "side": "succeeded",
        "side_of_cancelled": "cancelled",
    }
    assert snap.value(slow) == "slow done"
    assert snap.value(side) == "side saw slow done"
    assert snap[after_slow].root_cause == "bad"
    assert snap[after_bad].root_cause == "bad"
    assert snap[side_of_cancelled].root_cause == "bad"
    assert snap[bad].root_cause == "bad"
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "failed"
    assert dict(finished.counts) == {"succeeded": 2, "failed": 1, "cancelled": 2, "skipped": 1}


def test_fail_fast_cancels_ready_siblings_that_did_not_start(registry: Registry) -> None:
    @task
    def bad() -> None:
        raise RuntimeError("boom")

    @task
    def sibling() -> str:
        raise AssertionError("must not start after a fail-fast stop")

    snap, events = run(bad, sibling, executor=InlineExecutor())
    assert snap[sibling].status is TaskStatus.CANCELLED
    assert snap[sibling].root_cause == "bad"
    assert snap[sibling].reason == "fail-fast: 'bad' failed"
    assert not any(isinstance(e, TaskStarted) and e.task == "sibling" for e in events)


def test_without_fail_fast_independent_branches_continue(
    registry: Registry, executor: Executor
) -> None:
    @task
    def bad() -> None:
        raise RuntimeError("boom")

    @task(depends_on=[bad])
    def after_bad(bad: None) -> None:
        pass

    @task(depends_on=[after_bad])
    def after_after(after_bad: None) -> None:
        pass

    @task
    def good() -> int:
        return 1

    @task(depends_on=[good])
    def good2(good: int) -> int:
        return good + 1

    snap, events = run(bad, after_bad, after_after, good, good2, executor=executor, fail_fast=False)
    assert statuses(snap) == {
        "bad": "failed",
        "after_bad": "skipped",
        "after_after": "skipped",
        "good": "succeeded",
        "good2": "succeeded",
    }
    assert snap[after_after].root_cause == "bad"
    assert snap[after_after].reason == "upstream 'after_bad' was skipped"
    assert snap.value(good2) == 2
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "failed"


# -- concurrency ----------------------------------------------------------------------------


def test_a_ready_task_is_not_delayed_by_an_unrelated_slow_task(registry: Registry) -> None:
    downstream_ran = threading.Event()

    @task
    def slow() -> bool:
        # Finishes only once a task *downstream of another root* has run: with layers
        # (wait for every root before the next layer) this would wait out the timeout.
        return downstream_ran.wait(WAIT)

    @task
    def fast() -> int:
        return 1

    @task(depends_on=[fast])
    def after_fast(fast: int) -> int:
        downstream_ran.set()
        return fast + 1

    with ThreadPoolExecutor(2) as pool:
        snap, _ = run(slow, fast, after_fast, executor=pool)
    assert snap.value(slow) is True
    assert snap.value(after_fast) == 2


def test_max_workers_is_respected(registry: Registry) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    barrier = threading.Barrier(2, timeout=WAIT)

    def body() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        barrier.wait()  # proves two tasks do run at the same time
        time.sleep(0.01)
        with lock:
            running -= 1

    specs = [TaskSpec(f"t{i}", body) for i in range(6)]
    snap = execute(plan(TaskGraph.build(specs)), max_workers=2)
    assert all(rec.status is TaskStatus.SUCCEEDED for rec in snap.records.values())
    assert peak == 2


def test_a_supplied_executor_is_not_shut_down(registry: Registry) -> None:
    @task
    def one() -> int:
        return 1

    with ThreadPoolExecutor(1) as pool:
        execute(plan(TaskGraph.build([one])), executor=pool)
        assert pool.submit(lambda: 2).result() == 2


def test_async_tasks_are_awaited(registry: Registry, executor: Executor) -> None:
    import asyncio

    @task
    async def fetch() -> int:
        await asyncio.sleep(0)
        return 20

    @task(depends_on=[fetch])
    async def double(fetch: int) -> int:
        await asyncio.sleep(0)
        return fetch * 2

    @task(depends_on=[double])
    def plus_two(double: int) -> int:
        return double + 2

    snap, _ = run(fetch, double, plus_two, executor=executor)
    assert snap.value(fetch) == 20
    assert snap.value(double) == 40
    assert snap.value(plus_two) == 42


def test_async_task_errors_are_recorded(registry: Registry, executor: Executor) -> None:
    @task(retry=1, retry_backoff_base_ms=0)
    async def broken() -> int:
        raise ValueError("async boom")

    snap, _ = run(broken, executor=executor)
    record = snap[broken]
    assert record.status is TaskStatus.FAILED
    assert record.attempts == 2
    assert record.error is not None
    assert record.error.message == "async boom"


# -- detached tasks -------------------------------------------------------------------------


def test_detached_tasks_run_after_every_main_task(registry: Registry, executor: Executor) -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a], detached=True)
    def notify(a: int) -> str:
        return f"notified {a}"

    @task(depends_on=[notify], detached=True)
    def audit(notify: str) -> str:
        return f"audited {notify}"

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a + 1

    @task(depends_on=[b])
    def c(b: int) -> int:
        return b + 1

    snap, events = run(a, notify, audit, b, c, executor=executor)
    assert snap.value(audit) == "audited notified 1"
    first_detached = index(events, TaskStarted, "notify")
    for main in ("a", "b", "c"):
        assert index(events, TaskSucceeded, main) < first_detached
    assert index(events, TaskSucceeded, "notify") < index(events, TaskStarted, "audit")


def test_detached_failures_do_not_fail_the_run(registry: Registry, executor: Executor) -> None:
    @task
    def main() -> int:
        return 1

    @task(depends_on=[main], detached=True)
    def side(main: int) -> None:
        raise OSError("smtp down")

    @task(depends_on=[side], detached=True)
    def after_side(side: None) -> None:
        pass

    snap, events = run(main, side, after_side, executor=executor)
    assert statuses(snap) == {"main": "succeeded", "side": "failed", "after_side": "skipped"}
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "succeeded"


# -- retain_result=False --------------------------------------------------------------------


def test_released_values_go_only_after_every_consumer_succeeded(
    registry: Registry, executor: Executor
) -> None:
    flaky_outcomes = iter([True, False])

    @task(retain_result=False)
    def big() -> list[int]:
        return [1, 2, 3]

    @task(depends_on=[big], retry=1, retry_backoff_base_ms=0)
    def flaky(big: list[int]) -> int:
        if next(flaky_outcomes):
            raise ConnectionError("retry me")
        return sum(big)

    @task(depends_on=[big])
    def steady(big: list[int]) -> int:
        return len(big)

    snap, events = run(big, flaky, steady, executor=executor)
    assert snap.value(flaky) == 6
    assert snap.value(steady) == 3
    record = snap[big]
    assert record.status is TaskStatus.SUCCEEDED
    assert record.released
    assert not record.has_value
    assert record.value is None
    with pytest.raises(TaskFailedError, match="released because retain_result=False"):
        snap.value(big)
    released_at = index(events, TaskReleased, "big")
    assert released_at > index(events, TaskSucceeded, "flaky")
    assert released_at > index(events, TaskSucceeded, "steady")
    assert released_at > index(events, TaskRetrying, "flaky")


def test_released_values_are_kept_when_a_consumer_fails(
    registry: Registry, executor: Executor
) -> None:
    broken = {"yes": True}

    @task(retain_result=False)
    def big() -> list[int]:
        return [1, 2, 3]

    @task(depends_on=[big])
    def consumer(big: list[int]) -> int:
        if broken["yes"]:
            raise RuntimeError("broken")
        return sum(big)

    graph = TaskGraph.build([big, consumer])
    first = execute(plan(graph), executor=executor)
    assert first[big].has_value
    assert not first[big].released
    assert first.value(big) == [1, 2, 3]
    broken["yes"] = False
    resumed_plan = plan(graph, first)
    assert resumed_plan.to_run == ("consumer",)
    resumed = execute(resumed_plan, executor=executor)
    assert resumed.value(consumer) == 6
    assert resumed[big].released


def test_a_released_value_is_kept_when_no_consumer_runs(
    registry: Registry, executor: Executor
) -> None:
    @task(retain_result=False)
    def big() -> list[int]:
        return [1, 2, 3]

    @task(depends_on=[big])
    def consumer(big: list[int]) -> int:
        return sum(big)

    graph = TaskGraph.build([big, consumer])
    only_big = execute(plan(graph, targets=[big]), executor=executor)
    assert only_big.value(big) == [1, 2, 3]  # asked for, and nobody consumed it here
    assert not only_big[big].released
    rest = execute(plan(graph, only_big), executor=executor)
    assert rest.value(consumer) == 6
    assert rest[big].released


# -- interruption ---------------------------------------------------------------------------


def test_keyboard_interrupt_is_recorded_and_re_raised_with_the_snapshot(
    registry: Registry, executor: Executor
) -> None:
    @task
    def first() -> int:
        return 1

    @task(depends_on=[first])
    def interrupted(first: int) -> None:
        raise KeyboardInterrupt

    @task(depends_on=[first])
    def sibling_later(first: int) -> None:
        if not threaded(executor):
            raise AssertionError("must not start after an interrupt")

    @task(depends_on=[interrupted])
    def downstream(interrupted: None) -> None:
        raise AssertionError("must not run")

    @task(depends_on=[first], detached=True)
    def side(first: int) -> None:
        raise AssertionError("detached tasks do not run after an interrupt")

    recorder = RecordingHook()
    graph = TaskGraph.build([first, interrupted, sibling_later, downstream, side])
    with pytest.raises(KeyboardInterrupt) as info:
        execute(plan(graph), executor=executor, hooks=[recorder])
    snap = info.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert isinstance(snap, Snapshot)
    assert snap.is_complete
    assert snap[first].status is TaskStatus.SUCCEEDED
    record = snap[interrupted]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "interrupted"
    assert snap[downstream].status is TaskStatus.SKIPPED
    assert snap[side].status is TaskStatus.CANCELLED
    assert snap[side].root_cause == "interrupted"
    if not threaded(executor):
        assert snap[sibling_later].status is TaskStatus.CANCELLED
        assert snap[sibling_later].root_cause == "interrupted"
    finished = recorder.events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "failed"


# -- stores ---------------------------------------------------------------------------------


class RecordingStore:
    """A fake store that records every call and refuses values it is told to refuse."""

    def __init__(self, refuse: object = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.refuse = refuse

    def begin_run(self, plan: Plan) -> None:
        self.calls.append(("begin_run", plan.run_id))

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        if self.refuse is not None and record.has_value and record.value == self.refuse:
            raise SerializationError(f"cannot encode {record.value!r}", value_type="set")
        self.calls.append(("save_record", (record.name, record.status.value)))

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        self.calls.append(("finish_run", (snapshot.run_id, status, len(snapshot))))


def test_store_sees_begin_save_and_finish(registry: Registry, executor: Executor) -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a], when=lambda a: False)
    def gated(a: int) -> int:
        return a

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a

    store = RecordingStore()
    assert isinstance(store, StateStore)
    graph = TaskGraph.build([a, gated, b])
    first = execute(plan(graph, run_id="r1"), executor=executor, store=store)
    assert store.calls[0] == ("begin_run", "r1")
    assert store.calls[-1] == ("finish_run", ("r1", "succeeded", 3))
    saves = [args for call, args in store.calls if call == "save_record"]
    assert [s for s in saves if s[0] == "a"] == [("a", "running"), ("a", "succeeded")]
    assert [s for s in saves if s[0] == "gated"] == [("gated", "skipped")]
    assert [s for s in saves if s[0] == "b"] == [("b", "running"), ("b", "succeeded")]

    store.calls.clear()
    execute(plan(graph, first, rerun=["b"], run_id="r2"), executor=executor, store=store)
    saves = [args for call, args in store.calls if call == "save_record"]
    assert ("a", "succeeded") in saves  # reused records are saved into the new run
    assert [s for s in saves if s[0] == "b"] == [("b", "running"), ("b", "succeeded")]


def test_store_serialization_error_fails_the_task(registry: Registry, executor: Executor) -> None:
    @task
    def unstorable() -> str:
        return "socket"

    @task(depends_on=[unstorable])
    def after(unstorable: str) -> str:
        return unstorable

    store = RecordingStore(refuse="socket")
    snap, events = run(unstorable, after, executor=executor, store=store, fail_fast=False)
    record = snap[unstorable]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "serialization"
    assert "cannot encode 'socket'" in record.error.message
    assert snap[after].status is TaskStatus.SKIPPED
    assert ("save_record", ("unstorable", "failed")) in store.calls
    failed = [e for e in events if isinstance(e, TaskFailed)]
    assert [e.task for e in failed] == ["unstorable"]
    assert not any(isinstance(e, TaskSucceeded) and e.task == "unstorable" for e in events)


def test_a_store_that_cannot_write_ends_the_run_with_its_error(
    registry: Registry, executor: Executor
) -> None:
    class DiskFull(RecordingStore):
        def save_record(self, run_id: str, record: TaskRecord) -> None:
            if record.status.is_terminal:
                raise StoreError("disk full")
            super().save_record(run_id, record)

    @task
    def a() -> int:
        return 1

    with pytest.raises(StoreError, match="disk full"):
        execute(plan(TaskGraph.build([a])), executor=executor, store=DiskFull())


# -- hooks ----------------------------------------------------------------------------------


def test_a_raising_hook_never_breaks_the_run_and_is_reported_once(
    registry: Registry, executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def on_event(self, event: Event) -> None:
            raise RuntimeError("hook bug")

    @task
    def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a + 1

    with caplog.at_level(logging.ERROR, logger="flowplan"):
        snap, events = run(a, b, executor=executor, hooks=[Broken()])
    assert snap.value(b) == 2
    assert len(events) >= 6  # the recording hook after it still saw everything
    reports = [r for r in caplog.records if r.name == "flowplan"]
    assert len(reports) == 1
    assert "hook" in reports[0].getMessage()
    assert reports[0].exc_info is not None
    assert "hook bug" in caplog.text


def test_events_carry_the_run_id_and_clock(registry: Registry) -> None:
    ticks = iter(range(1000))

    @task
    def a() -> int:
        return 1

    snap, events = run(
        a, executor=InlineExecutor(), run_id="fixed", clock=lambda: float(next(ticks))
    )
    assert all(e.run_id == "fixed" for e in events)
    times = [e.time for e in events]
    assert times == sorted(times)
    assert snap.run_id == "fixed"
    assert snap[a].started_at == 1.0
