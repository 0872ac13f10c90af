"""flowrun's API (``flowplan.engine.Engine``) beside the core's thread driver, same DAG.

Place: benchmarks (not collected by pytest). For each shape (fan-out and lattice from
:mod:`benchmarks.core`, 1,000 no-op sync tasks by default) one engine declares the tasks with
``engine.task(name=, dag=, deps=)``; each repeat then times, interleaved so that load spikes
hit both alike:

- **engine**: ``await engine.run_once(dag)`` (plan, the in-memory run store, hooks adapter,
  execution) inside a running event loop;
- **core**: ``plan(graph)`` + ``execute(plan, max_workers=max_parallel)`` — the core's thread
  driver on the engine's own graph, with the engine's per-run parallelism.

Figures are medians over the repeats, in µs per task, wall clock and process CPU time, and
the ratio engine / core (the target is ≤ 1.5).

Run: ``python -m benchmarks.engine [--n 1000] [--repeat 7] [--shapes fanout lattice]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

from benchmarks.core import SHAPES, noop
from flowplan import execute, plan
from flowplan.engine import Engine, build_default_engine
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


def _timed_core(engine: Engine) -> tuple[float, float]:
    graph = engine.graph("bench")
    wall, cpu = time.perf_counter(), time.process_time()
    snapshot = execute(plan(graph), max_workers=MAX_PARALLEL)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if len(snapshot.by_status(TaskStatus.SUCCEEDED)) != len(graph.specs):
        failed = [name for name in graph.specs if not snapshot.records[name].succeeded]
        raise RuntimeError(f"core run did not succeed: {failed[:3]}")
    return wall, cpu


def measure(shape_name: str, n: int, repeat: int) -> dict[str, float]:
    """Median µs per task (wall and CPU) of the engine and the core, interleaved."""
    engine = _engine(shape_name, n)
    try:
        _timed_engine(engine)  # warm up both paths
        _timed_core(engine)
        samples: dict[str, list[float]] = {k: [] for k in ("ew", "ec", "cw", "cc")}
        for _ in range(repeat):
            ew, ec = _timed_engine(engine)
            cw, cc = _timed_core(engine)
            for key, value in (("ew", ew), ("ec", ec), ("cw", cw), ("cc", cc)):
                samples[key].append(value * 1e6 / n)
    finally:
        engine.close()
    return {key: statistics.median(values) for key, values in samples.items()}


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
    print("| shape | engine wall | core wall | ratio | engine CPU | core CPU | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for shape_name in args.shapes:
        m = measure(shape_name, args.n, args.repeat)
        print(
            f"| {shape_name} | {m['ew']:.1f} | {m['cw']:.1f} | {m['ew'] / m['cw']:.2f}x "
            f"| {m['ec']:.1f} | {m['cc']:.1f} | {m['ec'] / m['cc']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
