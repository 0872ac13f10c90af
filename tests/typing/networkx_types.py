"""Typing tests for networkx in and out and plan estimates: checked by mypy, never run.

Covered: ``TaskGraph.from_networkx`` returns a ``TaskGraph`` and takes a ``DiGraph[str]``;
``TaskGraph.to_networkx``, ``Plan.to_networkx`` and ``flowplan.to_networkx`` return a
``networkx.DiGraph[str]``; ``Plan.estimate`` takes a mapping of seconds, a snapshot or several,
and returns an ``Estimate`` whose fields are typed; ``past_durations`` and ``store_history``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import assert_type

import networkx as nx

from flowplan import (
    Estimate,
    Plan,
    Registry,
    Snapshot,
    TaskGraph,
    past_durations,
    plan,
    store_history,
    to_networkx,
)
from flowplan.store import SqliteStateStore


def check_networkx(g: nx.DiGraph[str], snapshot: Snapshot) -> None:
    graph = TaskGraph.from_networkx(g, registry=Registry(), check_types=False)
    assert_type(graph, TaskGraph)
    assert_type(graph.to_networkx(), "nx.DiGraph[str]")
    planned = plan(graph)
    assert_type(planned.to_networkx(), "nx.DiGraph[str]")
    assert_type(to_networkx(graph, snapshot), "nx.DiGraph[str]")
    assert_type(to_networkx(planned, snapshot), "nx.DiGraph[str]")
    TaskGraph.from_networkx(g, registry="default")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def check_estimate(planned: Plan, snapshot: Snapshot, path: Path) -> None:
    estimate = planned.estimate({"extract": 2.0, "load": 1})
    assert_type(estimate, Estimate)
    assert_type(estimate.makespan_s, float)
    assert_type(estimate.critical_path, tuple[str, ...])
    assert_type(estimate.width, int)
    assert_type(estimate.start_s, Mapping[str, float])
    assert_type(estimate.finish_s, Mapping[str, float])
    assert_type(estimate.assumed, frozenset[str])
    assert_type(estimate.describe(), str)
    assert_type(planned.estimate(snapshot, max_workers=4), Estimate)
    assert_type(planned.estimate([snapshot, snapshot], default_s=0.5), Estimate)
    with SqliteStateStore(path) as store:
        history = store_history(store, dag_name="etl", last=10)
        assert_type(history, tuple[Snapshot, ...])
        assert_type(planned.estimate(history), Estimate)
    assert_type(past_durations(history), dict[str, float])
    planned.estimate({"extract": "2 s"})  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    planned.estimate(snapshot, max_workers="4")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
