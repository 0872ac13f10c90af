"""Typing tests for retry policies and ``simulate``: checked by mypy and pyright, never run.

Pins: ``@task`` with the new retry options (``retry_on=``, ``give_up_on=``,
``retry_max_elapsed_s=``, ``retry_policy=``) keeps ``TaskSpec[P, R]``; wrong option types are
rejected; ``RetryBudget`` and ``execute(..., retry_budget=...)``; ``simulate`` takes scripts
keyed by tasks, names or both, with single outcomes or lists, and returns a ``Simulation``.
"""

from __future__ import annotations

from typing import Protocol, assert_type

import flowplan.engine as flowrun
from flowplan import (
    Event,
    Fail,
    FakeClock,
    InlineExecutor,
    Registry,
    RetryBudget,
    RetryPolicy,
    Simulation,
    Snapshot,
    TaskGraph,
    TaskSpec,
    Timeout,
    Value,
    execute,
    plan,
    simulate,
    task,
)

reg = Registry()


@task(
    registry=reg,
    retry=3,
    retry_on=(ConnectionError, TimeoutError),
    give_up_on=KeyError,
    retry_max_elapsed_s=30.0,
    retry_jitter=0.1,
)
def fetch(url: str) -> bytes:
    return url.encode()


class FetchCall(Protocol):
    def __call__(self, url: str) -> bytes: ...


fetch_call: FetchCall = fetch


@task(registry=reg, retry_policy=RetryPolicy(retries=2, give_up_on=(ValueError,)))
def parse(fetch: bytes) -> int:
    return len(fetch)


class ParseCall(Protocol):
    def __call__(self, fetch: bytes) -> int: ...


parse_call: ParseCall = parse

task(retry_on="ValueError")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
task(retry_policy=3)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
task(retry_max_elapsed_s="5")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]

engine = flowrun.Engine()


@engine.task(retries=2, retry_on=(OSError,), give_up_on=[KeyError], retry_max_elapsed_s=5)
def engine_task() -> int:
    return 1


assert_type(engine_task, TaskSpec[[], int])

budget = RetryBudget(max_retries=10, ratio=0.1)
graph = TaskGraph.build([parse])
snap = execute(plan(graph), executor=InlineExecutor(), retry_budget=budget)
assert_type(snap, Snapshot)

sim = simulate(
    plan(graph),
    {parse: [Fail(ValueError("x")), Value(3)], "fetch": Timeout()},
    clock=FakeClock(10.0),
    seed=1,
    fail_fast=False,
    retry_budget=budget,
)
assert_type(sim, Simulation)
assert_type(sim.snapshot, Snapshot)
assert_type(sim.events, tuple[Event, ...])
assert_type(sim.snapshot.value(parse), int)
by_name = {"parse": Value(1)}
simulate(plan(graph), by_name)
simulate(plan(graph), clock=lambda: 0.0)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
