"""flowplan beside its peers, on the same workloads, in one run.

Every runner builds and runs the same DAG of no-op bodies (each receives its dependencies'
values as keyword arguments) and is timed end to end: building the peer's graph objects from
already-declared functions, plus running them. Each (runner, workload, size) runs in a child
process (``python -m benchmarks.peers --one ...``) with a time limit, so a slow peer is reported
as ``too slow (> X s)`` and a missing one as ``missing`` instead of blocking the run.

Runners:

- ``calls``: plain calls in topological order (the floor of the work itself).
- ``graphlib+pool``: hand-written ``graphlib.TopologicalSorter`` + ``ThreadPoolExecutor``.
- ``layered+pool``: a small re-implementation of flowing's strategy (written here, not copied):
  group tasks into dependency layers, run each layer on a new ``ThreadPoolExecutor``, wait.
- ``flowplan inline`` / ``flowplan threads``: ``TaskGraph.build`` + ``plan`` + ``execute``.
- ``dask.delayed``: ``dask.delayed`` objects computed with ``scheduler="threads"``.
- ``pipefunc``: a ``Pipeline`` of ``PipeFunc`` objects, ``Pipeline.run`` (sequential).
- ``hamilton``: a Hamilton ``Driver`` over a generated module, ``execute`` (sequential).
- ``flowrun``: flowrun-dag (needs Python >= 3.12: reported missing on older interpreters).

Workloads: ``chain``, ``fanout``, ``lattice`` (see :mod:`benchmarks.core`), ``sleep`` (64
independent tasks of 10 ms on 8 workers; ideal 80 ms) and ``large`` (a chain of 50 tasks, each
returning a fresh 4 MB ``bytes``; reports peak traced memory, flowplan with
``retain_result=False``).
"""

from __future__ import annotations

import argparse
import gc
import graphlib
import importlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Final

from benchmarks.core import SHAPES, WORKERS, Shape
from flowplan import (
    Dependency,
    InlineExecutor,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    execute,
    plan,
)

__all__ = ["RUNNERS", "WORKLOADS", "run_matrix", "run_one"]

SLEEP_TASKS: Final = 64
SLEEP_S: Final = 0.010
LARGE_TASKS: Final = 50
LARGE_BYTES: Final = 4 * 1024 * 1024


def _sleep_shape(n: int) -> Shape:
    return tuple((f"s{i}", ()) for i in range(n))


def _large_shape(n: int) -> Shape:
    return tuple((f"t{i}", (f"t{i - 1}",) if i else ()) for i in range(n))


WORKLOADS: Final[Mapping[str, Callable[[int], Shape]]] = {
    **SHAPES,
    "sleep": _sleep_shape,
    "large": _large_shape,
}


def _body(workload: str) -> Callable[..., object]:
    if workload == "sleep":

        def sleeper(**deps: object) -> int:
            time.sleep(SLEEP_S)
            return 0

        return sleeper
    if workload == "large":

        def big(**deps: object) -> bytes:
            return bytes(LARGE_BYTES)

        return big

    def noop(**deps: object) -> int:
        return 0

    return noop


def _named_functions(shape: Shape, workload: str) -> list[Callable[..., object]]:
    """One function per task whose parameters are its dependencies (pipefunc, Hamilton)."""
    kind = {"sleep": ("int", "time.sleep(0.01); return 0"), "large": ("bytes", None)}.get(
        workload, ("int", "return 0")
    )
    ret, body = kind
    body = body or f"return bytes({LARGE_BYTES})"
    out: list[Callable[..., object]] = []
    for name, deps in shape:
        params = ", ".join(f"{d}: {ret}" for d in deps)
        namespace: dict[str, Any] = {"time": time}
        exec(f"def {name}({params}) -> {ret}:\n    {body}\n", namespace)
        out.append(namespace[name])
    return out


# -- runners: each returns how many task results it produced --------------------------------


def _calls(shape: Shape, body: Callable[..., object], workers: int) -> int:
    values: dict[str, object] = {}
    for name, deps in shape:
        values[name] = body(**{d: values[d] for d in deps})
    return len(values)


