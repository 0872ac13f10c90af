"""Per-task costs of what a run may carry: a SQLite store, a StructlogHook, and memory.

Place: benchmarks (not collected by pytest). Each figure is measured in this process on the
lattice shape (inline executor, so the cost is ours, not a pool's): the overhead is the run's
time with the extra minus the same run without it, median of ``repeat``, µs per task. The
hook's figure is per event (two events per task). Memory is tracemalloc's retained and peak
bytes per task of one inline end-to-end run.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.core import declare, lattice
from flowplan import CallbackHook, InlineExecutor, StructlogHook, TaskGraph, execute, plan
from flowplan.store import SqliteStateStore

__all__ = ["measure_extras", "render_extras"]


class _NoopLogger:
    """A structlog-style logger that drops everything (the hook's own cost only)."""

    def info(self, event: str, **fields: Any) -> None:
        """Drop an info event."""

    def warning(self, event: str, **fields: Any) -> None:
        """Drop a warning event."""


def _drop(event: object) -> None:
    """A hook callback that ignores the event."""


def _timed(graph: TaskGraph, **options: Any) -> float:
    the_plan = plan(graph)
    gc.collect()
    t0 = time.perf_counter_ns()
    execute(the_plan, executor=InlineExecutor(), **options)
    return float(time.perf_counter_ns() - t0)


def measure_extras(tasks: int = 2_000, repeat: int = 3) -> list[dict[str, Any]]:
    """Rows of (what, µs per task or event, detail) for the extras at ``tasks`` tasks."""
    graph = TaskGraph.build(declare(lattice(tasks)))
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        def sqlite(**kw: Any) -> Callable[[], float]:
            def run() -> float:
                with SqliteStateStore(Path(tmp) / f"s{next(counter)}.db", **kw) as store:
                    return _timed(graph, store=store)

            return run

        cases: dict[str, Callable[[], float]] = {
            "none": lambda: _timed(graph),
            "sqlite durable (commit_every=1)": sqlite(),
            "sqlite batched (commit_every=100)": sqlite(commit_every=100),
            "sqlite batched (commit_every=1000)": sqlite(commit_every=1000),
            "a no-op hook (events built)": lambda: _timed(graph, hooks=[CallbackHook(_drop)]),
            "StructlogHook, no-op logger": lambda: _timed(
                graph, hooks=[StructlogHook(_NoopLogger())]
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeat):
            for name, case in cases.items():  # interleaved: load drifts hit every case alike
                samples[name].append(case())
    base = statistics.median(samples["none"])
    rows: list[dict[str, Any]] = [
        {"what": "inline execute, nothing attached", "us": base / 1_000 / tasks, "unit": "task"}
    ]
    for name, values in samples.items():
        if name == "none":
            continue
        extra = (statistics.median(values) - base) / 1_000 / tasks
        per_event = "hook" in name.lower()
        rows.append(
            {
                "what": f"+ {name}",
                "us": extra / 2 if per_event else extra,
                "unit": "event" if per_event else "task",
            }
        )
    hook_only = statistics.median(samples["StructlogHook, no-op logger"]) - statistics.median(
        samples["a no-op hook (events built)"]
    )
    rows.append(
        {
            "what": "StructlogHook itself (over a no-op hook)",
            "us": hook_only / 1_000 / tasks / 2,
            "unit": "event",
        }
    )
    rows.extend(_memory(tasks * 10))
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
    lines = [title, f"{'what':<44}{'value':>10}  unit", "-" * 62]
    lines += [f"{row['what']:<44}{row['us']:>10.1f}  {row['unit']}" for row in rows]
    return "\n".join(lines)
