"""Retry policies as data: jitter, retry_on/give_up_on, max_elapsed_s, the run-wide budget."""

from __future__ import annotations

import asyncio
import doctest
import math
from typing import Any

import pytest

import flowplan
import flowplan.engine as flowrun
from flowplan import (
    InlineExecutor,
    InvalidOptionError,
    Registry,
    RetryBudget,
    RetryPolicy,
    TaskGraph,
    TaskStatus,
    execute,
    plan,
    task,
)
from flowplan.policies import RetryPolicy as PolicyClass


def _run(*specs: Any, **kwargs: Any) -> flowplan.Snapshot:
    return execute(plan(TaskGraph.build(list(specs))), executor=InlineExecutor(), **kwargs)


def test_module_doctests() -> None:
    failures, tests = doctest.testmod(flowplan.policies)
    assert tests > 0
    assert failures == 0


# -- jitter -------------------------------------------------------------------------------------
def test_jitter_is_reproducible_per_run_task_and_attempt_and_within_bounds() -> None:
    policy = RetryPolicy(retries=5, backoff_base_ms=1000, max_backoff_ms=8000, jitter=0.3)
    for retry in range(1, 6):
        full = min(1000 * 2 ** (retry - 1), 8000) / 1000
        delay = policy.delay_s(retry, task="t", seed="run")
        assert full * 0.7 <= delay <= full
        assert delay == policy.delay_s(retry, task="t", seed="run")  # same inputs, same delay
    delays = {policy.delay_s(1, task=f"t{i}", seed="run") for i in range(20)}
    assert len(delays) > 15  # tasks get different jitter
    runs = {policy.delay_s(1, task="t", seed=f"r{i}") for i in range(20)}
    assert len(runs) > 15  # runs too
    attempts = [policy.delay_s(n, task="t", seed="r") / min(2 ** (n - 1), 8) for n in range(1, 6)]
    assert len(set(attempts)) == 5  # and attempts


def test_jitter_in_a_run_is_recorded_and_reproducible_with_the_same_run_id() -> None:
    reg = Registry()

    @task(registry=reg, retry=2, retry_backoff_base_ms=1, retry_jitter=1.0)
    def flaky() -> None:
        raise ValueError("no")

    graph = TaskGraph.build([flaky])
    first = execute(plan(graph, run_id="r1"), executor=InlineExecutor())
    again = execute(plan(graph, run_id="r1"), executor=InlineExecutor())
    other = execute(plan(graph, run_id="r2"), executor=InlineExecutor())
    assert len(first[flaky].retry_delays) == 2
    assert first[flaky].retry_delays == again[flaky].retry_delays
    assert first[flaky].retry_delays != other[flaky].retry_delays
    assert all(0 <= d <= 0.002 for d in first[flaky].retry_delays)


# -- retry_on / give_up_on ----------------------------------------------------------------------
def test_retry_on_retries_only_matching_errors() -> None:
    reg = Registry()
    calls: list[int] = []

    @task(registry=reg, retry=3, retry_backoff_base_ms=0, retry_on=(ConnectionError,))
    def fetch() -> None:
        calls.append(1)
        raise KeyError("bad")

    snap = _run(fetch)
    record = snap[fetch]
    assert record.status is TaskStatus.FAILED
    assert record.attempts == 1
    assert len(calls) == 1
    assert record.reason == (
        "raised KeyError on attempt 1/4; not retried: KeyError is not in retry_on (ConnectionError)"
    )


def test_give_up_on_wins_over_retry_on() -> None:
    reg = Registry()
    errors = iter([ConnectionError("down"), ConnectionRefusedError("refused")])

    @task(registry=reg, retry=3, retry_backoff_base_ms=0, give_up_on=ConnectionRefusedError)
    def fetch() -> None:
        raise next(errors)

    record = _run(fetch)[fetch]
    assert record.attempts == 2
    assert record.retry_delays == (0.0,)
    assert record.reason is not None
    assert "not retried: ConnectionRefusedError matches give_up_on" in record.reason


def test_a_framework_timeout_counts_as_task_timeout_error() -> None:
    import time

    reg = Registry()

    @task(
        registry=reg,
        retry=2,
        retry_backoff_base_ms=0,
        timeout_s=0.05,
        give_up_on=(flowplan.TaskTimeoutError,),
        idempotent=True,
    )
    def slow() -> None:
        time.sleep(0.5)

    record = _run(slow)[slow]
    assert record.attempts == 1
    assert record.reason is not None
    assert "not retried: TaskTimeoutError matches give_up_on" in record.reason

    @task(registry=reg, retry=1, retry_backoff_base_ms=0, timeout_s=0.05, idempotent=True)
    def slow_default() -> None:
        time.sleep(0.5)

    assert _run(slow_default)[slow_default].attempts == 2  # retried by default