def _graphlib_pool(shape: Shape, body: Callable[..., object], workers: int) -> int:
    graph = dict(shape)
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    values: dict[str, object] = {}
    count = 0
    with ThreadPoolExecutor(workers) as pool:
        pending: dict[Any, str] = {}
        while sorter.is_active():
            for node in sorter.get_ready():
                future = pool.submit(body, **{d: values[d] for d in graph[node]})
                pending[future] = node
            done, _ = wait(pending, return_when="FIRST_COMPLETED")
            for future in done:
                node = pending.pop(future)
                values[node] = future.result()
                count += 1
                sorter.done(node)
    return count


def _layered_pool(shape: Shape, body: Callable[..., object], workers: int) -> int:
    """flowing's strategy: dependency layers, a new thread pool per layer, wait per layer."""
    depth: dict[str, int] = {}
    layers: list[list[str]] = []
    graph = dict(shape)
    for name, deps in shape:  # topological order
        level = 1 + max((depth[d] for d in deps), default=-1)
        depth[name] = level
        if level == len(layers):
            layers.append([])
        layers[level].append(name)
    values: dict[str, object] = {}
    for layer in layers:
        with ThreadPoolExecutor(workers) as pool:
            futures = {
                name: pool.submit(body, **{d: values[d] for d in graph[name]}) for name in layer
            }
        for name, future in futures.items():
            values[name] = future.result()
    return len(values)


def _flowplan(executor: str) -> Callable[[Shape, Callable[..., object], int], int]:
    def run(shape: Shape, body: Callable[..., object], workers: int) -> int:
        retain = body.__name__ != "big"
        specs = [
            TaskSpec(name, body, deps=tuple(Dependency(d) for d in deps), retain_result=retain)
            for name, deps in shape
        ]
        the_plan = plan(TaskGraph.build(specs))
        if executor == "inline":
            snapshot = execute(the_plan, executor=InlineExecutor())
        else:
            snapshot = execute(the_plan, max_workers=workers)
        return len(snapshot.by_status(TaskStatus.SUCCEEDED))

    return run


def _dask(shape: Shape, body: Callable[..., object], workers: int) -> int:
    dask: Any = importlib.import_module("dask")  # optional extra: typed as Any on purpose
    nodes: dict[str, Any] = {}
    for name, deps in shape:
        nodes[name] = dask.delayed(body, pure=False)(**{d: nodes[d] for d in deps})
    results = dask.compute(*nodes.values(), scheduler="threads", num_workers=workers)
    return len(results)


def _pipefunc(shape: Shape, body: Callable[..., object], workers: int) -> int:
    pipefunc: Any = importlib.import_module("pipefunc")
    PipeFunc, Pipeline = pipefunc.PipeFunc, pipefunc.Pipeline  # noqa: N806
    functions = _PREPARED["functions"]
    pipeline = Pipeline([PipeFunc(fn, output_name=fn.__name__) for fn in functions])
    sinks = [name for name, _ in shape if not any(name in deps for _, deps in shape)]
    results = pipeline.run(sinks, full_output=True, kwargs={})
    return len(results)


def _hamilton(shape: Shape, body: Callable[..., object], workers: int) -> int:
    ad_hoc_utils: Any = importlib.import_module("hamilton.ad_hoc_utils")
    driver: Any = importlib.import_module("hamilton.driver")
    name = f"bench{next(_MODULES)}"
    module = ad_hoc_utils.create_temporary_module(*_PREPARED["functions"], module_name=name)
    dr = driver.Builder().with_modules(module).build()
    results = dr.execute([name for name, _ in shape])
    return len(results)


def _flowrun(shape: Shape, body: Callable[..., object], workers: int) -> int:
    importlib.import_module("flowrun")  # flowrun-dag needs Python >= 3.12

    raise NotImplementedError("flowrun-dag runner")  # pragma: no cover - not installable here


_PREPARED: dict[str, Any] = {}
_MODULES = itertools.count()

RUNNERS: Final[Mapping[str, tuple[Callable[[Shape, Callable[..., object], int], int], str]]] = {
    "calls": (_calls, ""),
    "graphlib+pool": (_graphlib_pool, ""),
    "layered+pool": (_layered_pool, ""),
    "flowplan inline": (_flowplan("inline"), ""),
    "flowplan threads": (_flowplan("threads"), ""),
    "dask.delayed": (_dask, "dask"),
    "pipefunc": (_pipefunc, "pipefunc"),
    "hamilton": (_hamilton, "hamilton"),
    "flowrun": (_flowrun, "flowrun"),
}


