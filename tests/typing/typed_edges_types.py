"""Typing tests for typed edges: checked by ``mypy --strict`` and pyright, never run.

Pins the ``check_types`` option (``bool | None``) on every path that builds a graph
(``TaskGraph.build`` / ``from_terminals``, ``Flow``, ``Engine`` / ``build_default_engine``), the
data of :class:`EdgeTypeError` and :class:`MissingExtraError`, and the typed wiring path: a
task's handle carries its result type, so ``snapshot.value(t)`` / ``flow.value(t)`` are typed
for sync, ``async def`` and engine-declared tasks alike. Each ``# type: ignore[code]`` pins a
mistake both checkers must reject (each fails on an ignore that stops being needed).
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, assert_type

from flowplan import (
    EdgeTypeError,
    Flow,
    MissingExtraError,
    Registry,
    TaskGraph,
    TaskSpec,
    execute,
    plan,
    task,
)
from flowplan.engine import Engine, build_default_engine

_registry = Registry()


@task(registry=_registry)
def load() -> list[str]:
    return ["a", "b"]


@task(depends_on=[load], registry=_registry)
def count(load: Sequence[str]) -> int:
    return len(load)


@task(depends_on=[count], registry=_registry)
async def report(count: int) -> dict[str, int]:
    return {"rows": count}


def check_types_option() -> None:
    """``check_types`` is ``bool | None`` wherever a graph is built."""
    assert_type(TaskGraph.build([load, count]), TaskGraph)
    assert_type(TaskGraph.build([load, count], check_types=None), TaskGraph)
    assert_type(TaskGraph.build([load, count], check_types=True), TaskGraph)
    assert_type(TaskGraph.build([load, count], check_types=False), TaskGraph)
    assert_type(TaskGraph.from_terminals(count, registry=_registry, check_types=False), TaskGraph)
    assert_type(Flow(count, registry=_registry, check_types=True), Flow)
    assert_type(build_default_engine(check_types=False), Engine)
    assert_type(Engine(check_types=None), Engine)

    TaskGraph.build([load], check_types="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    TaskGraph.build([load], True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    Flow(count, check_types=1.0)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    build_default_engine(check_types="strict")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def error_data(error: EdgeTypeError, missing: MissingExtraError) -> None:
    """The errors carry their data as typed attributes."""
    assert_type(error.producer, str)
    assert_type(error.consumer, str)
    assert_type(error.parameter, str)
    assert_type(error.produced, object)
    assert_type(error.expected, object)
    assert_type(error.gate, str | None)
    assert_type(error.task, str | None)
    assert_type(missing.extra, str)
    assert_type(missing.package, str)


def typed_wiring() -> None:
    """A handle carries its result type: values read back through it are typed."""
    assert_type(load, TaskSpec[[], list[str]])

    class ReportCall(Protocol):
        def __call__(self, count: int) -> Coroutine[Any, Any, dict[str, int]]: ...

    report_call: ReportCall = report
    snapshot = execute(plan(TaskGraph.build([load, count, report], check_types=True)))
    assert_type(snapshot.value(load), list[str])
    assert_type(snapshot.value(count), int)
    assert_type(snapshot.value(report), dict[str, int])  # awaited type of an async task
    flow = Flow(report, registry=_registry)
    assert_type(flow.value(count), int)
    assert_type(flow.value(report), dict[str, int])

    wrong: str = snapshot.value(count)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    also_wrong: str = flow.value(report)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


def engine_handles() -> None:
    """Tasks declared with ``@engine.task`` are typed handles too."""
    engine = build_default_engine(check_types=True)

    @engine.task(name="fetch")
    def fetch() -> bytes:
        return b""

    @engine.task(name="size", deps=["fetch"])
    async def size(fetch: bytes) -> int:
        return len(fetch)

    assert_type(fetch, TaskSpec[[], bytes])
    snapshot = execute(plan(engine.graph("default")))
    assert_type(snapshot.value(fetch), bytes)
    assert_type(snapshot.value(size), int)
    wrong: str = snapshot.value(size)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    engine.close()
