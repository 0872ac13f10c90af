"""Tests for flowplan.graph: validation (all problems at once), order, discovery, scale."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from flowplan import (
    CycleError,
    DefinitionError,
    Dependency,
    DetachedDependencyError,
    DuplicateTaskError,
    GraphValidationError,
    InlineExecutor,
    Registry,
    SignatureMismatchError,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    UnknownTaskError,
    execute,
    plan,
    task,
)


def spec(
    name: str,
    fn: Callable[..., Any] | None = None,
    deps: tuple[str, ...] = (),
    **options: Any,
) -> TaskSpec[..., Any]:
    """A spec whose function takes its dependencies as ``**kwargs`` unless ``fn`` is given."""

    def accept_all(**kwargs: Any) -> Any:  # Any: consumers annotate what they receive
        return name

    return TaskSpec(name, fn or accept_all, deps=tuple(Dependency(d) for d in deps), **options)


def problems(specs: list[TaskSpec[..., Any]]) -> list[DefinitionError]:
    with pytest.raises(GraphValidationError) as info:
        TaskGraph.build(specs)
    found = [e for e in info.value.exceptions if isinstance(e, DefinitionError)]
    assert len(found) == len(info.value.exceptions)  # flat: no nested groups
    return found


def only_problem(specs: list[TaskSpec[..., Any]]) -> DefinitionError:
    found = problems(specs)
    assert len(found) == 1, found
    return found[0]


# -- a valid graph ----------------------------------------------------------------------------


def test_build_exposes_order_edges_inputs_and_detached(registry: Registry) -> None:
    @task
    def fetch() -> int:
        return 1

    @task(depends_on=[fetch])
    def double(fetch: int) -> int:
        return 2 * fetch

    @task(depends_on=[fetch, double], detached=True)
    def notify(fetch: int, double: int) -> None:
        pass

    graph = TaskGraph.build([notify, double, fetch])
    assert graph.order == ("fetch", "double", "notify")
    assert list(graph.specs) == ["fetch", "double", "notify"]
    assert graph.predecessors["notify"] == ("fetch", "double")
    assert graph.successors["fetch"] == ("double", "notify")
    assert graph.inputs["notify"] == ("fetch", "double")
    assert graph.detached == frozenset({"notify"})
    assert len(graph) == 3
    assert "fetch" in graph
    assert "nope" not in graph
    assert graph["double"] is double
    assert graph.ancestors(["notify"]) == {"fetch", "double"}
    assert graph.descendants(["fetch"]) == {"double", "notify"}
    assert set(graph.digraph.edges) == {
        ("fetch", "double"),
        ("fetch", "notify"),
        ("double", "notify"),
    }
    keys = graph.step_keys()
    assert set(keys) == {"fetch", "double", "notify"}
    assert graph.step_keys() is keys  # computed once


def test_unknown_name_lookup_suggests(registry: Registry) -> None:
    graph = TaskGraph.build([spec("load")])
    with pytest.raises(UnknownTaskError, match="did you mean 'load'") as info:
        graph["laod"]
    assert info.value.suggestion == "load"
    assert info.value.known == ("load",)


def test_the_same_spec_twice_is_one_task() -> None:
    a = spec("a")
    assert TaskGraph.build([a, a]).order == ("a",)


def test_order_follows_declaration_not_input_order() -> None:
    c, a, b = spec("c"), spec("a"), spec("b")  # declared c, a, b
    d = spec("d", deps=("b", "c"))
    assert TaskGraph.build([d, b, a, c]).order == ("c", "a", "b", "d")
    assert TaskGraph.build([a, b, c, d]).order == ("c", "a", "b", "d")


# -- validation -------------------------------------------------------------------------------


def test_two_different_specs_with_one_name_are_rejected() -> None:
    problem = only_problem([spec("a"), spec("a")])
    assert isinstance(problem, DuplicateTaskError)
    assert problem.task == "a"
    assert "two different tasks are named 'a'" in str(problem)
    assert "name=" in str(problem)


def test_missing_dependency_suggests_a_close_name() -> None:
    problem = only_problem([spec("load"), spec("report", deps=("laod",))])
    assert isinstance(problem, UnknownTaskError)
    assert problem.name == "laod"
    assert problem.task == "report"
    assert problem.suggestion == "load"
    assert "task 'report' depends on 'laod'" in str(problem)
    assert "did you mean 'load'?" in str(problem)


def test_missing_dependency_without_a_close_name_lists_known_names() -> None:
    problem = only_problem([spec("load"), spec("report", deps=("zzz",))])
    assert isinstance(problem, UnknownTaskError)
    assert problem.suggestion is None
    assert "known names are 'load', 'report'" in str(problem)


def test_cycle_reports_its_path() -> None:
    found = problems(
        [spec("a", deps=("c",)), spec("b", deps=("a",)), spec("c", deps=("b",)), spec("d")]
    )
    assert len(found) == 1
    cycle = found[0]
    assert isinstance(cycle, CycleError)
    assert cycle.cycle[0] == cycle.cycle[-1]
    assert set(cycle.cycle) == {"a", "b", "c"}
    assert len(cycle.cycle) == 4
    assert " -> ".join(cycle.cycle) in str(cycle)
    # Each step of the path is a real edge (dependency -> dependant).
    deps = {"a": "c", "b": "a", "c": "b"}
    for upstream, downstream in zip(cycle.cycle, cycle.cycle[1:], strict=False):
        assert deps[downstream] == upstream


def test_cycle_report_is_deterministic() -> None:
    def build() -> tuple[str, ...]:
        specs = [spec("a", deps=("b",)), spec("b", deps=("a",)), spec("x", deps=("b",))]
        found = problems(specs)
        assert isinstance(found[0], CycleError)
        return found[0].cycle

    assert len({build() for _ in range(5)}) == 1


def test_self_loop_is_a_cycle() -> None:
    problem = only_problem([spec("a", deps=("a",))])
    assert isinstance(problem, CycleError)
    assert problem.cycle == ("a", "a")
    assert "a -> a" in str(problem)


def test_main_task_depending_on_a_detached_task_is_rejected() -> None:
    problem = only_problem([spec("side", detached=True), spec("main", deps=("side",))])
    assert isinstance(problem, DetachedDependencyError)
    assert problem.task == "main"
    assert "main task 'main' depends on detached task 'side'" in str(problem)


def test_detached_may_depend_on_detached() -> None:
    graph = TaskGraph.build(
        [spec("m"), spec("d1", deps=("m",), detached=True), spec("d2", deps=("d1",), detached=True)]
    )
    assert graph.detached == {"d1", "d2"}


def test_dependency_without_a_receiving_parameter_is_rejected() -> None:
    def report(lod: int) -> None:
        pass

    found = problems([spec("load"), spec("report", report, deps=("load",))])
    messages = [str(p) for p in found]
    assert all(isinstance(p, SignatureMismatchError) for p in found)
    assert any(
        "task 'report' depends on 'load'" in m and "no parameter 'load'" in m for m in messages
    )
    assert any("did you mean 'lod'" in m for m in messages)
    # 'lod' itself is also required and supplied by nothing
    assert any("required parameter 'lod'" in m for m in messages)


def test_var_keyword_receives_every_dependency() -> None:
    def report(**deps: int) -> int:
        return sum(deps.values())

    graph = TaskGraph.build(
        [spec("a", lambda: 1), spec("b", lambda: 2), spec("report", report, deps=("a", "b"))]
    )
    assert graph.inputs["report"] == ("a", "b")


def test_ordering_only_dependency_needs_no_parameter() -> None:
    calls: list[str] = []
    first = TaskSpec("first", lambda: calls.append("first"))
    second = TaskSpec(
        "second", lambda: calls.append("second"), deps=(Dependency("first", ordering_only=True),)
    )
    graph = TaskGraph.build([second, first])
    assert graph.inputs["second"] == ()
    assert graph.predecessors["second"] == ("first",)
    snap = execute(plan(graph), executor=InlineExecutor())
    assert calls == ["first", "second"]
    assert snap["second"].status is TaskStatus.SUCCEEDED


def test_required_parameter_nothing_supplies_is_rejected() -> None:
    def load(fetch: int, limit: int) -> None:
        pass

    problem = only_problem([spec("fetch"), spec("load", load, deps=("fetch",))])
    assert isinstance(problem, SignatureMismatchError)
    assert "required parameter 'limit'" in str(problem)
    assert "give the parameter a default" in str(problem)


def test_parameters_with_defaults_need_no_supplier() -> None:
    def load(limit: int = 3, *args: int) -> int:
        return limit

    assert TaskGraph.build([spec("load", load)]).inputs["load"] == ()


def test_positional_only_parameters_are_rejected() -> None:
    def receives_dep(fetch: int, /) -> None:
        pass

    def needs_value(x: int, /) -> None:
        pass

    def optional(x: int = 1, /) -> None:
        pass

    found = problems(
        [spec("fetch"), spec("a", receives_dep, deps=("fetch",)), spec("b", needs_value)]
    )
    messages = " | ".join(str(p) for p in found)
    assert "dependency 'fetch' is received by a positional-only parameter" in messages
    assert "positional-only parameter 'x' cannot be supplied" in messages
    assert TaskGraph.build([spec("c", optional)]).order == ("c",)


def test_gate_signatures_are_checked() -> None:
    def body(fetch: int) -> int:
        return fetch

    bad_when = spec("w", body, deps=("fetch",), when=lambda other: True)
    bad_validate = spec("v", body, deps=("fetch",), validate=lambda: None)
    bad_until = spec("u", body, deps=("fetch",), retry_until=lambda a, b: True)
    no_arg_until = spec("n", body, deps=("fetch",), retry_until=lambda: True)
    found = problems([spec("fetch"), bad_when, bad_validate, bad_until, no_arg_until])
    assert len(found) == 4
    assert all(isinstance(p, SignatureMismatchError) for p in found)
    by_task = {p.task: str(p) for p in found}
    assert "when= callable cannot receive keyword arguments fetch" in by_task["w"]
    assert "validate= callable cannot receive keyword arguments fetch" in by_task["v"]
    assert "retry_until= callable cannot receive one positional argument" in by_task["u"]
    assert "retry_until=" in by_task["n"]


def test_gates_that_accept_the_dependency_values_pass() -> None:
    def body(fetch: int) -> int:
        return fetch

    ok = [
        spec("fetch"),
        spec("a", body, deps=("fetch",), when=lambda fetch: fetch, validate=lambda **kw: None),
        spec("b", body, deps=("fetch",), retry_until=lambda value, extra=1: True),
        spec("c", body, deps=("fetch",), when=dict),  # no signature: checked when called
    ]
    assert TaskGraph.build(ok).order == ("fetch", "a", "b", "c")


def test_upstream_and_context_parameters_are_injected() -> None:
    def report(upstream: dict[str, Any], context: object = None) -> tuple[Any, ...]:
        return tuple(sorted(upstream.items())), context

    a, b = spec("a", lambda: 1), spec("b", lambda: 2)
    rep = spec(
        "report", report, deps=("a", "b"), upstream_param="upstream", context_param="context"
    )
    graph = TaskGraph.build([a, b, rep])
    assert graph.inputs["report"] == ()
    ctx = object()
    snap = execute(plan(graph), executor=InlineExecutor(), context=ctx)
    assert snap.value("report") == ((("a", 1), ("b", 2)), ctx)


def test_upstream_and_context_parameters_must_exist() -> None:
    def body() -> None:
        pass

    found = problems(
        [spec("u", body, upstream_param="upstream"), spec("c", body, context_param="ctx")]
    )
    messages = " | ".join(str(p) for p in found)
    assert "its upstream parameter 'upstream' is not a keyword parameter" in messages
    assert "its context parameter 'ctx' is not a keyword parameter" in messages


def test_every_problem_is_reported_together() -> None:
    def report(x: int) -> None:
        pass

    specs = [
        spec("dup"),
        spec("dup"),
        spec("missing", deps=("nowhere",)),
        spec("loop", deps=("loop",)),
        spec("side", detached=True),
        spec("main", deps=("side",)),
        spec("report", report),
    ]
    with pytest.raises(GraphValidationError) as info:
        TaskGraph.build(specs)
    group = info.value
    assert isinstance(group, ValueError)
    assert isinstance(group, ExceptionGroup)
    kinds = {type(e) for e in group.exceptions}
    assert kinds == {
        DuplicateTaskError,
        UnknownTaskError,
        CycleError,
        DetachedDependencyError,
        SignatureMismatchError,
    }
    assert f"({len(group.exceptions)} problem(s))" in str(group)

    caught: list[type[BaseException]] = []
    try:
        TaskGraph.build(specs)
    except* CycleError as cycles:
        caught.extend(type(e) for e in cycles.exceptions)
    except* DefinitionError as rest:
        caught.extend(type(e) for e in rest.exceptions)
    assert CycleError in caught
    assert len(caught) == len(group.exceptions)


def test_non_specs_are_reported() -> None:
    def plain() -> None:
        pass

    problem = only_problem([spec("a"), plain])  # type: ignore[list-item]
    assert "expected task specs" in str(problem)
    assert "decorate it with @task" in str(problem)


def test_empty_graph_is_a_clear_error() -> None:
    with pytest.raises(GraphValidationError, match="cannot build an empty graph") as info:
        TaskGraph.build([])
    assert "declare at least one task" in str(info.value.exceptions[0])


# -- from_terminals ---------------------------------------------------------------------------


def test_from_terminals_collects_upstream_tasks(registry: Registry) -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a

    @task
    def unrelated() -> None:
        pass

    assert TaskGraph.from_terminals(b).order == ("a", "b")


def test_from_terminals_discovers_detached_tasks_and_chains(registry: Registry) -> None:
    @task
    def fetch() -> int:
        return 1

    @task(depends_on=[fetch])
    def load(fetch: int) -> int:
        return fetch

    @task(depends_on=[load], detached=True)
    def notify(load: int) -> str:
        return "sent"

    @task(depends_on=[notify], detached=True)
    def audit(notify: str) -> None:
        pass

    @task(depends_on=["fetch"], detached=True)
    def by_name(fetch: int) -> None:
        pass

    graph = TaskGraph.from_terminals(load)
    assert graph.order == ("fetch", "load", "notify", "audit", "by_name")
    assert graph.detached == {"notify", "audit", "by_name"}


def test_from_terminals_ignores_stale_specs_with_the_same_name(registry: Registry) -> None:
    @task
    def fetch() -> int:
        return 1

    @task(depends_on=[fetch], detached=True)
    def stale_side_effect(fetch: int) -> None:
        pass

    @task  # type: ignore[no-redef]  # re-declared: the detached task depends on the old one
    def fetch() -> int:
        return 2

    graph = TaskGraph.from_terminals(fetch)
    assert graph.order == ("fetch",)
    assert graph["fetch"] is fetch


def test_from_terminals_ignores_detached_tasks_with_unreachable_deps(registry: Registry) -> None:
    @task
    def a() -> int:
        return 1

    @task
    def elsewhere() -> int:
        return 2

    @task(depends_on=[a, elsewhere], detached=True)
    def needs_both(a: int, elsewhere: int) -> None:
        pass

    assert TaskGraph.from_terminals(a).order == ("a",)
    assert TaskGraph.from_terminals(a, elsewhere).order == ("a", "elsewhere", "needs_both")


def test_from_terminals_reads_an_explicit_registry_even_when_empty(registry: Registry) -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a], detached=True)
    def side(a: int) -> None:
        pass

    assert TaskGraph.from_terminals(a).order == ("a", "side")  # the active registry
    assert TaskGraph.from_terminals(a, registry=Registry()).order == ("a",)


# -- scale ------------------------------------------------------------------------------------


def test_a_100k_deep_chain_builds_plans_and_executes_without_recursion() -> None:
    depth = 100_000

    def first() -> int:
        return 0

    def step(**upstream: int) -> int:
        (value,) = upstream.values()
        return value + 1

    began = time.perf_counter()
    specs = [TaskSpec("t0", first)]
    specs.extend(TaskSpec(f"t{i}", step, deps=(Dependency(f"t{i - 1}"),)) for i in range(1, depth))
    graph = TaskGraph.build(reversed(specs))
    assert graph.order[0] == "t0"
    assert graph.order[-1] == f"t{depth - 1}"
    assert len(graph.ancestors([f"t{depth - 1}"])) == depth - 1
    the_plan = plan(graph, targets=[f"t{depth - 1}"])
    assert len(the_plan.to_run) == depth
    snap = execute(the_plan, executor=InlineExecutor())
    assert snap.value(f"t{depth - 1}") == depth - 1
    # Correctness, not a benchmark: generous, so a loaded machine does not flake.
    assert time.perf_counter() - began < 60
