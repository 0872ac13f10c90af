"""Scaling out: CPU-bound fan-out on threads, processes and a Dask LocalCluster.

``python -m benchmarks.scale_out [--tasks 64] [--work-ms 50] [--workers N]``

1. Speed-up: ``--tasks`` independent tasks of ``--work-ms`` of pure-Python work (the GIL holds
   threads to one core), run serially (plain calls), then through :func:`flowplan.execute` on a
   thread pool, a :class:`flowplan.ProcessExecutor` and a :class:`flowplan.DaskExecutor` over a
   ``LocalCluster(processes=True, threads_per_worker=1)``. Pools are warmed up first (process
   start-up is reported separately, not counted).
2. Overhead per task of the Dask path: the same fan-out of no-op tasks through flowplan's
   ``DaskExecutor`` vs plain ``client.submit`` + ``client.gather`` of the same functions.
3. Big intermediate values on Dask (``--big-mb``, ``--only big`` to run just this): a chain
   (``--chain`` tasks, each passing ``--big-mb`` MB of bytes to the next) and a fan-in
   (``--fan-in`` producers of ``--big-mb`` MB each, one consumer) on a ``LocalCluster`` with
   2 worker processes: flowplan's ``DaskExecutor`` (every value comes back to the driver and
   goes out again in the consumer's payload) against raw Dask passing futures (values stay on
   the workers; only the small final result is gathered), raw Dask passing futures but also
   gathering every intermediate value (the least a snapshot that records values costs), and
   raw Dask through the driver (``result()`` then ``submit(fn, value)``, flowplan's data path
   without flowplan), and ``DaskExecutor(keep_values_on_cluster=True)``.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from flowplan import (
    DaskExecutor,
    Dependency,
    ProcessExecutor,
    TaskGraph,
    TaskSpec,
    execute,
    plan,
)


def spin(loops: int) -> int:
    """A fixed amount of pure-Python work (holds the GIL): ``loops`` additions."""
    n = 0
    for k in range(loops):
        n += k
    return n


def calibrate(ms: float) -> int:
    """The loop count :func:`spin` needs for about ``ms`` milliseconds on this machine."""
    loops = 100_000
    while True:
        start = time.perf_counter()
        spin(loops)
        took = time.perf_counter() - start
        if took > 0.02:
            return int(loops * ms / 1000 / took)
        loops *= 2


def burn(i: int, loops: float) -> int:
    spin(int(loops))
    return i


def noop(i: int) -> int:
    return i


def make_blob(mb: int, seed: int) -> bytes:
    """``mb`` MiB of bytes (cheap to build: the benchmark measures moving it)."""
    return bytes([seed % 256]) * (mb * 2**20)


def rotate(blob: bytes) -> bytes:
    """One O(n) pass producing a new value of the same size."""
    return blob[1:] + blob[:1]


def rotate_upstream(**upstream: bytes) -> bytes:
    """:func:`rotate` for a flowplan task whose one dependency arrives by its name."""
    (blob,) = upstream.values()
    return rotate(blob)


def total_length(*blobs: bytes) -> int:
    return sum(len(b) for b in blobs)


def total_length_upstream(**upstream: bytes) -> int:
    return total_length(*upstream.values())


def _chain_graph(mb: int, length: int) -> TaskGraph:
    specs: list[TaskSpec[..., object]] = [TaskSpec("c0", functools.partial(make_blob, mb, 0))]
    specs.extend(
        TaskSpec(f"c{i}", rotate_upstream, deps=(Dependency(f"c{i - 1}"),))
        for i in range(1, length)
    )
    specs.append(TaskSpec("length", total_length_upstream, deps=(Dependency(specs[-1].name),)))
    return TaskGraph.build(specs)


def _fan_in_graph(mb: int, width: int) -> TaskGraph:
    specs: list[TaskSpec[..., object]] = [
        TaskSpec(f"p{i}", functools.partial(make_blob, mb, i)) for i in range(width)
    ]
    deps = tuple(Dependency(s.name) for s in specs)
    specs.append(TaskSpec("length", total_length_upstream, deps=deps))
    return TaskGraph.build(specs)


def _raw_chain(client: Any, mb: int, length: int, mode: str) -> int:
    """The chain in raw Dask: ``futures``, ``futures+gather`` or ``driver``."""
    if mode == "driver":
        value = client.submit(make_blob, mb, 0, pure=False).result()
        for _ in range(1, length):
            value = client.submit(rotate, value, pure=False).result()
        return int(client.submit(total_length, value, pure=False).result())
    futures = [client.submit(make_blob, mb, 0, pure=False)]
    for _ in range(1, length):
        futures.append(client.submit(rotate, futures[-1], pure=False))
    last = client.submit(total_length, futures[-1], pure=False)
    if mode == "futures+gather":
        client.gather(futures)
    return int(last.result())


def _raw_fan_in(client: Any, mb: int, width: int, mode: str) -> int:
    """The fan-in in raw Dask: ``futures``, ``futures+gather`` or ``driver``."""
    parts = [client.submit(make_blob, mb, i, pure=False) for i in range(width)]
    if mode == "driver":
        values = client.gather(parts)
        return int(client.submit(total_length, *values, pure=False).result())
    last = client.submit(total_length, *parts, pure=False)
    if mode == "futures+gather":
        client.gather(parts)
    return int(last.result())


def big_values(client: Any, mb: int, length: int, width: int, repeat: int) -> None:
    """Print section 3: big intermediate values through the driver vs passed as futures."""
    dask = DaskExecutor(client)
    keeping = DaskExecutor(client, keep_values_on_cluster=True)
    shapes: list[tuple[str, TaskGraph, Callable[[str], int], int]] = [
        (
            f"chain of {length} x {mb} MiB",
            _chain_graph(mb, length),
            lambda mode: _raw_chain(client, mb, length, mode),
            length,
        ),
        (
            f"fan-in of {width} x {mb} MiB",
            _fan_in_graph(mb, width),
            lambda mode: _raw_fan_in(client, mb, width, mode),
            width,
        ),
    ]
    for label, graph, raw, edges in shapes:
        expected = edges * mb * 2**20 if label.startswith("fan") else mb * 2**20

        def through_flowplan(
            executor: DaskExecutor, graph: TaskGraph = graph, expected: int = expected
        ) -> None:
            assert execute(plan(graph), executor=executor).value("length") == expected

        def raw_mode(mode: str, raw: Callable[[str], int] = raw, expected: int = expected) -> None:
            assert raw(mode) == expected

        rows = [
            ("raw Dask, futures", lambda: raw_mode("futures")),
            ("raw Dask, futures + gather all", lambda: raw_mode("futures+gather")),
            ("raw Dask, through the driver", lambda: raw_mode("driver")),
            ("flowplan DaskExecutor", lambda: through_flowplan(dask)),
            ("flowplan, keep_values_on_cluster", lambda: through_flowplan(keeping)),
        ]
        moved = edges * mb
        print(f"\n{label} ({moved} MiB of intermediate values), best of {repeat}:")
        with warnings.catch_warnings():  # "Sending large graph": what the driver path does
            warnings.simplefilter("ignore", UserWarning)
            best = {name: min(_timed(run) for _ in range(repeat)) for name, run in rows}
        base = best["raw Dask, futures"]
        for name, seconds in best.items():
            rate = moved / seconds
            print(f"  {name:<32} {seconds:6.2f} s   x{seconds / base:4.2f}   {rate:6.0f} MiB/s")


def _graph(n: int, fn: Callable[..., int], **kwargs: float) -> TaskGraph:
    return TaskGraph.build([TaskSpec(f"t{i}", _bind(fn, i, kwargs)) for i in range(n)])


def _bind(fn: Callable[..., int], i: int, kwargs: dict[str, float]) -> Callable[[], int]:
    def body() -> int:
        return fn(i, **kwargs)

    body.__name__ = f"{fn.__name__}_{i}"
    return body


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _flowplan(graph: TaskGraph, executor: Executor) -> float:
    return _timed(lambda: execute(plan(graph), executor=executor))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--work-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--overhead-tasks", type=int, default=500)
    parser.add_argument("--big-mb", type=int, default=50)
    parser.add_argument("--chain", type=int, default=4)
    parser.add_argument("--fan-in", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["all", "speedup", "big"], default="all")
    args = parser.parse_args(argv)

    import distributed

    if args.only == "big":
        with (
            distributed.LocalCluster(  # type: ignore[no-untyped-call]  # distributed: untyped
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=50,
            ) as cluster,
            distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
        ):
            client.gather(client.map(noop, range(8)))  # warm
            big_values(client, args.big_mb, args.chain, args.fan_in, args.repeat)
        return 0

    n, ms, workers = args.tasks, args.work_ms, args.workers
    print(
        f"{n} tasks x {ms:g} ms of pure-Python work, {workers} worker(s), {os.cpu_count()} CPU(s)"
    )
    loops = calibrate(ms)  # fixed work per task, not a wall-clock spin: threads cannot cheat
    graph = _graph(n, burn, loops=loops)
    serial = _timed(lambda: [burn(i, loops) for i in range(n)])
    rows = [("serial (plain calls)", serial)]
    with ThreadPoolExecutor(workers) as threads:
        rows.append(("flowplan threads", _flowplan(graph, threads)))
    start = time.perf_counter()
    with ProcessExecutor(workers) as processes:
        list(processes.map(noop, range(workers * 4)))  # warm: start every child
        print(f"  (ProcessExecutor start-up: {time.perf_counter() - start:.2f} s, not counted)")
        rows.append(("flowplan ProcessExecutor", _flowplan(graph, processes)))
    start = time.perf_counter()
    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]  # distributed: untyped
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=50,
        ) as cluster,
        distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.gather(client.map(noop, range(workers * 4)))  # warm
        print(f"  (LocalCluster start-up: {time.perf_counter() - start:.2f} s, not counted)")
        dask = DaskExecutor(client)
        rows.append(("flowplan DaskExecutor", _flowplan(graph, dask)))
        for label, seconds in rows:
            print(f"  {label:<26} {seconds:7.2f} s   speed-up x{serial / seconds:4.2f}")

        m = args.overhead_tasks
        print(f"\nper-task overhead, {m} no-op tasks on the LocalCluster:")
        noops = _graph(m, noop)
        through_flowplan = min(_flowplan(noops, dask) for _ in range(3))
        fns = [noops.specs[name].fn for name in noops.order]

        def plain() -> None:
            client.gather([client.submit(fn, pure=False) for fn in fns])

        through_dask = min(_timed(plain) for _ in range(3))
        print(f"  plain client.submit+gather  {through_dask / m * 1e3:7.2f} ms/task")
        print(f"  flowplan DaskExecutor       {through_flowplan / m * 1e3:7.2f} ms/task")
        extra = (through_flowplan - through_dask) / m * 1e3
        print(f"  flowplan's extra            {extra:7.2f} ms/task")
        if args.only == "all" and workers == 2:  # section 3 wants exactly 2 worker processes
            big_values(client, args.big_mb, args.chain, args.fan_in, args.repeat)
    if args.only == "all" and workers != 2:
        print("\n(big values: run with --only big, which starts its own 2-worker cluster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
