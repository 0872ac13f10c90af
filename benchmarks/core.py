"""Core benchmark: flowplan's per-task overhead on no-op DAGs, against two hand-written floors.

What is measured (every figure is wall time per task in µs, the median of ``--repeat`` runs,
``time.perf_counter_ns``, ``gc.collect()`` before each timed run, GC left enabled inside it
(``--gc off`` disables automatic collection for the core figures, to separate its cost);
``--clock cpu`` measures this process's CPU time instead, ``time.process_time_ns`` — steadier
on a shared machine, and for thread runs the CPU of every thread, i.e. cost rather than
latency):

- **declare**: building the ``TaskSpec`` values (``TaskSpec(name, fn, deps=(Dependency(...),))``
  with one shared ``def noop(**deps)``); not part of *e2e*.
- **graph build**: ``TaskGraph.build(specs)`` (validation, topological order).
- **plan()**: ``plan(graph)`` for a fresh run.
- **resume plan()**: ``plan(graph, snapshot)`` from the snapshot of a complete run (all reused).
- **execute**: ``execute(plan, executor=InlineExecutor())`` (*inline*) and
  ``execute(plan, max_workers=8)`` — the default thread pool, created and shut down inside the
  call (*threads*).
- **e2e**: ``TaskGraph.build`` + ``plan`` + ``execute`` from already-declared specs.

Then :mod:`benchmarks.declaring`: declaring with one distinct function per task, and end to end
(declare + build + plan + execute on threads) beside the ``graphlib`` + pool floor (fan-out and
lattice); and :mod:`benchmarks.flow_logging`: ``Flow`` under a logger filtering out INFO beside
the core on the same DAG (sizes up to 10,000).

*graph build* and *plan()* are timed in both the inline and the threads pipelines, so their
medians are over twice ``--repeat`` runs. An untimed warm-up pass runs every path first.

Shapes (no-op tasks that receive their dependencies' values as keyword arguments):

- ``chain``: ``t0 → t1 → … → t(n-1)``.
- ``fanout``: one root → ``n - 2`` leaves → one sink that receives every leaf.
- ``lattice``: layers of 100 tasks; each task depends on 2 or 3 tasks of the previous layer.

Floors, on the same shapes and the same ``noop``:

- **calls**: plain function calls in topological order, each with its dependencies' values as
  keyword arguments — the cost of the work itself.
- **graphlib**: a hand-written ``graphlib.TopologicalSorter`` runner (the standard
  ``get_ready`` / run / ``done`` loop), inline for the *inline* rows and over
  ``ThreadPoolExecutor(--workers)`` (default 8; completion queue fed by done-callbacks) for
  the *threads* rows.

The ratio columns divide flowplan's median by a floor's (1.0 = no overhead). ``--json PATH``
also writes every sample (ns), the fastest run per task, the ratios and a description of the
machine (CPU count, Python, platform, load average); on a busy machine the fastest runs are
the steadier figures to compare.

Run from the repository root, with the package installed (``pip install -e .``)::

    python -m benchmarks                      # 1,000 and 10,000 tasks, 3 repeats
    python -m benchmarks --quick              # 1,000 tasks only (CI smoke run)
    python -m benchmarks --large              # adds 100,000 tasks
    python -m benchmarks --sizes 10000,50000  # explicit sizes
    python -m benchmarks --repeat 5 --json results.json --shapes chain,lattice
    python -m benchmarks --profile chain:10000:inline   # cProfile of one e2e run, by tottime

``python -m benchmarks.core`` is the same program.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import graphlib
import importlib.metadata
import io
import json
import os
import platform
import pstats
import queue
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import attrs

from flowplan import (
    Dependency,
    InlineExecutor,
    Plan,
    Snapshot,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    execute,
    plan,
)

__all__ = ["SHAPES", "Case", "chain", "fanout", "lattice", "main", "measure"]

Shape: TypeAlias = tuple[tuple[str, tuple[str, ...]], ...]
"""A DAG as ``(name, dependency names)`` pairs, in topological order."""
ExecutorName: TypeAlias = Literal["inline", "threads"]

EXECUTORS: Final[tuple[ExecutorName, ...]] = ("inline", "threads")
WORKERS: Final = 8
LATTICE_WIDTH: Final = 100
EXTRAS_TASKS: Final = 2_000
"""Tasks of the extras run (SQLite store, StructlogHook; memory at 10 times this)."""
DEFAULT_SIZES: Final = (1_000, 10_000)
LARGE_SIZE: Final = 100_000


def noop(**deps: object) -> int:
    """The task body: receives its dependencies' values, does nothing, returns 0."""
    return 0