def test_retry_until_rejections_are_always_retryable() -> None:
    reg = Registry()
    values = iter([1, 2, 3])

    @task(
        registry=reg,
        retry=3,
        retry_backoff_base_ms=0,
        retry_on=(ConnectionError,),
        retry_until=lambda v: v >= 3,
    )
    def poll() -> int:
        return next(values)

    snap = _run(poll)
    assert snap[poll].status is TaskStatus.SUCCEEDED
    assert snap[poll].attempts == 3


# -- max_elapsed_s ------------------------------------------------------------------------------
def test_max_elapsed_counts_backoff() -> None:
    reg = Registry()

    @task(registry=reg, retry=10, retry_backoff_base_ms=50, retry_max_elapsed_s=0.12)
    def flaky() -> None:
        raise ValueError("no")

    record = _run(flaky)[flaky]
    # after attempt 1 (t≈0): 0 + 0.05 <= 0.12 → retry; after attempt 2 (t≈0.05): +0.1 > 0.12
    assert record.attempts == 2
    assert record.retry_delays == (0.05,)
    assert record.reason is not None
    assert record.reason.startswith("raised ValueError on attempt 2/11; not retried: ")
    assert "retry_max_elapsed_s=0.12 would be exceeded" in record.reason


def test_max_elapsed_zero_means_no_retry_after_a_delay() -> None:
    reg = Registry()

    @task(registry=reg, retry=3, retry_backoff_base_ms=10, retry_max_elapsed_s=0)
    def flaky() -> None:
        raise ValueError("no")

    assert _run(flaky)[flaky].attempts == 1


# -- the run-wide budget ------------------------------------------------------------------------
@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_the_budget_stops_a_retry_storm(executor: str) -> None:
    reg = Registry()
    calls: list[str] = []

    def fail(i: int) -> Any:
        def body() -> None:
            calls.append(f"t{i}")
            raise ConnectionError("down")

        return task(registry=reg, name=f"t{i}", retry=5, retry_backoff_base_ms=0)(body)

    specs = [fail(i) for i in range(50)]
    budget = RetryBudget(max_retries=10)
    snap = execute(
        plan(TaskGraph.build(specs)),
        executor=InlineExecutor() if executor == "inline" else None,
        max_workers=8 if executor == "threads" else None,
        fail_fast=False,
        retry_budget=budget,
    )
    records = [snap[s] for s in specs]
    assert sum(r.attempts - 1 for r in records) == 10
    assert len(calls) == 60
    assert all(r.status is TaskStatus.FAILED for r in records)
    starved = [r for r in records if r.reason and "retry budget is exhausted" in r.reason]
    if executor == "inline":  # t0 and t1 use 5 retries each; every later task is starved
        assert len(starved) == 48
    else:
        assert len(starved) >= 40
    assert all(r.reason and ("retry budget" in r.reason or "6/6" in r.reason) for r in records)
    assert "RetryBudget(max_retries=10): 10/10 retries used" in (starved[0].reason or "")


def test_budget_ratio_scales_with_the_run() -> None:
    assert RetryBudget(ratio=0.1).limit(tasks=50) == 5
    assert RetryBudget(max_retries=3, ratio=0.5).limit(tasks=50) == 3
    reg = Registry()
    specs = [
        task(registry=reg, name=f"t{i}", retry=2, retry_backoff_base_ms=0)(_raise)
        for i in range(20)
    ]
    snap = _run(*specs, fail_fast=False, retry_budget=RetryBudget(ratio=0.25))
    assert sum(snap[s].attempts - 1 for s in specs) == 5


def _raise() -> None:
    raise ValueError("no")


def test_a_budget_is_per_run() -> None:
    reg = Registry()
    flaky = task(registry=reg, name="flaky", retry=1, retry_backoff_base_ms=0)(_raise)
    budget = RetryBudget(max_retries=1)
    for _ in range(2):  # a fresh counter each run
        assert _run(flaky, retry_budget=budget)[flaky].attempts == 2


def test_the_budget_applies_to_aexecute() -> None:
    reg = Registry()
    specs = [
        task(registry=reg, name=f"t{i}", retry=3, retry_backoff_base_ms=0)(_raise) for i in range(5)
    ]
    snap = asyncio.run(
        flowplan.aexecute(
            plan(TaskGraph.build(specs)), fail_fast=False, retry_budget=RetryBudget(max_retries=2)
        )
    )
    assert sum(snap[s].attempts - 1 for s in specs) == 2


