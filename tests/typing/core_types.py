"""Typing tests for the core: checked by ``mypy --strict`` and pyright (strict), never run.

Each ``assert_type`` pins a type the public API promises to both checkers; each line with
``# type: ignore[code]  # pyright: ignore[rule]`` pins a mistake both must reject —
``warn_unused_ignores`` (mypy) and ``reportUnnecessaryTypeIgnoreComment`` (pyright) turn an
ignore that stops being needed into an error, so a regression in either direction fails.
Nothing here runs at import: bare ``@task`` (which registers into the default registry) is
used only inside function bodies, and decorated module-level tasks use a private registry.

Covered: ``@task`` bare and ``@task(...)`` keep the exact signature (``TaskSpec[P, R]``),
calling a spec returns ``R`` and rejects wrong arguments, ``async def`` tasks are
``TaskSpec[P, Coroutine[Any, Any, R]]`` (pyright: ``CoroutineType``, a subtype) and
``Snapshot.value`` unwraps them to ``R``,
``TaskSpec(...)`` built directly, ``TaskGraph.build`` / ``from_terminals``, ``plan``,
``execute`` / ``aexecute``, ``Snapshot`` accessors and ``Plan`` queries, and the flowing
façade: ``Flow.value(task)`` is typed by the task like ``Snapshot.value``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol, assert_type

import structlog

from flowplan import (
    Action,
    Dependency,
    Flow,
    InlineExecutor,
    Plan,
    Registry,
    Snapshot,
    StepResult,
    StepState,
    StructlogHook,
    TaskGraph,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    aexecute,
    execute,
    plan,
    task,
)

_registry = Registry()

# -- @task(...) with options keeps the exact signature ------------------------------------------


@task(registry=_registry)
def fetch() -> dict[str, list[int]]:
    return {"items": [1, 2, 3]}


@task(depends_on=[fetch], retry=2, timeout_s=5.0, registry=_registry)
def total(fetch: dict[str, list[int]]) -> int:
    return sum(fetch["items"])


@task(depends_on=["total"], name="render", registry=_registry)
def render_total(total: int, *, unit: str = "items") -> str:
    return f"{total} {unit}"


@task(registry=_registry)
async def fetch_async() -> int:
    return 1


@task(depends_on=[fetch_async], registry=_registry)
async def double_async(fetch_async: int) -> list[int]:
    return [fetch_async, fetch_async]


# Parameter names and kinds are part of the type: a Protocol's ``__call__`` spells them (for
# mypy and pyright alike), so a renamed or re-kinded parameter fails these lines too.
class TotalCall(Protocol):
    def __call__(self, fetch: dict[str, list[int]]) -> int: ...


class RenderCall(Protocol):
    def __call__(self, total: int, *, unit: str = ...) -> str: ...


class DoubleAsyncCall(Protocol):
    def __call__(self, fetch_async: int) -> Coroutine[Any, Any, list[int]]: ...


class RenamedTotalCall(Protocol):
    def __call__(self, fetched: dict[str, list[int]]) -> int: ...


class PositionalUnitCall(Protocol):
    def __call__(self, total: int, unit: str = ..., /) -> str: ...


assert_type(fetch, TaskSpec[[], dict[str, list[int]]])
total_call: TotalCall = total
render_call: RenderCall = render_total
fetch_async_spec: TaskSpec[[], Coroutine[Any, Any, int]] = fetch_async
double_async_call: DoubleAsyncCall = double_async
renamed: RenamedTotalCall = total  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
re_kinded: PositionalUnitCall = render_total  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


def _scale(x: int, factor: float = 2.0) -> float:
    return x * factor


class ScaleCall(Protocol):
    def __call__(self, x: int, factor: float = ...) -> float: ...


# The decorator with options, applied as a plain call.
scale_call: ScaleCall = task(retry=1, registry=_registry)(_scale)


def call_specs() -> None:
    """Calling a spec calls the function: its return type, its parameter types."""
    assert_type(fetch(), dict[str, list[int]])
    assert_type(total({"items": [1]}), int)
    assert_type(total(fetch={"items": [1]}), int)
    assert_type(render_total(3), str)
    assert_type(render_total(3, unit="apples"), str)
    coroutine: Coroutine[Any, Any, int] = fetch_async()  # bound: must be used
    coroutine.close()

    total(fetch=[1, 2])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    total(fetch={"items": ["a"]})  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    total()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    total(fetch={"items": [1]}, extra=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    fetch(1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    render_total("3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    render_total(3, "apples")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    render_total(3, unit=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    wrong_return: str = total(fetch={"items": [1]})  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


# -- bare @task keeps the exact signature ---------------------------------------------------


def bare_decorator() -> None:
    """``@task`` without parentheses (inside a function: nothing registers at import)."""

    @task
    def load() -> dict[str, list[int]]:
        return {"items": [1, 2, 3]}

    @task
    def scale(load: dict[str, list[int]], factor: float = 2.0) -> list[float]:
        return [x * factor for x in load["items"]]

    @task
    async def ping() -> int:
        return 1

    class LoadScaleCall(Protocol):
        def __call__(self, load: dict[str, list[int]], factor: float = ...) -> list[float]: ...

    assert_type(load, TaskSpec[[], dict[str, list[int]]])
    scale_call: LoadScaleCall = scale
    ping_spec: TaskSpec[[], Coroutine[Any, Any, int]] = ping
    assert_type(load(), dict[str, list[int]])
    assert_type(scale({"items": [1]}), list[float])
    assert_type(scale(load={"items": [1]}, factor=0.5), list[float])
    coroutine: Coroutine[Any, Any, int] = ping()  # bound: must be used
    coroutine.close()

    scale({"items": [1]}, factor="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    scale(["1"])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    load(None)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

    snapshot = execute(plan(TaskGraph.build([load, scale, ping])))
    assert_type(snapshot.value(load), dict[str, list[int]])
    assert_type(snapshot.value(scale), list[float])
    assert_type(snapshot.value(ping), int)


def not_a_function() -> None:
    """``@task`` applies to callables only."""
    task(42)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    task(retry="3")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


# -- TaskSpec built directly ----------------------------------------------------------------


def _double(x: int) -> int:
    return 2 * x


def _collect(**deps: object) -> tuple[object, ...]:
    return tuple(deps.values())


def direct_specs() -> None:
    """``TaskSpec(name, fn, deps=...)`` infers ``P`` and ``R`` from ``fn``."""

    class DoubleCall(Protocol):
        def __call__(self, x: int) -> int: ...

    class CollectCall(Protocol):
        def __call__(self, **deps: object) -> tuple[object, ...]: ...

    double = TaskSpec("double", _double)
    double_call: DoubleCall = double
    assert_type(double(21), int)
    double("21")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    collect = TaskSpec("collect", _collect, deps=(Dependency("double"),))
    collect_call: CollectCall = collect
    assert_type(collect(double=1), tuple[object, ...])
    assert_type(collect.deps, tuple[Dependency, ...])
    assert_type(collect.dep_names, tuple[str, ...])
    assert_type(collect.name, str)
    collect_fn: CollectCall = collect.fn

    TaskSpec("bad", _double, deps=("double",))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# -- graph → plan → execute → snapshot ------------------------------------------------------


def pipeline() -> None:
    """The core's entry points return the documented types."""
    graph = TaskGraph.build([fetch, total, render_total])
    assert_type(graph, TaskGraph)
    assert_type(TaskGraph.from_terminals(render_total, registry=_registry), TaskGraph)
    assert_type(graph.order, tuple[str, ...])
    assert_type(graph["total"], TaskSpec[..., Any])

    fresh = plan(graph)
    assert_type(fresh, Plan)
    assert_type(plan(graph, None, targets=[total], rerun=["fetch"], overrides={fetch: {}}), Plan)
    assert_type(fresh.to_run, tuple[str, ...])
    assert_type(fresh.action(total), Action)
    assert_type(fresh.explain(), str)

    snapshot = execute(fresh)
    assert_type(snapshot, Snapshot)
    assert_type(execute(fresh, executor=InlineExecutor()), Snapshot)
    assert_type(execute(fresh, max_workers=4, fail_fast=False), Snapshot)
    assert_type(plan(graph, snapshot), Plan)  # resume

    assert_type(snapshot.value(fetch), dict[str, list[int]])
    assert_type(snapshot.value(total), int)
    assert_type(snapshot.value(render_total), str)
    assert_type(snapshot.value(fetch_async), int)
    assert_type(snapshot.value(double_async), list[int])
    assert_type(snapshot.value("total"), Any)
    assert_type(snapshot[total], TaskRecord)
    assert_type(snapshot["total"], TaskRecord)
    assert_type(snapshot.get(total), TaskRecord | None)
    assert_type(snapshot[total].status, TaskStatus)
    assert_type(snapshot.by_status(TaskStatus.FAILED), tuple[str, ...])

    wrong: str = snapshot.value(total)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    snapshot.value(42)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    execute(graph)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    plan([fetch])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def async_pipeline() -> None:
    """``aexecute`` returns a ``Snapshot``; async task values unwrap to their result type."""
    snapshot = await aexecute(plan(TaskGraph.build([fetch_async, double_async])))
    assert_type(snapshot, Snapshot)
    assert_type(snapshot.value(fetch_async), int)
    assert_type(snapshot.value(double_async), list[int])


