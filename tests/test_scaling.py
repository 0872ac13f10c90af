"""Scaling: the cost per task is flat in the number of tasks — counted, never timed.

Every Python and builtin call made while building, planning and executing (``sys.setprofile``)
is counted at 1,000 and at 4,000 tasks. Any per-task walk over all tasks (an O(n²) snapshot
copy, skip propagation, summary or store write) makes the per-task count grow with n and fails
here, without a flaky timing assertion.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from flowplan import (
    Dependency,
    InlineExecutor,
    RecordingHook,
    Snapshot,
    TaskGraph,
    TaskSpec,
    execute,
    plan,
)
from flowplan.store import MemoryStore, SqliteStateStore

SMALL, LARGE = 1_000, 4_000
TOLERANCE = 1.10  # per-task calls at LARGE may exceed SMALL's by 10% (fixed costs go the other way)


def _noop(**deps: object) -> int:
    return 0


def _boom(**deps: object) -> int:
    raise ValueError("boom")


def _chain(n: int, body: Callable[..., int] = _noop) -> list[TaskSpec[..., int]]:
    specs = [TaskSpec("t0", body)]
    specs += [TaskSpec(f"t{i}", _noop, deps=(Dependency(f"t{i - 1}"),)) for i in range(1, n)]
    return specs


def _fanout(n: int) -> list[TaskSpec[..., int]]:
    leaves = [TaskSpec(f"leaf{i}", _noop, deps=(Dependency("root"),)) for i in range(n - 2)]
    sink = TaskSpec("sink", _noop, deps=tuple(Dependency(s.name) for s in leaves))
    return [TaskSpec("root", _noop), *leaves, sink]


def _lattice(n: int, width: int = 100) -> list[TaskSpec[..., int]]:
    specs = []
    for i in range(n):
        layer, j = divmod(i, width)
        deps: tuple[Dependency, ...] = ()
        if layer:
            picks = dict.fromkeys((j, (j + 1) % width, (j + width // 2) % width))
            deps = tuple(Dependency(f"l{layer - 1}_{p}") for p in picks)
        specs.append(TaskSpec(f"l{layer}_{j}", _noop, deps=deps))
    return specs


def _count_calls(action: Callable[[], object]) -> int:
    calls = 0

    def profiler(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profiler)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def _pipeline(specs: list[TaskSpec[..., int]], **options: Any) -> Snapshot:
    return execute(plan(TaskGraph.build(specs)), executor=InlineExecutor(), **options)


def _with_sqlite(specs: list[TaskSpec[..., int]], **store_options: Any) -> Snapshot:
    with SqliteStateStore(":memory:", **store_options) as store:
        return _pipeline(specs, store=store)


SCENARIOS: dict[str, Callable[[int], Callable[[], object]]] = {
    "chain": lambda n: lambda: _pipeline(_chain(n)),
    "fanout": lambda n: lambda: _pipeline(_fanout(n)),
    "lattice": lambda n: lambda: _pipeline(_lattice(n)),
    "hooks+store": lambda n: (
        lambda: _pipeline(_lattice(n), hooks=[RecordingHook()], store=MemoryStore())
    ),
    "sqlite store": lambda n: lambda: _with_sqlite(_lattice(n)),
    "sqlite store, batched": lambda n: lambda: _with_sqlite(_lattice(n), commit_every=100),
    # Specs out of declaration order: the graph sorts them (a heap), not the fast path.
    "lattice declared backwards": lambda n: lambda: _pipeline(_lattice(n)[::-1]),
    "failure skips everything below": lambda n: lambda: _pipeline(_chain(n, _boom)),
    "fail-fast cancels a fan-out": lambda n: (
        lambda: _pipeline([TaskSpec("bad", _boom), *_fanout(n)])
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_calls_per_task_do_not_grow_with_the_graph(scenario: str) -> None:
    make = SCENARIOS[scenario]
    make(100)()  # warm up: imports and caches are not per-task costs
    small = _count_calls(make(SMALL)) / SMALL
    large = _count_calls(make(LARGE)) / LARGE
    assert large <= small * TOLERANCE, (
        f"{scenario}: {large:.1f} calls per task at {LARGE} tasks vs {small:.1f} at {SMALL}: "
        "something walks every task per task (O(n²))"
    )


def test_resume_planning_is_flat() -> None:
    def resume(n: int) -> Callable[[], object]:
        graph = TaskGraph.build(_lattice(n))
        first = execute(plan(graph), executor=InlineExecutor())
        return lambda: plan(graph, first)

    small = _count_calls(resume(SMALL)) / SMALL
    large = _count_calls(resume(LARGE)) / LARGE
    assert large <= small * TOLERANCE
