"""How much does per-task cost grow from 1,000 to 100,000 tasks for *any* small Python scheduler?

Place: benchmarks (not collected by pytest). Two minimal ready-queue schedulers, written here
for this measurement only, run the core benchmark's shapes (:mod:`benchmarks.core`) with the
same no-op body, each building its own tables and then running every task:

- **names**: name-keyed dicts (predecessors, successor lists, waiting counts, results), the
  layout flowplan's graph, plan and interpreter use.
- **indices**: tasks numbered once, then lists indexed by number (predecessor numbers,
  successor lists, waiting counts, results): the "integer-indexed core" one might try next.

Neither records, validates nor observes anything, so what grows with N here is the cost of
touching per-task Python objects and tables once they outgrow the CPU caches. Automatic garbage
collection is off inside each timed run (``gc.collect()`` runs before it), so the figures show
memory traffic alone. Run: ``python -m benchmarks.scaling_floor [--sizes 1000,100000]``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import statistics
import time
from collections.abc import Callable, Sequence

from benchmarks.core import SHAPES, Shape, noop

__all__ = ["by_indices", "by_names", "main"]


def by_names(shape: Shape) -> int:
    """Run ``shape`` with name-keyed dicts; return the number of tasks run."""
    preds = dict(shape)
    succs: dict[str, list[str]] = {name: [] for name, _ in shape}
    for name, deps in shape:
        for dep in deps:
            succs[dep].append(name)
    waiting = {name: len(deps) for name, deps in shape}
    results: dict[str, object] = {}
    ready = collections.deque(name for name, deps in shape if not deps)
    while ready:
        name = ready.popleft()
        results[name] = noop(**{dep: results[dep] for dep in preds[name]})
        for succ in succs[name]:
            waiting[succ] -= 1
            if waiting[succ] == 0:
                ready.append(succ)
    return len(results)


def by_indices(shape: Shape) -> int:
    """Run ``shape`` with tasks numbered once and lists indexed by number."""
    number = {name: i for i, (name, _) in enumerate(shape)}
    dep_names = [deps for _, deps in shape]
    preds = [tuple(number[dep] for dep in deps) for deps in dep_names]
    succs: list[list[int]] = [[] for _ in shape]
    for i, upstream in enumerate(preds):
        for dep in upstream:
            succs[dep].append(i)
    waiting = [len(upstream) for upstream in preds]
    results: list[object] = [None] * len(shape)
    ready = collections.deque(i for i, upstream in enumerate(preds) if not upstream)
    done = 0
    while ready:
        i = ready.popleft()
        values = {name: results[j] for name, j in zip(dep_names[i], preds[i], strict=True)}
        results[i] = noop(**values)
        done += 1
        for succ in succs[i]:
            waiting[succ] -= 1
            if waiting[succ] == 0:
                ready.append(succ)
    return done


RUNNERS: dict[str, Callable[[Shape], int]] = {"names": by_names, "indices": by_indices}


def measure(runner: Callable[[Shape], int], shape: Shape, repeat: int) -> float:
    """The median µs per task of ``repeat`` runs, automatic collection off inside each."""
    samples: list[float] = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            ran = runner(shape)
            samples.append((time.perf_counter_ns() - start) / 1_000 / len(shape))
        finally:
            gc.enable()
        if ran != len(shape):
            raise RuntimeError(f"{runner.__name__}: ran {ran} of {len(shape)} tasks")
    return statistics.median(samples)


def main(argv: Sequence[str] | None = None) -> int:
    """Print µs per task at each size and the growth from the smallest size to each other."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,100000", help="comma-separated task counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    print(f"{'shape':<9}{'scheduler':<10}" + "".join(f"{n:>12,}" for n in sizes) + "   growth")
    for shape_name, make in SHAPES.items():
        for runner_name, runner in RUNNERS.items():
            figures = [measure(runner, make(n), args.repeat) for n in sizes]
            row = "".join(f"{f:>12.2f}" for f in figures)
            print(f"{shape_name:<9}{runner_name:<10}{row}   {figures[-1] / figures[0]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