# -- validation and the decorators --------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"retry_on": (ValueError, "x")}, "retry_on must be exception classes"),
        ({"retry_on": 3}, "retry_on must be exception classes"),
        ({"give_up_on": (int,)}, "give_up_on must be exception classes"),
        ({"max_elapsed_s": -1}, "retry_max_elapsed_s must be a finite number"),
        ({"max_elapsed_s": math.inf}, "retry_max_elapsed_s must be a finite number"),
        ({"max_elapsed_s": True}, "retry_max_elapsed_s must be a finite number"),
    ],
)
def test_bad_policy_options_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "needs max_retries= or ratio="),
        ({"max_retries": -1}, "max_retries must be a non-negative whole number"),
        ({"max_retries": 1.5}, "max_retries must be a non-negative whole number"),
        ({"ratio": math.nan}, "ratio must be a finite number"),
    ],
)
def test_bad_budgets_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        RetryBudget(**kwargs)


def test_policy_accepts_one_class_or_a_list() -> None:
    assert RetryPolicy(retry_on=KeyError).retry_on == (KeyError,)
    assert RetryPolicy(give_up_on=[KeyError, OSError]).give_up_on == (KeyError, OSError)
    assert RetryPolicy().retries_on(ValueError())
    assert not RetryPolicy().retries_on(KeyboardInterrupt())


def test_task_decorator_builds_the_policy() -> None:
    reg = Registry()

    @task(
        registry=reg,
        retry=2,
        retry_on=(OSError,),
        give_up_on=FileNotFoundError,
        retry_max_elapsed_s=30,
        retry_jitter=0.1,
    )
    def fetch() -> None: ...

    assert fetch.retry == PolicyClass(
        retries=2,
        backoff_base_ms=1000,
        jitter=0.1,
        retry_on=(OSError,),
        give_up_on=(FileNotFoundError,),
        max_elapsed_s=30.0,
    )


def test_task_decorator_takes_a_ready_policy_but_not_with_retry_options() -> None:
    reg = Registry()
    policy = RetryPolicy(retries=4, backoff_base_ms=0)

    @task(registry=reg, retry_policy=policy)
    def fetch() -> None: ...

    assert fetch.retry is policy
    with pytest.raises(InvalidOptionError, match=r"either retry_policy= or retry=, not both"):
        task(registry=reg, retry=1, retry_policy=policy)
    with pytest.raises(InvalidOptionError, match=r"retry_on=, retry_max_elapsed_s="):
        task(registry=reg, retry_on=KeyError, retry_max_elapsed_s=1, retry_policy=policy)
    with pytest.raises(InvalidOptionError, match="retry_policy must be a RetryPolicy"):
        task(registry=reg, retry_policy=3)  # type: ignore[call-overload]


def test_engine_task_options_accept_the_new_retry_options() -> None:
    engine = flowrun.Engine()

    @engine.task(retries=2, retry_on=(OSError,), give_up_on=[KeyError], retry_max_elapsed_s=5)
    def a() -> None: ...

    policy = RetryPolicy(retries=3)

    @engine.task(retry_policy=policy)
    def b() -> None: ...

    assert a.retry.retry_on == (OSError,)
    assert a.retry.give_up_on == (KeyError,)
    assert a.retry.max_elapsed_s == 5.0
    assert b.retry is policy
    with pytest.raises(InvalidOptionError, match="either retry_policy= or retries="):

        @engine.task(retries=1, retry_policy=policy)
        def c() -> None: ...


def test_flow_takes_a_retry_budget() -> None:
    import structlog

    reg = Registry()
    specs = [
        task(registry=reg, name=f"t{i}", retry=3, retry_backoff_base_ms=0)(_raise) for i in range(4)
    ]
    flow = flowplan.Flow(
        *specs,
        fail_fast=False,
        executor=InlineExecutor(),
        registry=reg,
        logger=structlog.testing.CapturingLogger(),
        retry_budget=RetryBudget(max_retries=2),
    )
    results = flow.run()
    assert sum(r.attempts - 1 for r in results.values()) == 2
    with pytest.raises(InvalidOptionError, match="retry_budget must be a RetryBudget"):
        flowplan.Flow(specs[0], retry_budget=2)  # type: ignore[arg-type]


def test_engine_scheduler_config_takes_a_retry_budget() -> None:
    config = flowrun.SchedulerConfig(max_parallel=2, retry_budget=RetryBudget(max_retries=1))
    engine = flowrun.Engine(config=config, state_store=flowrun.MemoryRunStore())
    try:
        for i in range(3):
            engine.task(name=f"t{i}", dag="storm", retries=2)(_raise)
        run_id = asyncio.run(engine.run_once("storm"))
        records = engine.state_store.load(run_id).records
        assert sum(r.attempts - 1 for r in records.values()) == 1
        assert sum("retry budget" in str(r.reason) for r in records.values()) >= 1
    finally:
        engine.close()
    with pytest.raises(InvalidOptionError, match="retry_budget must be a RetryBudget"):
        flowrun.SchedulerConfig(retry_budget=3)  # type: ignore[arg-type]
