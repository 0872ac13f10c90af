"""What declaring costs when every task has its own function, alone and end to end.

:mod:`benchmarks.core` declares every task with one shared ``noop``; real pipelines declare one
function per task, and a shared function hides every per-function cost behind memos. Here each
task gets a distinct function (generated with ``exec``: its own name and code object, untimed),
whose parameters are ``**deps``, and:

- **declare, @task**: ``task(name=..., depends_on=[names], registry=...)(fn)`` per task (a
  fresh registry per run), the decorator a user writes.
- **declare, TaskSpec**: ``TaskSpec(name, fn, deps=(Dependency(...),))`` per task.
- **e2e threads**: ``@task`` declaration + ``TaskGraph.build`` + ``plan`` + ``execute`` on the
  default thread pool (``--workers``), against the floor: the hand-written ``graphlib`` +
  ``ThreadPoolExecutor`` loop of :mod:`benchmarks.core` calling the same functions (its
  "declaration" is the ``dict`` of dependencies it is given).

flowing, the peer the issue quotes for declaring (2.9 µs per task), is not installable here: the
package named ``flowing`` on PyPI is an unrelated program, so no flowing figure is measured.

Every figure is µs per task, the median of ``--repeat`` runs on the clock of
:mod:`benchmarks.core` (``--clock cpu`` for this process's CPU time: steadier on a shared
machine); flowplan and its floor run alternately within each repeat, ``gc.collect()`` before
each timed run.

Run::

    python -m benchmarks.declaring                  # 1,000 and 10,000 tasks, fan-out + lattice
    python -m benchmarks.declaring --clock cpu --repeat 5 --sizes 10000
"""

from __future__ import annotations

import argparse
import functools
import gc
import graphlib
import queue
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from benchmarks import core
from benchmarks.core import SHAPES, WORKERS, Shape
from flowplan import (
    Dependency,
    Registry,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    execute,
    plan,
    task,
)

__all__ = ["distinct_functions", "measure_declaring", "render_declaring"]

DEFAULT_SHAPES: Final = ("fanout", "lattice")
FLOWING_NOTE: Final = (
    "flowing: not measured (PyPI's `flowing` is an unrelated package); issue #16 quotes 2.9 µs "
    "per task for its declaration"
)


def distinct_functions(shape: Shape) -> dict[str, Callable[..., int]]:
    """One function per task of ``shape``, each with its own name and code object."""
    out: dict[str, Callable[..., int]] = {}
    for name, _ in shape:
        namespace: dict[str, Any] = {}
        exec(f"def {name}(**deps):\n    return 0\n", namespace)  # a new code object per task
        out[name] = namespace[name]
    return out


def declare_with_task(
    shape: Shape, fns: Mapping[str, Callable[..., int]]
) -> list[TaskSpec[..., int]]:
    """``@task(name=..., depends_on=[...])`` per task, into a fresh registry."""
    registry = Registry()
    return [task(name=name, depends_on=deps, registry=registry)(fns[name]) for name, deps in shape]


def declare_with_taskspec(
    shape: Shape, fns: Mapping[str, Callable[..., int]]
) -> list[TaskSpec[..., int]]:
    """``TaskSpec(name, fn, deps=...)`` per task."""
    return [
        TaskSpec(name, fns[name], deps=tuple(Dependency(dep) for dep in deps))
        for name, deps in shape
    ]


def _notify(
    finished: queue.SimpleQueue[tuple[str, Future[int]]], node: str, future: Future[int]
) -> None:
    finished.put((node, future))


def floor_threads(
    graph: Mapping[str, tuple[str, ...]],
    fns: Mapping[str, Callable[..., int]],
    workers: int = WORKERS,
) -> dict[str, object]:
    """:func:`benchmarks.core.floor_graphlib_threads`, calling each task's own function."""
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    values: dict[str, object] = {}
    finished: queue.SimpleQueue[tuple[str, Future[int]]] = queue.SimpleQueue()
    with ThreadPoolExecutor(workers) as pool:
        while sorter.is_active():
            for node in sorter.get_ready():
                future = pool.submit(fns[node], **{dep: values[dep] for dep in graph[node]})
                future.add_done_callback(functools.partial(_notify, finished, node))
            node, done = finished.get()
            values[node] = done.result()
            sorter.done(node)
    return values


