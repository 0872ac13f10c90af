"""Per-task costs of what a run may carry: a SQLite store, hooks (structlog, OpenTelemetry), memory.

Place: benchmarks (not collected by pytest). Each figure is measured on the lattice shape
(inline executor, so the cost is ours, not a pool's): the overhead is the run's time with the
extra minus the same run without it, median of ``repeat``, µs per task, as wall time
(``perf_counter``) and as this process's CPU time (``process_time``: steadier on a shared
machine; for the SQLite store, wall minus CPU is time spent waiting, e.g. for the disk). The
hook's figure is per event (two events per task). Memory is tracemalloc's retained and peak
bytes per task of one inline end-to-end run, and the peak of a chain of ``tasks`` and of
``4 * tasks`` tasks each returning a fresh 100 KB value with ``retain_result=False``, inline and
on threads: released values keep it flat in the chain's length on both drivers.

``python -m benchmarks`` measures the extras in a child process of their own
(:func:`measure_extras_isolated`, i.e. ``python -m benchmarks.extras``), as each peer runs in
its own: after the 100,000-task cases the parent's heap is large and fragmented, and every
figure measured there (the bare run included) came out about twice as high.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider

from benchmarks.core import declare, lattice
from flowplan import (
    CallbackHook,
    Dependency,
    InlineExecutor,
    StructlogHook,
    TaskGraph,
    TaskSpec,
    execute,
    plan,
)
from flowplan.observe import OpenTelemetryHook
from flowplan.store import SqliteStateStore

__all__ = ["measure_extras", "measure_extras_isolated", "render_extras"]


class _NoopLogger:
    """A structlog-style logger that drops everything (the hook's own cost only)."""

    def info(self, event: str, **fields: Any) -> None:
        """Drop an info event."""

    def warning(self, event: str, **fields: Any) -> None:
        """Drop a warning event."""


def _drop(event: object) -> None:
    """A hook callback that ignores the event."""


def _timed(graph: TaskGraph, **options: Any) -> tuple[float, float]:
    """(wall ns, CPU ns) of one inline execution of a fresh plan of ``graph``."""
    the_plan = plan(graph)
    gc.collect()
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    execute(the_plan, executor=InlineExecutor(), **options)
    return float(time.perf_counter_ns() - t0), float(time.process_time_ns() - c0)


def measure_extras(tasks: int = 2_000, repeat: int = 3) -> list[dict[str, Any]]:
    """Rows of (what, µs per task or event, detail) for the extras at ``tasks`` tasks."""
    graph = TaskGraph.build(declare(lattice(tasks)))
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        def sqlite(**kw: Any) -> Callable[[], tuple[float, float]]:
            def run() -> tuple[float, float]:
                with SqliteStateStore(Path(tmp) / f"s{next(counter)}.db", **kw) as store:
                    return _timed(graph, store=store)

            return run

        cases: dict[str, Callable[[], tuple[float, float]]] = {
            "none": lambda: _timed(graph),
            "sqlite durable (commit_every=1)": sqlite(),
            "sqlite batched (commit_every=100)": sqlite(commit_every=100),
            "sqlite batched (commit_every=1000)": sqlite(commit_every=1000),
            "a no-op hook (events built)": lambda: _timed(graph, hooks=[CallbackHook(_drop)]),
            "StructlogHook, no-op logger": lambda: _timed(
                graph, hooks=[StructlogHook(_NoopLogger())]
            ),
            "OpenTelemetryHook, no-op providers": lambda: _timed(
                graph, hooks=[OpenTelemetryHook(NoOpTracerProvider(), NoOpMeterProvider())]
            ),
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(repeat):
            for name, case in cases.items():  # interleaved: load drifts hit every case alike
                samples[name].append(case())

    def median(name: str, which: int) -> float:
        return statistics.median(sample[which] for sample in samples[name]) / 1_000 / tasks

    rows: list[dict[str, Any]] = [
        {
            "what": "inline execute, nothing attached",
            "us": median("none", 0),
            "cpu_us": median("none", 1),
            "unit": "task",
        }
    ]
    for name in samples:
        if name == "none":
            continue
        per = 2 if "hook" in name.lower() else 1  # two events per task
        rows.append(
            {
                "what": f"+ {name}",
                "us": (median(name, 0) - median("none", 0)) / per,
                "cpu_us": (median(name, 1) - median("none", 1)) / per,
                "unit": "event" if per == 2 else "task",
            }
        )
    hook, noop = "StructlogHook, no-op logger", "a no-op hook (events built)"
    rows.append(
        {
            "what": "StructlogHook itself (over a no-op hook)",
            "us": (median(hook, 0) - median(noop, 0)) / 2,
            "cpu_us": (median(hook, 1) - median(noop, 1)) / 2,
            "unit": "event",
        }
    )
    otel = "OpenTelemetryHook, no-op providers"
    rows.append(
        {
            "what": "OpenTelemetryHook itself (over a no-op hook)",
            "us": (median(otel, 0) - median(noop, 0)) / 2,
            "cpu_us": (median(otel, 1) - median(noop, 1)) / 2,
            "unit": "event",
        }
    )
    rows.extend(_memory(tasks * 10))
    rows.extend(_released_memory(tasks))
    return rows


_VALUE_BYTES = 100_000


def _fresh_value(**_: object) -> bytes:
    return bytes(_VALUE_BYTES)


def _released_memory(tasks: int) -> list[dict[str, Any]]:
    """Peak MB of released-value chains of ``tasks`` and ``4 * tasks``, inline and threads."""
    rows: list[dict[str, Any]] = []
    for driver in ("inline", "threads"):
        for n in (tasks, 4 * tasks):
            specs = [TaskSpec("v0", _fresh_value, retain_result=False)]
            specs += [
                TaskSpec(
                    f"v{i}", _fresh_value, deps=(Dependency(f"v{i - 1}"),), retain_result=False
                )
                for i in range(1, n)
            ]
            the_plan = plan(TaskGraph.build(specs))
            gc.collect()
            tracemalloc.start()
            try:
                execute(the_plan, executor=InlineExecutor() if driver == "inline" else None)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            what = f"peak, chain of {n:,} released 100 KB, {driver}"
            rows.append({"what": what, "us": peak / 1e6, "unit": "MB"})
    return rows


def _memory(tasks: int) -> list[dict[str, Any]]:
    specs = declare(lattice(tasks))
    gc.collect()
    tracemalloc.start()
    try:
        snapshot = execute(plan(TaskGraph.build(specs)), executor=InlineExecutor())
        gc.collect()
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del snapshot
    return [
        {"what": f"memory retained ({tasks:,} tasks)", "us": retained / tasks, "unit": "B/task"},
        {"what": f"memory peak ({tasks:,} tasks)", "us": peak / tasks, "unit": "B/task"},
    ]


def render_extras(rows: Sequence[dict[str, Any]], tasks: int, repeat: int) -> str:
    """The extras as a small table."""
    title = (
        f"Extras (lattice {tasks:,} tasks, inline; overhead over a bare run, median of {repeat}; "
        "memory: tracemalloc, specs excluded)"
    )
    lines = [title, f"{'what':<44}{'wall':>10}{'cpu':>8}  unit", "-" * 70]
    for row in rows:
        cpu = row.get("cpu_us")
        cpu_text = "" if cpu is None else f"{cpu:.1f}"
        lines.append(f"{row['what']:<44}{row['us']:>10.1f}{cpu_text:>8}  {row['unit']}")
    return "\n".join(lines)


def measure_extras_isolated(tasks: int = 2_000, repeat: int = 3) -> list[dict[str, Any]]:
    """:func:`measure_extras` in a fresh child process (``python -m benchmarks.extras``)."""
    command = [sys.executable, "-m", "benchmarks.extras", "--tasks", str(tasks)]
    done = subprocess.run(
        [*command, "--repeat", str(repeat)], capture_output=True, text=True, check=True
    )
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print :func:`measure_extras`' rows as JSON (what :func:`measure_extras_isolated` reads)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=2_000, help="lattice size")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args(argv)
    print(json.dumps(measure_extras(args.tasks, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
