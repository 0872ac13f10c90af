"""networkx in and out and plan estimates, per task, beside networkx's own cost.

Place: benchmarks (not collected by pytest). On each shape (default: 100,000 tasks), median of
``repeat``, µs per task:

- ``to_networkx``: ``TaskGraph.to_networkx()``, beside networkx's own cost of the same graph
  (``add_nodes_from`` and ``add_edges_from`` with the same data, made beforehand: the floor).
- ``from_networkx``: ``TaskGraph.from_networkx(g)`` of that export, beside the floor of reading
  the graph (iterating its nodes and incoming edges with their data) plus ``TaskGraph.build``
  of the same specs (what validating the graph costs anyway).
- ``estimate``: ``Plan.estimate(durations)`` (unlimited workers) and with ``max_workers=8``,
  beside networkx's ``dag_longest_path`` on the exported graph (weights on the edges).

Run with ``python -m benchmarks.planning [--tasks N] [--repeat R] [--shapes chain,lattice]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence

import networkx as nx

from benchmarks.core import SHAPES, declare
from flowplan import TaskGraph, plan

__all__ = ["main", "measure_planning"]


def _median_us(fn: Callable[[], object], tasks: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000 / tasks)
    return statistics.median(samples)


def _nx_floor(
    nodes: list[tuple[str, dict[str, object]]], edges: list[tuple[str, str, dict[str, object]]]
) -> nx.DiGraph[str]:
    """networkx's own cost of the export: the same nodes, edges and data (made beforehand)."""
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


def _read_floor(g: nx.DiGraph[str]) -> int:
    """Reading the graph as from_networkx must: each node's data and incoming edges."""
    seen = 0
    for _, data in g.nodes(data=True):
        seen += len(data)
    for _, _, data in g.edges(data=True):
        seen += len(data)
    return seen


def measure_planning(tasks: int, repeat: int, shapes: Sequence[str]) -> list[dict[str, object]]:
    """One row per shape and measure: flowplan's µs per task, the floor's, and the difference."""
    return [row for shape_name in shapes for row in _measure_shape(shape_name, tasks, repeat)]


def _measure_shape(shape_name: str, tasks: int, repeat: int) -> list[dict[str, object]]:
    specs = declare(SHAPES[shape_name](tasks))
    graph = TaskGraph.build(specs)
    exported = graph.to_networkx()
    node_data = [(n, dict(d)) for n, d in exported.nodes(data=True)]
    edge_data = [(u, v, dict(d)) for u, v, d in exported.edges(data=True)]
    durations = {name: float(i % 7) for i, name in enumerate(graph.order)}
    planned = plan(graph)
    weighted = graph.to_networkx()
    for u, v in weighted.edges:
        weighted.edges[u, v]["weight"] = durations[u]
    measures: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("to_networkx", graph.to_networkx, lambda: _nx_floor(node_data, edge_data)),
        (
            "from_networkx",
            lambda: TaskGraph.from_networkx(exported),
            lambda: (_read_floor(exported), TaskGraph.build(specs)),
        ),
        (
            "estimate",
            lambda: planned.estimate(durations),
            lambda: nx.dag_longest_path(weighted),
        ),
        (
            "estimate max_workers=8",
            lambda: planned.estimate(durations, max_workers=8),
            lambda: nx.dag_longest_path(weighted),
        ),
    ]
    rows: list[dict[str, object]] = []
    for what, ours, floor in measures:
        mine = _median_us(ours, len(specs), repeat)
        base = _median_us(floor, len(specs), repeat)
        rows.append(
            {
                "shape": shape_name,
                "tasks": len(specs),
                "measure": what,
                "flowplan_us": mine,
                "floor_us": base,
                "over_floor_us": mine - base,
            }
        )
    return rows


def render(rows: Sequence[dict[str, object]]) -> str:
    """The rows as a table."""
    lines = [
        "shape    tasks    measure                 flowplan µs  floor µs  over floor",
        "-------  -------  ----------------------  -----------  --------  ----------",
    ]
    lines.extend(
        f"{row['shape']!s:<7}  {row['tasks']!s:>7}  {row['measure']!s:<22}  "
        f"{row['flowplan_us']:>11.2f}  {row['floor_us']:>8.2f}  {row['over_floor_us']:>+10.2f}"
        for row in rows
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print; floors: networkx's own graph building, reading and longest path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shapes", default="chain,fanout,lattice")
    args = parser.parse_args(argv)
    rows = measure_planning(args.tasks, args.repeat, args.shapes.split(","))
    print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
