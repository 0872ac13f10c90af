"""``Flow`` in an application whose structlog filters out INFO, beside the core on the same DAG.

``Flow`` attaches a :class:`~flowplan.hooks.StructlogHook`. In an application that configured
structlog to drop INFO (``structlog.make_filtering_bound_logger(logging.WARNING)``), a run that
goes well logs nothing, so it should cost what the core costs. Per shape (from
:mod:`benchmarks.core`, every body the shared ``noop``) and executor, each repeat runs, in an
order rotated from one repeat to the next:

- **core**: ``TaskGraph.build`` + ``plan`` + ``execute`` (no hooks);
- **Flow, log=False**: ``Flow(*specs, log=False).run()`` (what ``Flow`` adds besides logging);
- **Flow, logger filtering out INFO**: ``Flow(*specs).run()`` with structlog configured to
  drop INFO (the default logger, so the hook follows the application's configuration).

Both clocks are reported: wall time and this process's CPU time (``time.process_time``; on
threads it includes the workers'), µs per task, median of ``--repeat``; ``gc.collect()`` before
each timed run. The ratio is Flow-with-filtering over the core. The Flow executor is the core's:
``InlineExecutor`` for *inline*, the default thread pool with ``--workers`` for *threads*.

Run::

    python -m benchmarks.flow_logging                     # 1,000 tasks, fan-out + lattice
    python -m benchmarks.flow_logging --repeat 9 --executors inline
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import structlog

from benchmarks.core import SHAPES, WORKERS, declare
from flowplan import Flow, InlineExecutor, StepState, TaskGraph, TaskStatus, execute, plan

__all__ = ["measure_flow_logging", "render_flow_logging"]

DEFAULT_SHAPES: Final = ("fanout", "lattice")
EXECUTORS: Final = ("inline", "threads")
VARIANTS: Final = ("core", "flow_nolog", "flow_filtered")
LABELS: Final = {
    "core": "core",
    "flow_nolog": "Flow, log=False",
    "flow_filtered": "Flow, logger filtering out INFO",
}


def _core(shape_name: str, n: int, executor: str, workers: int) -> int:
    specs = declare(SHAPES[shape_name](n))
    the_plan = plan(TaskGraph.build(specs))
    if executor == "inline":
        snapshot = execute(the_plan, executor=InlineExecutor())
    else:
        snapshot = execute(the_plan, max_workers=workers)
    return len(snapshot.by_status(TaskStatus.SUCCEEDED))


def _flow(shape_name: str, n: int, executor: str, workers: int, *, log: bool) -> int:
    specs = declare(SHAPES[shape_name](n))
    if executor == "inline":
        flow = Flow(*specs, executor=InlineExecutor(), log=log)
    else:
        flow = Flow(*specs, max_workers=workers, log=log)
    results = flow.run()
    return sum(1 for result in results.values() if result.state is StepState.SUCCEEDED)


def _timed(run: Callable[[], int], n: int, what: str) -> tuple[int, int]:
    gc.collect()
    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
    done = run()
    took = time.perf_counter_ns() - wall, time.process_time_ns() - cpu
    if done != n:
        raise RuntimeError(f"{what}: {done} of {n} tasks succeeded")
    return took


def measure_flow_logging(
    shape_name: str, n: int, executor: str, repeat: int, workers: int = WORKERS
) -> dict[str, Any]:
    """Samples (ns per run, wall and CPU) of each variant, interleaved within each repeat."""
    runs: dict[str, Callable[[], int]] = {
        "core": lambda: _core(shape_name, n, executor, workers),
        "flow_nolog": lambda: _flow(shape_name, n, executor, workers, log=False),
        "flow_filtered": lambda: _flow(shape_name, n, executor, workers, log=True),
    }
    wall: dict[str, list[int]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[int]] = {v: [] for v in VARIANTS}
    for i in range(repeat):
        order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]
        for variant in order:
            took_wall, took_cpu = _timed(runs[variant], n, f"{variant} {shape_name}/{n}")
            wall[variant].append(took_wall)
            cpu[variant].append(took_cpu)
    return {"shape": shape_name, "tasks": n, "executor": executor, "wall": wall, "cpu": cpu}


def _us(row: dict[str, Any], clock: str, variant: str) -> float:
    samples: list[int] = row[clock][variant]
    tasks: int = row["tasks"]
    return statistics.median(samples) / 1_000 / tasks


def render_flow_logging(rows: Sequence[dict[str, Any]], repeat: int) -> str:
    """One line per (shape, executor, clock): each variant's µs per task, and the ratio."""
    header = (
        f"{'shape':<8} {'tasks':>6} {'executor':<8} {'clock':<5} {'core':>7} "
        f"{'Flow log=False':>15} {'Flow, filtering INFO':>21} {'ratio':>6}"
    )
    lines = [
        "Flow with structlog filtering out INFO vs the core, same DAG "
        f"(µs per task, median of {repeat}, build + plan + execute; ratio = filtered / core)",
        header,
        "-" * len(header),
    ]
    for row in rows:
        for clock in ("wall", "cpu"):
            core = _us(row, clock, "core")
            filtered = _us(row, clock, "flow_filtered")
            lines.append(
                f"{row['shape']:<8} {row['tasks']:>6,} {row['executor']:<8} {clock:<5} "
                f"{core:>7.2f} {_us(row, clock, 'flow_nolog'):>15.2f} {filtered:>21.2f} "
                f"{filtered / core:>5.2f}x"
            )
    return "\n".join(lines)


def run(
    sizes: Sequence[int],
    shapes: Sequence[str],
    executors: Sequence[str],
    repeat: int,
    workers: int = WORKERS,
) -> list[dict[str, Any]]:
    """Measure every (size, shape, executor) with structlog configured to drop INFO (and
    restored to its defaults after), after one untimed warm-up pass."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below, after the last run
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(devnull),
    )
    try:
        for executor in executors:
            for shape_name in shapes:
                measure_flow_logging(shape_name, 200, executor, 1, workers)
        rows: list[dict[str, Any]] = []
        for n in sizes:
            for executor in executors:
                for shape_name in shapes:
                    rows.append(measure_flow_logging(shape_name, n, executor, repeat, workers))
                    print(
                        f"  measured Flow logging {shape_name}/{executor} at {n:,}",
                        file=sys.stderr,
                        flush=True,
                    )
        return rows
    finally:
        structlog.reset_defaults()
        devnull.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run this benchmark on its own and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sizes", default="1000", help="comma-separated task counts")
    parser.add_argument("--shapes", default=",".join(DEFAULT_SHAPES))
    parser.add_argument("--executors", default=",".join(EXECUTORS))
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    executors = [e.strip() for e in args.executors.split(",") if e.strip()]
    if [s for s in shapes if s not in SHAPES] or [e for e in executors if e not in EXECUTORS]:
        parser.error(f"--shapes from {', '.join(SHAPES)}; --executors from {', '.join(EXECUTORS)}")
    if min(sizes, default=0) < 3:
        parser.error("every size must be >= 3")
    rows = run(sizes, shapes, executors, args.repeat, args.workers)
    print(render_flow_logging(rows, args.repeat), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