# -- the flowing façade: Flow ---------------------------------------------------------------


def flow_facade() -> None:
    """``Flow.value(task)`` returns the task's type (awaited for ``async def`` tasks)."""
    flow = Flow(render_total, double_async, registry=_registry)
    results = flow.run()
    assert_type(results, dict[str, StepResult])
    assert_type(flow.resume(), dict[str, StepResult])
    assert_type(results["total"].state, StepState)
    assert_type(flow.value(fetch), dict[str, list[int]])
    assert_type(flow.value(total), int)
    assert_type(flow.value(render_total), str)
    assert_type(flow.value(fetch_async), int)
    assert_type(flow.value(double_async), list[int])
    assert_type(flow.value("total"), Any)
    assert_type(flow.snapshot, Snapshot | None)
    flow.override(fetch, {"items": [4]})

    wrong: str = flow.value(total)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    flow.value(3)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    Flow(_double)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def timeout_errors() -> None:
    from flowplan import TaskTimeoutError

    error = TaskTimeoutError("fetch", 1.0, 1, detail="it blocked the event loop")
    assert_type(error.detail, str)
    assert_type(error.timeout_s, float)


def flow_logging_options() -> None:
    """``Flow(log=)`` takes a bool; ``logger=`` any structlog-style logger; a StructlogHook in
    ``hooks=`` replaces the built-in one."""
    assert_type(Flow(total, log=False), Flow)
    assert_type(Flow(total, log=True, logger=structlog.get_logger("app")), Flow)
    assert_type(Flow(total, hooks=[StructlogHook(exclude=("task_started",))]), Flow)
    Flow(total, log="no")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
