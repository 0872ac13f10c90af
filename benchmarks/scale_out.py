"""Scaling out: CPU-bound fan-out on threads, processes and a Dask LocalCluster.

``python -m benchmarks.scale_out [--tasks 64] [--work-ms 50] [--workers N]``

1. Speed-up: ``--tasks`` independent tasks of ``--work-ms`` of pure-Python work (the GIL holds
   threads to one core), run serially (plain calls), then through :func:`flowplan.execute` on a
   thread pool, a :class:`flowplan.ProcessExecutor` and a :class:`flowplan.DaskExecutor` over a
   ``LocalCluster(processes=True, threads_per_worker=1)``. Pools are warmed up first (process
   start-up is reported separately, not counted).
2. Overhead per task of the Dask path: the same fan-out of no-op tasks through flowplan's
   ``DaskExecutor`` vs plain ``client.submit`` + ``client.gather`` of the same functions.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from flowplan import DaskExecutor, ProcessExecutor, TaskGraph, TaskSpec, execute, plan


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
    args = parser.parse_args(argv)

    import distributed

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
