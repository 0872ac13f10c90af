"""Runnable benchmarks for flowplan (never collected by pytest: its testpaths is ``tests``).

- :mod:`benchmarks.core` — the core's per-task overhead (declare, ``TaskGraph.build``,
  ``plan``, ``execute`` inline and on threads, resume planning) on chains, fan-outs and
  layered lattices, against two floors: plain function calls and a hand-written
  ``graphlib.TopologicalSorter`` runner.

Run from the repository root with the package installed::

    python -m benchmarks                 # same as python -m benchmarks.core
    python -m benchmarks --quick         # 1,000 tasks only (CI smoke run)
    python -m benchmarks --large --json results.json
"""
