"""networkx in and out: TaskGraph.from_networkx/to_networkx, Plan.to_networkx, to_networkx."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

import flowplan
from flowplan import (
    CycleError,
    DefinitionError,
    EdgeTypeError,
    GraphValidationError,
    InlineExecutor,
    InvalidOptionError,
    Registry,
    RetryPolicy,
    SignatureMismatchError,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    aexecute,
    execute,
    optional,
    plan,
    task,
    to_networkx,
)
from flowplan.store import SqliteStateStore


def _problems(exc: pytest.ExceptionInfo[GraphValidationError]) -> list[Exception]:
    return list(exc.value.exceptions)


# -- in -----------------------------------------------------------------------------------------
def test_a_graph_built_in_networkx_is_planned_executed_and_resumed() -> None:
    calls: list[str] = []
    broken = {"score": True}

    def load() -> list[int]:
        calls.append("load")
        return [1, 2, 3]

    def total(rows: list[int]) -> int:  # receives "load" under its own parameter name
        calls.append("total")
        return sum(rows)

    def score(total: int) -> float:
        calls.append("score")
        if broken["score"]:
            raise RuntimeError("model not ready")
        return total / 2

    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("load", task=load)
    g.add_node("total", task=total, retry=1, owner="data team")
    g.add_node("score", task=score, timeout_s=30)
    g.add_edge("load", "total", param="rows")
    g.add_edge("total", "score")

    graph = TaskGraph.from_networkx(g)
    assert graph.order == ("load", "total", "score")
    assert graph["total"].retry == RetryPolicy(retries=1)
    assert graph["score"].timeout_s == 30.0
    first = execute(plan(graph), executor=InlineExecutor())
    assert first["score"].status is TaskStatus.FAILED
    assert first.value("total") == 6
    broken["score"] = False
    calls.clear()
    again = execute(plan(graph, first), executor=InlineExecutor())
    assert again.value("score") == 3.0
    assert calls == ["score"]  # load and total reused, not run again


def test_async_callables_and_ordering_only_edges() -> None:
    order: list[str] = []

    async def fetch() -> int:
        await asyncio.sleep(0)
        order.append("fetch")
        return 41

    def migrate() -> None:
        order.append("migrate")

    async def serve(fetch: int) -> int:  # no parameter for "migrate": that edge only orders
        order.append("serve")
        return fetch + 1

    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from([("fetch", {"task": fetch}), ("migrate", {"task": migrate})])
    g.add_node("serve", task=serve)
    g.add_edges_from([("fetch", "serve"), ("migrate", "serve")])
    graph = TaskGraph.from_networkx(g)
    assert graph["serve"].is_async
    assert graph.inputs["serve"] == ("fetch",)
    assert graph.predecessors["serve"] == ("fetch", "migrate")
    snapshot = asyncio.run(aexecute(plan(graph)))
    assert snapshot.value("serve") == 42
    assert order.index("serve") > max(order.index("fetch"), order.index("migrate"))


def test_node_options_become_task_options_and_win_over_a_specs_own(registry: Registry) -> None:
    @task(retry=3, timeout_s=5)
    def extract() -> int:
        return 1

    def when_positive(extract: int) -> bool:
        return extract > 0

    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("extract", task=extract, timeout_s=9)
    g.add_node("load", task=lambda extract: extract, when=when_positive, effect="idempotent")
    g.add_node("audit", task=lambda: None, detached=True)
    g.add_edge("extract", "load")
    g.add_edge("load", "audit", param=None)
    graph = TaskGraph.from_networkx(g)
    assert graph["extract"].timeout_s == 9.0  # the node's option wins
    assert graph["extract"].retry.retries == 3  # the spec's own where the node is silent
    assert graph["extract"] is not extract  # a changed spec is a new one; the original stays
    assert extract.timeout_s == 5.0
    assert graph["load"].when is when_positive
    assert graph["load"].effect == "idempotent"
    assert graph.detached == frozenset({"audit"})
    snapshot = execute(plan(graph), executor=InlineExecutor())
    assert snapshot.value("load") == 1
    assert snapshot["audit"].status is TaskStatus.SUCCEEDED


def test_optional_edges_and_fan_out_from_node_data() -> None:
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("files", task=lambda: ["a", "bb", "ccc"])
    g.add_node("size", task=lambda files: len(files) * 1, fan_out="files")
    g.add_node("flag", task=lambda: 0)
    g.add_node("gated", task=lambda flag: flag, when=lambda flag: flag > 0)
    g.add_node("report", task=lambda size, gated: (sum(size), gated))
    g.add_edges_from([("files", "size"), ("flag", "gated"), ("size", "report")])
    g.add_edge("gated", "report", optional=True)
    graph = TaskGraph.from_networkx(g)
    assert isinstance(graph["size"], flowplan.MappedTaskSpec)
    snapshot = execute(plan(graph), executor=InlineExecutor())
    assert snapshot.value("size") == [1, 2, 3]
    assert snapshot["gated"].status is TaskStatus.SKIPPED
    assert snapshot.value("report") == (6, None)


def test_every_problem_is_reported_at_once_naming_its_node() -> None:
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("load", task=lambda: 1, retries=2)  # a typo of retry
    g.add_node("clean")  # no task
    g.add_node("save", task=lambda load: load, timeout=3)  # a typo of timeout_s
    g.add_node("score", task=lambda: 1, color="red")  # other data is fine
    g.add_edge("load", "save")
    with pytest.raises(GraphValidationError) as caught:
        TaskGraph.from_networkx(g)
    problems = _problems(caught)
    messages = "\n".join(map(str, problems))
    assert len(problems) == 3, messages
    assert "node 'load': unknown task option 'retries'; did you mean 'retry'?" in messages
    assert "node 'clean' has no task" in messages
    assert "node 'save': unknown task option 'timeout'; did you mean 'timeout_s'?" in messages
    assert {getattr(p, "task", None) for p in problems} == {"load", "clean", "save"}


def test_what_build_checks_is_checked_with_the_node_named() -> None:
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("a", task=lambda c: c)
    g.add_node("b", task=lambda a: a)
    g.add_node("c", task=lambda b: b)
    g.add_edges_from([("a", "b"), ("b", "c"), ("c", "a")])
    with pytest.raises(GraphValidationError) as caught:
        TaskGraph.from_networkx(g)
    cycle = next(p for p in _problems(caught) if isinstance(p, CycleError))
    assert cycle.cycle[0] == cycle.cycle[-1]
    assert set(cycle.cycle) == {"a", "b", "c"}

    h: nx.DiGraph[str] = nx.DiGraph()
    h.add_node("save", task=lambda rows, target: rows)  # `target` is supplied by nothing
    h.add_node("rows", task=lambda: [1])
    h.add_edge("rows", "save")
    with pytest.raises(GraphValidationError) as caught:
        TaskGraph.from_networkx(h)
    (problem,) = _problems(caught)
    assert isinstance(problem, SignatureMismatchError)
    assert problem.task == "save"
    assert "'target'" in str(problem)


def test_an_edge_param_that_is_not_a_parameter_is_refused() -> None:
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("load", task=lambda: 1)
    g.add_node("save", task=lambda rows: rows)
    g.add_edge("load", "save", param="rwos")
    with pytest.raises(GraphValidationError) as caught:
        TaskGraph.from_networkx(g)
    (problem,) = _problems(caught)
    assert isinstance(problem, InvalidOptionError)
    assert problem.task == "save"
    assert "param='rwos' is not a parameter of 'save'; its parameters are rows" in str(problem)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        (nx.Graph(), "got a Graph: edges must have a direction"),
        (nx.MultiDiGraph(), "got a MultiDiGraph"),
        ({"load": {}}, "expected a networkx.DiGraph, got {'load': {}} (dict)"),
    ],
)
def test_only_directed_graphs_with_single_edges_are_taken(graph: object, expected: str) -> None:
    with pytest.raises(DefinitionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        TaskGraph.from_networkx(graph)  # type: ignore[arg-type]


def test_node_names_must_be_strings_and_a_spec_keeps_its_name() -> None:
    g: nx.DiGraph[Any] = nx.DiGraph()
    g.add_node(1, task=lambda: 1)
    with pytest.raises(GraphValidationError) as caught:
        TaskGraph.from_networkx(g)
    assert "node 1 (int)" in str(caught.value)
    assert "relabel the graph" in str(caught.value)
    spec = TaskSpec("load", lambda: 1)
    h: nx.DiGraph[str] = nx.DiGraph()
    h.add_node("extract", task=spec)
    with pytest.raises(GraphValidationError) as caught:
        TaskGraph.from_networkx(h)
    assert "node 'extract' holds task 'load'" in str(caught.value)


def test_edge_types_are_checked_as_for_task_graphs() -> None:
    def produce() -> str:
        return "x"

    def consume(number: int) -> int:
        return number

    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("produce", task=produce)
    g.add_node("consume", task=consume)
    g.add_edge("produce", "consume", param="number")
    with pytest.raises(GraphValidationError) as caught:
        TaskGraph.from_networkx(g, check_types=True)
    (problem,) = _problems(caught)
    assert isinstance(problem, EdgeTypeError)
    assert "produce returns str" in str(problem)
    assert "int" in str(problem)
    assert TaskGraph.from_networkx(g, check_types=False).order == ("produce", "consume")


def test_tasks_are_registered_only_where_asked() -> None:
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("only", task=lambda: 1)
    TaskGraph.from_networkx(g)
    assert not flowplan.default_registry().specs()
    mine = Registry()
    graph = TaskGraph.from_networkx(g, registry=mine)
    assert mine.specs() == (graph["only"],)


# -- out ----------------------------------------------------------------------------------------
@pytest.fixture
def built(registry: Registry) -> TaskGraph:
    @task
    def files() -> list[str]:
        return ["a", "b"]

    @task(depends_on=[files], fan_out=files, retry=2)
    def size(files: str) -> int:
        return len(files)

    @task
    def setup() -> None:
        return None

    @task(depends_on=[size, optional(setup)], timeout_s=10)
    def report(size: list[int], setup: None) -> int:
        return sum(size)

    @task(depends_on=[report], detached=True)
    def notify(report: int) -> None:
        return None

    return TaskGraph.build([files, size, setup, report, notify])


def test_to_networkx_is_an_ordinary_graph_with_specs_options_and_parameters(
    built: TaskGraph,
) -> None:
    g = built.to_networkx()
    assert not nx.is_frozen(g)
    assert list(g.nodes) == list(built.order)
    assert g.nodes["size"]["task"] is built["size"]
    assert g.nodes["size"]["retry"] == RetryPolicy(retries=2)
    assert g.nodes["size"]["fan_out"] == "files"
    assert g.nodes["report"]["timeout_s"] == 10.0
    assert g.nodes["notify"]["detached"] is True
    assert g.edges["files", "size"] == {"param": "files", "optional": False}
    assert g.edges["setup", "report"] == {"param": "setup", "optional": True}
    g.add_node("extra")  # the caller owns it: changing it never touches the TaskGraph
    assert "extra" not in built
    assert built.to_networkx() is not built.to_networkx()


def test_a_round_trip_rebuilds_an_equal_graph(built: TaskGraph) -> None:
    again = TaskGraph.from_networkx(built.to_networkx())
    assert again.order == built.order
    assert dict(again.predecessors) == dict(built.predecessors)
    assert dict(again.inputs) == dict(built.inputs)
    assert again.detached == built.detached
    assert all(again[name] is built[name] for name in built.order)


def test_a_round_trip_keeps_renamed_and_ordering_only_edges() -> None:
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("load", task=lambda: [1, 2])
    g.add_node("migrate", task=lambda: None)
    g.add_node("total", task=lambda rows, factor=1: sum(rows) * factor)
    g.add_edge("load", "total", param="rows")
    g.add_edge("migrate", "total")
    first = TaskGraph.from_networkx(g)
    exported = first.to_networkx()
    assert exported.edges["load", "total"]["param"] == "rows"
    assert exported.edges["migrate", "total"]["param"] is None
    second = TaskGraph.from_networkx(exported)
    assert all(second[n] is first[n] for n in first.order)
    assert execute(plan(second), executor=InlineExecutor()).value("total") == 3


def test_an_edited_export_rebuilds_the_edited_graph(built: TaskGraph) -> None:
    g = built.to_networkx()
    g.nodes["report"]["timeout_s"] = 60
    g.add_node("archive", task=lambda report: report)
    g.add_edge("report", "archive")
    g.remove_edge("report", "notify")
    g.add_edge("archive", "notify", param="report")
    edited = TaskGraph.from_networkx(g)
    assert edited["report"].timeout_s == 60.0
    assert edited.predecessors["notify"] == ("archive",)
    assert edited.order[-2:] == ("archive", "notify")
    assert execute(plan(edited), executor=InlineExecutor())["notify"].status is TaskStatus.SUCCEEDED
    assert built["report"].timeout_s == 10.0  # the original graph is unchanged
    assert built.predecessors["notify"] == ("report",)
    assert "archive" not in built


def test_a_plan_and_a_run_export_their_decisions_and_records(built: TaskGraph) -> None:
    planned = plan(built, targets=["size"])
    g = planned.to_networkx()
    assert g.nodes["size"]["action"] == "run"
    assert g.nodes["report"]["action"] == "not_needed"
    assert g.nodes["report"]["reason"] == planned.decisions["report"].reason

    def broken(size: list[int], setup: None) -> int:
        raise ValueError("no report today")

    failing = TaskGraph.from_networkx(_with_task(built.to_networkx(), "report", broken))
    snapshot = execute(plan(failing), executor=InlineExecutor())
    run = to_networkx(failing, snapshot)
    assert run.nodes["files"]["status"] == "succeeded"
    assert run.nodes["files"]["attempts"] == 1
    assert isinstance(run.nodes["files"]["duration_s"], float)
    assert run.nodes["report"]["status"] == "failed"
    assert run.nodes["report"]["error"] == "no report today"
    assert run.nodes["report"]["error_type"].endswith("ValueError")
    assert run.nodes["notify"]["status"] == "skipped"
    assert run.nodes["notify"]["root_cause"] == "report"
    # networkx's algorithms work on the run: everything downstream of the failure
    failed = [n for n in run.nodes if run.nodes[n]["status"] == "failed"]
    assert nx.descendants(run, failed[0]) == {"notify"}
    assert to_networkx(plan(failing), snapshot).nodes["report"]["status"] == "failed"


def _with_task(g: nx.DiGraph[str], name: str, fn: object) -> nx.DiGraph[str]:
    g.nodes[name]["task"] = fn
    return g


def test_a_run_from_a_store_exports_with_tasks_it_has_no_record_of(
    built: TaskGraph, tmp_path: Path
) -> None:
    with SqliteStateStore(tmp_path / "runs.db") as store:
        snapshot = execute(plan(built, targets=["files"]), store=store)
        loaded = store.load(snapshot.run_id)
    run = to_networkx(built, loaded)
    assert run.nodes["files"]["status"] == "succeeded"
    assert run.nodes["report"]["status"] is None
    assert run.nodes["report"]["attempts"] == 0


def test_import_flowplan_does_not_load_networkx() -> None:
    code = "import sys, flowplan; print('networkx' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"