# -- shapes ---------------------------------------------------------------------------------


def chain(n: int) -> Shape:
    """``t0 → t1 → … → t(n-1)``."""
    return tuple((f"t{i}", (f"t{i - 1}",) if i else ()) for i in range(n))


def fanout(n: int) -> Shape:
    """One root → ``n - 2`` leaves → one sink receiving every leaf (``n >= 3``)."""
    if n < 3:
        raise ValueError(f"a fan-out needs at least 3 tasks, got {n}")
    leaves = tuple(f"leaf{i}" for i in range(n - 2))
    return (("root", ()), *((leaf, ("root",)) for leaf in leaves), ("sink", leaves))


def lattice(n: int, width: int = LATTICE_WIDTH) -> Shape:
    """Layers of ``width`` tasks; task ``j`` of a layer depends on tasks ``j``, ``j + 1`` and
    (for even ``j``) ``j + width / 2`` of the previous layer, modulo ``width`` — 2 or 3 edges."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for i in range(n):
        layer, j = divmod(i, width)
        if layer == 0:
            out.append((f"l0_{j}", ()))
            continue
        picks = [j, (j + 1) % width]
        if j % 2 == 0:
            picks.append((j + width // 2) % width)
        out.append((f"l{layer}_{j}", tuple(f"l{layer - 1}_{p}" for p in dict.fromkeys(picks))))
    return tuple(out)


SHAPES: Final[Mapping[str, Callable[[int], Shape]]] = {
    "chain": chain,
    "fanout": fanout,
    "lattice": lattice,
}


def declare(shape: Shape) -> list[TaskSpec[..., int]]:
    """One ``TaskSpec`` per task of ``shape``, built directly (no registry involved)."""
    return [
        TaskSpec(name, noop, deps=tuple(Dependency(dep) for dep in deps)) for name, deps in shape
    ]


# -- floors ---------------------------------------------------------------------------------


def floor_calls(shape: Shape) -> dict[str, object]:
    """Plain calls in topological order, each receiving its dependencies' values."""
    values: dict[str, object] = {}
    for name, deps in shape:
        values[name] = noop(**{dep: values[dep] for dep in deps})
    return values


def floor_graphlib_inline(graph: Mapping[str, tuple[str, ...]]) -> dict[str, object]:
    """The standard ``graphlib`` loop, running each ready task at once in this thread."""
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    values: dict[str, object] = {}
    while sorter.is_active():
        for node in sorter.get_ready():
            values[node] = noop(**{dep: values[dep] for dep in graph[node]})
            sorter.done(node)
    return values


def _notify(
    finished: queue.SimpleQueue[tuple[str, Future[int]]], node: str, future: Future[int]
) -> None:
    finished.put((node, future))


def floor_graphlib_threads(
    graph: Mapping[str, tuple[str, ...]], workers: int = WORKERS
) -> dict[str, object]:
    """The standard ``graphlib`` loop over a ``ThreadPoolExecutor``: submit what is ready,
    block on a completion queue (fed by done-callbacks), mark done, repeat."""
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    values: dict[str, object] = {}
    finished: queue.SimpleQueue[tuple[str, Future[int]]] = queue.SimpleQueue()
    with ThreadPoolExecutor(workers) as pool:
        while sorter.is_active():
            for node in sorter.get_ready():
                future = pool.submit(noop, **{dep: values[dep] for dep in graph[node]})
                future.add_done_callback(functools.partial(_notify, finished, node))
            node, done = finished.get()
            values[node] = done.result()
            sorter.done(node)
    return values


# -- flowplan -------------------------------------------------------------------------------


def run_plan(the_plan: Plan, executor: ExecutorName, workers: int = WORKERS) -> Snapshot:
    """``execute`` on the inline executor or on the default thread pool."""
    if executor == "inline":
        return execute(the_plan, executor=InlineExecutor())
    return execute(the_plan, max_workers=workers)


def _check_snapshot(snapshot: Snapshot, n: int, what: str) -> None:
    succeeded = len(snapshot.by_status(TaskStatus.SUCCEEDED))
    if succeeded != n:
        raise RuntimeError(f"{what}: expected {n} succeeded tasks, got {succeeded}")


def _check_values(values: Mapping[str, object], n: int, what: str) -> None:
    if len(values) != n:
        raise RuntimeError(f"{what}: expected {n} results, got {len(values)}")


# -- measuring ------------------------------------------------------------------------------

