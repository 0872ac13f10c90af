"""Runnable benchmarks for flowplan (never collected by pytest: its testpaths is ``tests``).

- :mod:`benchmarks.core` — the core's per-task overhead (declare, ``TaskGraph.build``,
  ``plan``, ``execute`` inline and on threads, resume planning) on chains, fan-outs and
  layered lattices, against two floors: plain function calls and a hand-written
  ``graphlib.TopologicalSorter`` runner; then :mod:`benchmarks.extras` (SQLite store, hooks,
  memory, in a child process) and :mod:`benchmarks.peers` (dask, pipefunc, Hamilton, …).
- :mod:`benchmarks.declaring` — declaring with one distinct function per task, and end to end
  (declare + build + plan + execute on threads) beside the ``graphlib`` + pool floor.
- :mod:`benchmarks.flow_logging` — ``Flow`` in an application whose structlog filters out
  INFO, beside ``Flow(log=False)`` and the core (build + plan + execute) on the same DAG.
- :mod:`benchmarks.scale_out` — process and Dask executors, big intermediate values.
- :mod:`benchmarks.store_memory` — peak memory of one large value written by a run to
  ``SqliteStateStore`` and read back, as a multiple of its size (child processes).
- :mod:`benchmarks.scaling_floor` — how much two minimal schedulers' cost per task grows from
  1,000 to 100,000 tasks (the machine's floor for the "flat in N" target).

Run from the repository root with the package installed::

    python -m benchmarks                 # same as python -m benchmarks.core
    python -m benchmarks --quick         # 1,000 tasks only (CI smoke run)
    python -m benchmarks --large --json results.json
"""
