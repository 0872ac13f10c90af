"""flowrun's API (``flowplan.engine.Engine``) beside the core's thread driver, same DAG.

Place: benchmarks (not collected by pytest). For each shape (fan-out and lattice from
:mod:`benchmarks.core`, 1,000 no-op sync tasks by default) one engine declares the tasks with
``engine.task(name=, dag=, deps=)``; each repeat then times, interleaved so that load spikes
hit both alike:

- **engine**: ``await engine.run_once(dag)`` (plan, the in-memory run store, hooks adapter,
  execution) inside a running event loop;
- **core**: ``plan(graph)`` + ``execute(plan, max_workers=max_parallel)`` — the core's thread
  driver on the engine's own graph, with the engine's per-run parallelism;
- **core recorded**: the same, recording the run as the engine does (an in-memory
  ``MemoryRunStore`` and the engine's hook adapter, which writes flowrun's log lines) —
  what the engine's run costs beyond its driver.

Figures are medians over the repeats, in µs per task, wall clock and process CPU time, and
the ratios engine / core and engine / core recorded (the target is ≤ 1.5).

Run: ``python -m benchmarks.engine [--n 1000] [--repeat 7] [--shapes fanout lattice]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence

from benchmarks.core import SHAPES, noop
from flowplan import execute, plan
from flowplan.engine import Engine, MemoryRunStore, build_default_engine
from flowplan.engine._hooks import EngineHook
from flowplan.snapshot import TaskStatus

__all__ = ["main", "measure"]

MAX_PARALLEL = 4


def _engine(shape_name: str, n: int) -> Engine:
    engine = build_default_engine(max_parallel=MAX_PARALLEL)
    for name, deps in SHAPES[shape_name](n):
        engine.task(name=name, dag="bench", deps=list(deps))(noop)
    engine.validate("bench")
    return engine


def _timed_engine(engine: Engine) -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        run_id = await engine.run_once("bench")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        status = engine.get_run_report(run_id)["status"]
        if status != "SUCCESS":
            raise RuntimeError(f"engine run {run_id} ended {status}")
        return wall, cpu

    return asyncio.run(main())


def _timed_core(engine: Engine, *, recorded: bool = False) -> tuple[float, float]:
    graph = engine.graph("bench")
    wall, cpu = time.perf_counter(), time.process_time()
    the_plan = plan(graph)
    if recorded:  # the same records and log lines as the engine's run
        store = MemoryRunStore()
        store.create_run(the_plan, dag_name="bench")
        hook = EngineHook("bench", graph, [], engine.logger)
        snapshot = execute(
            the_plan, max_workers=MAX_PARALLEL, fail_fast=False, store=store, hooks=[hook]
        )
    else:
        snapshot = execute(the_plan, max_workers=MAX_PARALLEL)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if len(snapshot.by_status(TaskStatus.SUCCEEDED)) != len(graph.specs):
        raise RuntimeError("core run did not succeed")
    return wall, cpu


_KEYS = ("engine", "core", "core recorded")


def measure(shape_name: str, n: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Median µs per task (wall, CPU) of the engine, the core, and the core recording the
    run as the engine does (its in-memory store and hook adapter), interleaved."""
    engine = _engine(shape_name, n)
    runs: dict[str, Callable[[], tuple[float, float]]] = {
        "engine": lambda: _timed_engine(engine),
        "core": lambda: _timed_core(engine),
        "core recorded": lambda: _timed_core(engine, recorded=True),
    }
    samples: dict[str, list[tuple[float, float]]] = {key: [] for key in _KEYS}
    try:
        for timed in runs.values():  # warm up every path
            timed()
        for _ in range(repeat):
            for key, timed in runs.items():
                wall, cpu = timed()
                samples[key].append((wall * 1e6 / n, cpu * 1e6 / n))
    finally:
        engine.close()
    return {
        key: (
            statistics.median(w for w, _ in values),
            statistics.median(c for _, c in values),
        )
        for key, values in samples.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--shapes", nargs="+", default=["fanout", "lattice"], choices=SHAPES)
    args = parser.parse_args(argv)
    print(
        f"Engine.run_once vs core execute (threads, max_parallel={MAX_PARALLEL}), "
        f"N={args.n}, median of {args.repeat}; µs per task"
    )
    print(
        "| shape | engine wall / CPU | core wall / CPU | ratio wall / CPU "
        "| core recorded wall / CPU | ratio wall / CPU |"
    )
    print("|---|---|---|---|---|---|")
    for shape_name in args.shapes:
        m = measure(shape_name, args.n, args.repeat)
        (ew, ec), (cw, cc), (rw, rc) = (m[key] for key in _KEYS)
        print(
            f"| {shape_name} | {ew:.1f} / {ec:.1f} | {cw:.1f} / {cc:.1f} "
            f"| {ew / cw:.2f}x / {ec / cc:.2f}x | {rw:.1f} / {rc:.1f} "
            f"| {ew / rw:.2f}x / {ec / rc:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