METRICS: Final = (
    "declare",
    "graph_build",
    "plan",
    "resume_plan",
    "inline_execute",
    "inline_e2e",
    "threads_execute",
    "threads_e2e",
    "floor_calls",
    "floor_graphlib_inline",
    "floor_graphlib_threads",
)


@attrs.define
class Case:
    """The samples (nanoseconds per run) of one shape at one size."""

    shape: str
    tasks: int
    samples: dict[str, list[int]] = attrs.field(factory=lambda: {m: [] for m in METRICS})

    def median_us(self, metric: str) -> float:
        """The median run of ``metric``, in µs per task."""
        return statistics.median(self.samples[metric]) / 1_000 / self.tasks

    def min_us(self, metric: str) -> float:
        """The fastest run of ``metric``, in µs per task."""
        return min(self.samples[metric]) / 1_000 / self.tasks


_clock: Callable[[], int] = time.perf_counter_ns
"""The clock of every figure: wall (default) or this process's CPU time (``--clock cpu``)."""


def _now() -> int:
    return _clock()


def warm_up(workers: int = WORKERS) -> None:
    """One untimed pass over every code path on small graphs (imports, caches, first calls)."""
    for shape_name in SHAPES:
        measure(shape_name, 2 * LATTICE_WIDTH, 1, workers)


def measure(shape_name: str, n: int, repeat: int, workers: int = WORKERS) -> Case:
    """Time every metric of ``shape_name`` at ``n`` tasks, ``repeat`` times."""
    shape = SHAPES[shape_name](n)
    graph_map = dict(shape)
    case = Case(shape_name, n)
    samples = case.samples
    for _ in range(repeat):
        gc.collect()
        t0 = _now()
        specs = declare(shape)
        samples["declare"].append(_now() - t0)
        snapshot: Snapshot | None = None
        graph: TaskGraph | None = None
        for executor in EXECUTORS:
            snapshot = graph = None
            gc.collect()
            t0 = _now()
            graph = TaskGraph.build(specs)
            t1 = _now()
            fresh = plan(graph)
            t2 = _now()
            snapshot = run_plan(fresh, executor, workers)
            t3 = _now()
            del fresh
            _check_snapshot(snapshot, n, f"{shape_name}/{n}/{executor}")
            samples["graph_build"].append(t1 - t0)
            samples["plan"].append(t2 - t1)
            samples[f"{executor}_execute"].append(t3 - t2)
            samples[f"{executor}_e2e"].append(t3 - t0)
        assert graph is not None
        assert snapshot is not None
        gc.collect()
        t0 = _now()
        resumed = plan(graph, snapshot)
        samples["resume_plan"].append(_now() - t0)
        if resumed.to_run:
            raise RuntimeError(f"{shape_name}/{n}: resume planned {len(resumed.to_run)} runs")
        del resumed, snapshot, graph, specs
        floors: tuple[tuple[str, Callable[[], Mapping[str, object]]], ...] = (
            ("floor_calls", lambda: floor_calls(shape)),
            ("floor_graphlib_inline", lambda: floor_graphlib_inline(graph_map)),
            ("floor_graphlib_threads", lambda: floor_graphlib_threads(graph_map, workers)),
        )
        for metric, floor in floors:
            gc.collect()
            t0 = _now()
            values = floor()
            samples[metric].append(_now() - t0)
            _check_values(values, n, f"{shape_name}/{n}/{metric}")
            del values
    return case


# -- reporting ------------------------------------------------------------------------------


