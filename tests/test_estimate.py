"""Plan.estimate: makespan, critical path and width from past durations."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowplan import (
    Dependency,
    Estimate,
    FakeClock,
    InlineExecutor,
    InvalidOptionError,
    Registry,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    Value,
    execute,
    past_durations,
    plan,
    simulate,
    store_history,
    task,
)
from flowplan.store import SqliteStateStore

ROOT = Path(__file__).resolve().parent.parent


def _chain_graph(
    edges: dict[str, tuple[str, ...]], detached: frozenset[str] = frozenset()
) -> TaskGraph:
    specs: dict[str, TaskSpec[..., object]] = {}
    for name, deps in edges.items():
        specs[name] = TaskSpec(
            name,
            lambda **_: None,
            deps=tuple(Dependency(d, specs[d]) for d in deps),
            detached=name in detached,
        )
    return TaskGraph.build(specs.values())


# a graph built to have one critical path: extract → transform → train → publish (2+3+5+1 = 11),
# beside a wide but short branch and a long-looking decoy that starts late on nothing
EDGES = {
    "extract": (),
    "transform": ("extract",),
    "stats_a": ("extract",),
    "stats_b": ("extract",),
    "stats_c": ("extract",),
    "train": ("transform",),
    "publish": ("train", "stats_a", "stats_b", "stats_c"),
}
SECONDS = {
    "extract": 2.0,
    "transform": 3.0,
    "stats_a": 4.0,
    "stats_b": 4.0,
    "stats_c": 1.0,
    "train": 5.0,
    "publish": 1.0,
}


def test_the_critical_path_makespan_width_and_schedule() -> None:
    estimate = plan(_chain_graph(EDGES)).estimate(SECONDS)
    assert estimate.makespan_s == 11.0
    assert estimate.critical_path == ("extract", "transform", "train", "publish")
    assert estimate.width == 4  # transform and three stats at once, after extract
    assert estimate.start_s["publish"] == 10.0
    assert estimate.finish_s["stats_c"] == 3.0
    assert estimate.max_workers is None
    assert estimate.assumed == frozenset()
    assert estimate.describe() == (
        "about 11 s; critical path: extract → transform → train → publish"
    )


def test_it_agrees_with_networkx_longest_path() -> None:
    graph = _chain_graph(EDGES)
    g = graph.to_networkx()
    for u, v in g.edges:
        g.edges[u, v]["weight"] = SECONDS[u]
    longest = nx.dag_longest_path(g, weight="weight")
    estimate = plan(graph).estimate(SECONDS)
    assert tuple(longest) == estimate.critical_path
    assert nx.dag_longest_path_length(g) + SECONDS[longest[-1]] == estimate.makespan_s


def test_workers_limit_the_schedule_in_ready_order() -> None:
    graph = _chain_graph(EDGES)
    one = plan(graph).estimate(SECONDS, max_workers=1)
    assert one.makespan_s == sum(SECONDS.values())
    assert one.width == 1
    two = plan(graph).estimate(SECONDS, max_workers=2)
    # first ready, first started (as the interpreter's queue): extract 0-2, then transform 2-5
    # and stats_a 2-6; stats_b (ready since 2) 5-9 before train (ready at 5); stats_c 6-7;
    # train 7-12; publish 12-13
    assert (two.start_s["stats_b"], two.start_s["stats_c"], two.start_s["train"]) == (5, 6, 7)
    assert two.makespan_s == 13.0
    assert two.width == 2
    # the chain of waits: train waited for the worker stats_c freed, which waited for stats_a's
    assert two.critical_path == ("extract", "stats_a", "stats_c", "train", "publish")
    assert plan(graph).estimate(SECONDS, max_workers=100).makespan_s == 11.0


def test_reused_and_unneeded_tasks_cost_nothing() -> None:
    graph = _chain_graph(EDGES)
    done = {
        name: TaskRecord(name, TaskStatus.SUCCEEDED, value=None, has_value=True)
        for name in ("extract", "transform", "train")
    }
    resumed = plan(graph, Snapshot("earlier", done)).estimate(SECONDS)
    assert resumed.makespan_s == 5.0  # stats_a/b (4) then publish (1)
    assert resumed.critical_path == ("stats_a", "publish")
    assert "train" not in resumed.start_s
    only = plan(graph, targets=["stats_c"]).estimate(SECONDS)
    assert only.makespan_s == 3.0
    assert set(only.start_s) == {"extract", "stats_c"}


def test_unknown_tasks_get_a_stated_default() -> None:
    graph = _chain_graph(EDGES)
    partial = {"extract": 2.0, "transform": 4.0, "train": 6.0}
    estimate = plan(graph).estimate(partial)
    assert estimate.default_s == 4.0  # the median of the known durations
    assert estimate.assumed == frozenset({"stats_a", "stats_b", "stats_c", "publish"})
    assert estimate.makespan_s == 2.0 + 4.0 + 6.0 + 4.0
    assert "4 task(s) never seen before counted as 4 s each" in estimate.describe()
    assert plan(graph).estimate({}).default_s == 1.0
    assert plan(graph).estimate(partial, default_s=0.5).finish_s["publish"] == 12.5


def test_detached_tasks_start_after_the_main_tasks() -> None:
    graph = _chain_graph({"a": (), "b": (), "audit": ("a",)}, detached=frozenset({"audit"}))
    seconds = {"a": 1.0, "b": 5.0, "audit": 2.0}
    unlimited = plan(graph).estimate(seconds)
    assert unlimited.start_s["audit"] == 5.0
    assert unlimited.makespan_s == 7.0
    assert unlimited.critical_path == ("b", "audit")
    limited = plan(graph).estimate(seconds, max_workers=2)
    assert limited.start_s["audit"] == 5.0
    assert limited.makespan_s == 7.0


def test_bad_durations_and_workers_are_clear_errors() -> None:
    planned = plan(_chain_graph(EDGES))
    with pytest.raises(InvalidOptionError, match="task 'train': a duration must be a finite"):
        planned.estimate({"train": -1.0})
    with pytest.raises(InvalidOptionError, match="got 'slow'"):
        planned.estimate({"train": "slow"})  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="max_workers must be a positive int"):
        planned.estimate(SECONDS, max_workers=0)
    with pytest.raises(InvalidOptionError, match="holding 3"):
        planned.estimate([3])  # type: ignore[list-item]


def test_the_estimate_matches_a_simulated_run_on_the_fake_clock() -> None:
    graph = _chain_graph(EDGES)
    script = {name: Value(duration_s=seconds) for name, seconds in SECONDS.items()}
    clock = FakeClock(1000.0)
    first = simulate(plan(graph), script, clock=clock)
    assert first.snapshot.is_complete
    simulated = clock() - 1000.0
    # the simulation runs one task at a time: that is the estimate with one worker
    estimate = plan(graph).estimate(first.snapshot, max_workers=1)
    assert estimate.durations_s == SECONDS
    assert abs(estimate.makespan_s - simulated) <= 0.1 * simulated
    assert estimate.makespan_s == simulated


def test_the_estimate_predicts_a_real_run_with_known_sleeps(registry: Registry) -> None:
    naps = {"a": 0.3, "b": 0.6, "c": 0.2, "d": 0.4}

    def nap(name: str) -> None:
        time.sleep(naps[name])

    @task
    def a() -> None:
        nap("a")

    @task(depends_on=[a])
    def b(a: None) -> None:
        nap("b")

    @task(depends_on=[a])
    def c(a: None) -> None:
        nap("c")

    @task(depends_on=[b, c])
    def d(b: None, c: None) -> None:
        nap("d")

    graph = TaskGraph.build([a, b, c, d])
    estimate = plan(graph).estimate(naps)
    assert estimate.critical_path == ("a", "b", "d")
    assert estimate.makespan_s == pytest.approx(1.3)
    snapshot = execute(plan(graph), max_workers=4)
    starts = [r.started_at for r in snapshot.records.values() if r.started_at is not None]
    ends = [r.finished_at for r in snapshot.records.values() if r.finished_at is not None]
    measured = max(ends) - min(starts)
    assert measured >= estimate.makespan_s  # the sleeps alone take that long
    # from the run's own records, the estimate says how long the run took
    replay = plan(graph).estimate(snapshot)
    assert abs(replay.makespan_s - measured) <= 0.1 * measured
    assert replay.critical_path == ("a", "b", "d")


def test_durations_come_from_past_successes_and_a_stores_history(
    registry: Registry, tmp_path: Path
) -> None:
    def record(name: str, seconds: float, *, cached: bool = False) -> TaskRecord:
        return TaskRecord(
            name, TaskStatus.SUCCEEDED, started_at=100.0, finished_at=100.0 + seconds, cached=cached
        )

    runs = [
        Snapshot("r1", {"a": record("a", 1.0), "b": record("b", 10.0)}),
        Snapshot("r2", {"a": record("a", 3.0), "b": record("b", 99.0, cached=True)}),
        Snapshot("r3", {"a": record("a", 2.0), "b": TaskRecord("b", TaskStatus.FAILED)}),
    ]
    assert past_durations(runs) == {"a": 2.0, "b": 10.0}  # medians; reused/failed left out

    @task
    def first() -> int:
        return 1

    @task(depends_on=[first])
    def second(first: int) -> int:
        time.sleep(0.05)
        return first

    graph = TaskGraph.build([first, second])
    path = tmp_path / "runs.db"
    with SqliteStateStore(path) as store:
        for _ in range(3):
            execute(plan(graph), store=store, executor=InlineExecutor())
        history = store_history(store)
        assert len(history) == 3
        estimate = plan(graph).estimate(history)
    assert estimate.critical_path == ("first", "second")
    assert 0.05 <= estimate.durations_s["second"] < 5.0
    assert estimate.assumed == frozenset()


def test_cli_graph_highlights_the_critical_path(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        "import time\n"
        "from flowplan import task\n\n"
        "@task\ndef extract() -> int:\n    return 1\n\n"
        "@task(depends_on=[extract])\ndef slow(extract: int) -> int:\n"
        "    time.sleep(0.2)\n    return extract\n\n"
        "@task(depends_on=[extract])\ndef fast(extract: int) -> int:\n    return extract\n\n"
        "@task(depends_on=[slow, fast])\ndef load(slow: int, fast: int) -> int:\n"
        "    return slow + fast\n",
        encoding="utf-8",
    )

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flowplan", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("run", "pipeline.py")
    ascii_tree = cli("graph", "pipeline.py", "--format", "ascii", "--critical-path")
    assert "critical path: extract → slow → load" in ascii_tree
    assert "fast (critical)" not in ascii_tree
    assert "slow (critical)" in ascii_tree
    mermaid = cli("graph", "pipeline.py", "--critical-path")
    assert "class n0,n1,n3 critical" in mermaid
    assert "linkStyle 0,2 stroke:#d63384" in mermaid
    explained = cli("explain", "pipeline.py", "--estimate")
    assert explained.splitlines()[-1].startswith("estimate: about ")
    assert explained.splitlines()[-1].endswith("critical path: extract → slow → load")
    one = cli("explain", "pipeline.py", "--estimate", "--max-workers", "1")
    assert "critical path: extract → slow → fast → load" in one
    dot = cli("graph", "pipeline.py", "--format", "dot", "--critical-path")
    assert '"extract" -> "slow" [color="#d63384", penwidth=3];' in dot
    assert '"extract" -> "fast";' in dot


@st.composite
def _dags(draw: st.DrawFn) -> tuple[TaskGraph, dict[str, float]]:
    n = draw(st.integers(1, 12))
    edges: dict[str, tuple[str, ...]] = {}
    for i in range(n):
        earlier = [f"t{j}" for j in range(i)]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        edges[f"t{i}"] = tuple(deps)
    seconds = {name: draw(st.integers(0, 20)) / 2 for name in edges}
    return _chain_graph(edges), seconds


@settings(max_examples=60, deadline=None)
@given(_dags(), st.integers(1, 4))
def test_estimate_laws_on_random_graphs(
    dag: tuple[TaskGraph, dict[str, float]], workers: int
) -> None:
    graph, seconds = dag
    planned = plan(graph)
    free: Estimate = planned.estimate(seconds)
    # the makespan is the longest path, and the critical path is a real path that long
    g = graph.to_networkx()
    assert free.makespan_s == max(
        sum(seconds[n] for n in path)
        for source in g.nodes
        for target in g.nodes
        for path in (nx.all_simple_paths(g, source, target) if source != target else [[source]])
    )
    path = free.critical_path
    assert all(g.has_edge(u, v) for u, v in itertools.pairwise(path))
    assert sum(seconds[n] for n in path) == free.makespan_s
    # no task starts before its dependencies end, with or without a worker limit
    limited = planned.estimate(seconds, max_workers=workers)
    for estimate in (free, limited):
        for name in graph.order:
            for dep in graph.predecessors[name]:
                assert estimate.start_s[name] >= estimate.finish_s[dep]
    assert free.makespan_s <= limited.makespan_s <= sum(seconds.values())
    assert 1 <= limited.width <= workers
    assert free.width <= len(graph)