def _e2e(shape: Shape, fns: Mapping[str, Callable[..., int]], workers: int) -> int:
    specs = declare_with_task(shape, fns)
    snapshot = execute(plan(TaskGraph.build(specs)), max_workers=workers)
    return len(snapshot.by_status(TaskStatus.SUCCEEDED))


def _timed(run: Callable[[], object]) -> tuple[int, object]:
    gc.collect()
    t0 = core._now()
    result = run()
    return core._now() - t0, result


def measure_declaring(
    shape_name: str, n: int, repeat: int, workers: int = WORKERS
) -> dict[str, Any]:
    """The samples (ns per run) of every figure of ``shape_name`` at ``n`` tasks."""
    shape = SHAPES[shape_name](n)
    graph = dict(shape)
    samples: dict[str, list[int]] = {
        "declare_task": [],
        "declare_taskspec": [],
        "e2e_threads": [],
        "floor_threads": [],
    }
    for _ in range(repeat):
        fns = distinct_functions(shape)  # fresh functions each repeat: no memo carries over
        took, specs = _timed(functools.partial(declare_with_task, shape, fns))
        samples["declare_task"].append(took)
        del specs
        fns = distinct_functions(shape)
        took, specs = _timed(functools.partial(declare_with_taskspec, shape, fns))
        samples["declare_taskspec"].append(took)
        del specs
        fns = distinct_functions(shape)
        took, done = _timed(functools.partial(_e2e, shape, fns, workers))
        if done != n:
            raise RuntimeError(f"{shape_name}/{n}: {done} of {n} tasks succeeded")
        samples["e2e_threads"].append(took)
        fns = distinct_functions(shape)
        took, values = _timed(functools.partial(floor_threads, graph, fns, workers))
        if not isinstance(values, dict) or len(values) != n:
            raise RuntimeError(f"{shape_name}/{n}: the floor ran {values!r:.80}")
        samples["floor_threads"].append(took)
    return {"shape": shape_name, "tasks": n, "samples": samples}


def _us(row: Mapping[str, Any], metric: str) -> float:
    samples: list[int] = row["samples"][metric]
    tasks: int = row["tasks"]
    return statistics.median(samples) / 1_000 / tasks


def render_declaring(rows: Sequence[Mapping[str, Any]], repeat: int, workers: int) -> str:
    """The table: declaration figures, and end to end beside the floor with the ratio."""
    header = (
        f"{'shape':<8} {'tasks':>7} {'declare @task':>14} {'declare TaskSpec':>17} "
        f"{'e2e threads':>12} {'graphlib+pool':>14} {'ratio':>6}"
    )
    lines = [
        "declaring, one distinct function per task (µs per task, median of "
        f"{repeat}; threads: {workers} workers; e2e = @task + build + plan + execute)",
        header,
        "-" * len(header),
    ]
    for row in rows:
        e2e, floor = _us(row, "e2e_threads"), _us(row, "floor_threads")
        lines.append(
            f"{row['shape']:<8} {row['tasks']:>7,} {_us(row, 'declare_task'):>14.2f} "
            f"{_us(row, 'declare_taskspec'):>17.2f} {e2e:>12.2f} {floor:>14.2f} "
            f"{e2e / floor:>5.2f}x"
        )
    lines.append(FLOWING_NOTE)
    return "\n".join(lines)


def run(
    sizes: Sequence[int], shapes: Sequence[str], repeat: int, workers: int = WORKERS
) -> list[dict[str, Any]]:
    """Measure every (size, shape), after one untimed warm-up pass."""
    for shape_name in shapes:
        measure_declaring(shape_name, 200, 1, workers)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for shape_name in shapes:
            rows.append(measure_declaring(shape_name, n, repeat, workers))
            print(f"  measured declaring {shape_name} at {n:,}", file=sys.stderr, flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the declaring benchmark on its own and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated task counts")
    parser.add_argument("--shapes", default=",".join(DEFAULT_SHAPES))
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args(argv)
    core._clock = time.process_time_ns if args.clock == "cpu" else time.perf_counter_ns
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or min(sizes, default=0) < 3:
        parser.error(f"--shapes from {', '.join(SHAPES)}; every size >= 3")
    rows = run(sizes, shapes, args.repeat, args.workers)
    print(render_declaring(rows, args.repeat, args.workers), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