def _ratios(case: Case) -> list[dict[str, Any]]:
    return [
        {
            "shape": case.shape,
            "tasks": case.tasks,
            "executor": executor,
            "measure": measure_,
            "floor": floor,
            "ratio": case.median_us(f"{executor}_{measure_}") / case.median_us(floor),
        }
        for executor in EXECUTORS
        for measure_ in ("e2e", "execute")
        for floor in ("floor_calls", f"floor_graphlib_{executor}")
    ]


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        title,
        "  ".join(
            h.rjust(w) if i > 1 else h.ljust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        ),
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = (
            c.rjust(w) if i > 1 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        lines.append("  ".join(cells))
    return "\n".join(lines)


def render(cases: Sequence[Case], repeat: int, workers: int) -> str:
    """The readable report: planning, floors and execution tables."""
    planning = [
        [c.shape, f"{c.tasks:,}"]
        + [_fmt(c.median_us(m)) for m in ("declare", "graph_build", "plan", "resume_plan")]
        for c in cases
    ]
    floors = [
        [c.shape, f"{c.tasks:,}"]
        + [
            _fmt(c.median_us(m))
            for m in ("floor_calls", "floor_graphlib_inline", "floor_graphlib_threads")
        ]
        for c in cases
    ]
    execution: list[list[str]] = []
    for c in cases:
        calls = c.median_us("floor_calls")
        for executor in EXECUTORS:
            e2e = c.median_us(f"{executor}_e2e")
            exe = c.median_us(f"{executor}_execute")
            glib = c.median_us(f"floor_graphlib_{executor}")
            execution.append(
                [c.shape, f"{c.tasks:,}", executor, _fmt(e2e), _fmt(exe)]
                + [f"{x:.1f}x" for x in (e2e / calls, exe / calls, e2e / glib, exe / glib)]
            )
    clock = "CPU" if _clock is time.process_time_ns else "wall"
    note = f"µs per task ({clock} time), median of {repeat}"
    return "\n\n".join(
        [
            _table(
                f"Planning ({note})",
                ["shape", "tasks", "declare", "graph build", "plan()", "resume plan()"],
                planning,
            ),
            _table(
                f"Floors ({note})",
                ["shape", "tasks", "calls", "graphlib inline", f"graphlib+pool({workers})"],
                floors,
            ),
            _table(
                f"flowplan execution ({note}; e2e = build + plan + execute; threads = "
                f"execute(plan, max_workers={workers}); graphlib floor matches the executor)",
                [
                    "shape",
                    "tasks",
                    "executor",
                    "e2e",
                    "execute",
                    "e2e/calls",
                    "exec/calls",
                    "e2e/graphlib",
                    "exec/graphlib",
                ],
                execution,
            ),
        ]
    )


def machine() -> dict[str, Any]:
    """A description of the machine and interpreter the numbers come from."""
    try:
        version = importlib.metadata.version("flowplan")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        version = "unknown"
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "flowplan": version,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def to_json(cases: Sequence[Case], *, repeat: int, workers: int) -> dict[str, Any]:
    """Every sample, median and ratio as a JSON-ready document."""
    results = [
        {
            "shape": c.shape,
            "tasks": c.tasks,
            "metric": metric,
            "median_us_per_task": c.median_us(metric),
            "min_us_per_task": c.min_us(metric),
            "samples_ns": list(c.samples[metric]),
        }
        for c in cases
        for metric in METRICS
    ]
    return {
        "benchmark": "benchmarks.core",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "clock": "cpu" if _clock is time.process_time_ns else "wall",
            "repeat": repeat,
            "workers": workers,
            "lattice_width": LATTICE_WIDTH,
            "cases": [{"shape": c.shape, "tasks": c.tasks} for c in cases],
        },
        "results": results,
        "ratios": [r for c in cases for r in _ratios(c)],
    }


# -- profiling ------------------------------------------------------------------------------