def run_one(runner: str, workload: str, n: int, repeat: int, workers: int) -> dict[str, Any]:
    """Time ``runner`` on ``workload`` at ``n`` tasks in this process (the child's side)."""
    fn, module = RUNNERS[runner]
    if module:
        try:
            __import__(module)
        except ImportError as exc:
            return {"status": "missing", "detail": str(exc)}
    shape = WORKLOADS[workload](n)
    body = _body(workload)
    if runner in ("pipefunc", "hamilton"):
        _PREPARED["functions"] = _named_functions(shape, workload)
    samples: list[int] = []
    peak = 0
    for i in range(repeat + 1):  # the first run warms up (imports, caches) and is not kept
        gc.collect()
        traced = workload == "large" and i == repeat
        if traced:
            tracemalloc.start()
        t0 = time.perf_counter_ns()
        count = fn(shape, body, workers)
        elapsed = time.perf_counter_ns() - t0
        if traced:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        elif i:
            samples.append(elapsed)
        if count != n:
            return {"status": "error", "detail": f"produced {count} results, expected {n}"}
    out: dict[str, Any] = {"status": "ok", "samples_ns": samples}
    if workload == "large":
        out["peak_bytes"] = peak
    return out


def _child(
    runner: str, workload: str, n: int, *, repeat: int, workers: int, timeout: float
) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.peers", "--one", runner, workload, str(n)]
    command += ["--repeat", str(repeat), "--workers", str(workers)]
    env = dict(os.environ)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "detail": f"too slow (> {timeout:g} s)"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"status": "error", "detail": last[:120]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_matrix(
    sizes: Sequence[int],
    shapes: Sequence[str],
    *,
    repeat: int,
    workers: int,
    timeout: float,
    runners: Sequence[str] = tuple(RUNNERS),
) -> list[dict[str, Any]]:
    """Every runner on every workload (``shapes`` at ``sizes``, plus sleep and large)."""
    cases = [(shape, n) for n in sizes for shape in shapes]
    cases += [("sleep", SLEEP_TASKS), ("large", LARGE_TASKS)]
    rows: list[dict[str, Any]] = []
    for workload, n in cases:
        for runner in runners:
            started = time.perf_counter()
            result = _child(runner, workload, n, repeat=repeat, workers=workers, timeout=timeout)
            result.update(runner=runner, workload=workload, tasks=n)
            if result["status"] == "ok":
                result["median_us_per_task"] = statistics.median(result["samples_ns"]) / 1e3 / n
            rows.append(result)
            print(
                f"  {runner} on {workload} at {n:,}: {result['status']} "
                f"({time.perf_counter() - started:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    return rows


def render(rows: Sequence[dict[str, Any]], repeat: int, workers: int) -> str:
    """A table of medians (µs per task) and ratios to the fastest threaded floor."""
    lines = [
        f"Peers (end to end, µs per task, median of {repeat}; threaded runners use {workers} "
        "workers; ratio = runner / graphlib+pool; sleep: ms total (ideal 80); "
        "large: ms total and peak traced MB)"
    ]
    header = f"{'workload':<9} {'tasks':>7}  {'runner':<17} {'result':>14}  {'ratio':>7}"
    lines += [header, "-" * len(header)]
    floors = {
        (r["workload"], r["tasks"]): r["median_us_per_task"]
        for r in rows
        if r["runner"] == "graphlib+pool" and r["status"] == "ok"
    }
    for r in rows:
        key = (r["workload"], r["tasks"])
        if r["status"] != "ok":
            cell, ratio = (r["detail"] if r["status"] == "timeout" else r["status"]), ""
        else:
            per_task = r["median_us_per_task"]
            if r["workload"] == "sleep":
                cell = f"{per_task * r['tasks'] / 1e3:.1f} ms"
            elif r["workload"] == "large":
                cell = f"{per_task * r['tasks'] / 1e3:.0f}ms {r['peak_bytes'] / 2**20:.0f}MB"
            else:
                cell = f"{per_task:.2f}"
            ratio = f"{per_task / floors[key]:.2f}x" if key in floors else ""
        row = f"{r['workload']:<9} {r['tasks']:>7,}  {r['runner']:<17} {cell:>14}  {ratio:>7}"
        lines.append(row)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``--one RUNNER WORKLOAD N``: time one case here and print JSON (the child's side)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("--one", nargs=3, metavar=("RUNNER", "WORKLOAD", "N"), required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    runner, workload, n = args.one
    result = run_one(runner, workload, int(n), args.repeat, args.workers)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