def profile(spec: str, top: int, workers: int = WORKERS) -> str:
    """cProfile one e2e run (``TaskGraph.build`` + ``plan`` + ``execute``), sorted by tottime.

    Args:
        spec: ``SHAPE:TASKS[:EXECUTOR]``, e.g. ``chain:10000:inline`` (executor defaults to
            ``inline``).
        top: how many functions to list.
        workers: the thread pool's size for ``threads``.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SHAPES:
        raise SystemExit(f"--profile expects SHAPE:TASKS[:EXECUTOR], got {spec!r}")
    given = parts[2] if len(parts) == 3 else "inline"
    if given not in EXECUTORS:
        raise SystemExit(f"--profile: executor must be one of {EXECUTORS}, got {given!r}")
    executor: ExecutorName = "threads" if given == "threads" else "inline"
    n = int(parts[1])
    specs = declare(SHAPES[parts[0]](n))
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    snapshot = run_plan(plan(TaskGraph.build(specs)), executor, workers)
    profiler.disable()
    _check_snapshot(snapshot, n, spec)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="flowplan core overhead per task vs plain calls and a graphlib runner.",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1,000 tasks only (CI smoke)")
    size.add_argument("--large", action="store_true", help="add 100,000 tasks")
    size.add_argument(
        "--sizes", metavar="N[,N...]", help="explicit task counts, e.g. 10000 or 1000,50000"
    )
    parser.add_argument(
        "--shapes",
        default=",".join(SHAPES),
        help=f"comma-separated subset of {', '.join(SHAPES)} (default: all)",
    )
    parser.add_argument("--workers", type=int, default=WORKERS, help="thread pool size")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="core figures in wall time (default) or in this process's CPU time",
    )
    parser.add_argument(
        "--gc",
        choices=("on", "off"),
        default="on",
        help="off: the core figures with automatic garbage collection disabled (gc.collect() "
        "still runs before each timed run) — separates collector cost from the rest",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    parser.add_argument(
        "--profile",
        metavar="SHAPE:TASKS[:EXECUTOR]",
        help="instead of benchmarking, cProfile one e2e run, e.g. chain:10000:inline",
    )
    parser.add_argument("--top", type=int, default=15, help="functions listed by --profile")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the peer comparison (benchmarks.peers)"
    )
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help="skip the SQLite store / StructlogHook / memory figures (benchmarks.extras)",
    )
    parser.add_argument(
        "--no-imports",
        action="store_true",
        help="skip the import-time table (benchmarks.imports)",
    )
    parser.add_argument(
        "--peer-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="time limit per peer case; slower ones are reported as too slow (default 60)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables (and write JSON with ``--json``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.workers < 1:
        parser.error("--repeat and --workers must be >= 1")
    if args.profile:
        print(profile(args.profile, args.top, args.workers))
        return 0
    global _clock
    _clock = time.process_time_ns if args.clock == "cpu" else time.perf_counter_ns
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not shapes:
        parser.error(f"--shapes: unknown {unknown}; choose from {', '.join(SHAPES)}")
    sizes: tuple[int, ...] = DEFAULT_SIZES
    if args.quick:
        sizes = (1_000,)
    elif args.large:
        sizes = (*DEFAULT_SIZES, LARGE_SIZE)
    elif args.sizes:
        try:
            sizes = tuple(int(n) for n in args.sizes.split(",") if n.strip())
        except ValueError:
            parser.error(f"--sizes expects comma-separated integers, got {args.sizes!r}")
        if not sizes or min(sizes) < 3:
            parser.error("--sizes: every size must be >= 3 (a fan-out needs 3 tasks)")
    warm_up(args.workers)
    cases: list[Case] = []
    if args.gc == "off":
        gc.disable()
    try:
        for n in sizes:
            for shape in shapes:
                started = time.perf_counter()
                cases.append(measure(shape, n, args.repeat, args.workers))
                print(
                    f"  measured {shape} at {n:,} tasks in {time.perf_counter() - started:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        gc.enable()
    info = machine()
    print(
        f"flowplan {info['flowplan']} · Python {platform.python_version()} "
        f"({info['implementation']}) · {info['platform']} · {info['cpu_count']} CPUs\n"
    )
    print(render(cases, args.repeat, args.workers))
    from benchmarks import declaring  # one distinct function per task: declare, and e2e

    declaring_rows = declaring.run(
        sizes, [s for s in shapes if s in declaring.DEFAULT_SHAPES], args.repeat, args.workers
    )
    print()
    print(declaring.render_declaring(declaring_rows, args.repeat, args.workers))
    from benchmarks import flow_logging  # Flow under a logger filtering out INFO vs the core

    flow_rows = flow_logging.run(
        [n for n in sizes if n <= 10_000],
        [s for s in shapes if s in flow_logging.DEFAULT_SHAPES],
        flow_logging.EXECUTORS,
        args.repeat,
        args.workers,
    )
    print()
    print(flow_logging.render_flow_logging(flow_rows, args.repeat))
    extra_rows: list[dict[str, Any]] = []
    if not args.no_extras:
        from benchmarks import extras

        extra_rows = extras.measure_extras_isolated(EXTRAS_TASKS, args.repeat)  # fresh heap
        print()
        print(extras.render_extras(extra_rows, EXTRAS_TASKS, args.repeat))
    import_rows: list[dict[str, Any]] = []
    if not args.no_imports:
        from benchmarks import imports

        import_repeat = max(args.repeat, 5)  # one interpreter per sample: noisy
        import_rows = imports.measure_imports(import_repeat)
        print()
        print(imports.render_imports(import_rows, import_repeat))
    peer_rows: list[dict[str, Any]] = []
    if not args.no_peers:
        from benchmarks import peers

        peer_rows = peers.run_matrix(
            sizes, shapes, repeat=args.repeat, workers=args.workers, timeout=args.peer_timeout
        )
        print()
        print(peers.render(peer_rows, args.repeat, args.workers))
    if args.json is not None:
        document = to_json(cases, repeat=args.repeat, workers=args.workers)
        document["peers"] = peer_rows
        document["extras"] = extra_rows
        document["declaring"] = declaring_rows
        document["flow_logging"] = flow_rows
        document["imports"] = import_rows
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
