"""Typing tests for dynamic fan-out (``fan_out=``): checked by mypy and pyright, never run.

Covered: ``@task(fan_out=...)`` accepts a task or a name, returns a ``MappedTaskSpec`` and keeps
the exact signature (the spec is called with one element, as in a unit test);
``@engine.task(fan_out=...)`` likewise; ``Snapshot.value`` / ``Flow.value`` type a fan-out task's
value as ``list[R]`` (``list[T]`` for ``async def`` elements returning ``T``);
``TaskSpec.fan_out`` is the dependency's name; ``FanOutError`` carries its data as typed
attributes; ``Plan.elements`` maps element names to records. Each ``# type: ignore[code]`` pins
a mistake both checkers must reject (each fails on an ignore that stops being needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, assert_type

import flowplan.engine as flowrun
from flowplan import (
    FanOutError,
    Flow,
    MappedTaskSpec,
    Registry,
    Simulation,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskSpec,
    plan,
    task,
)

_registry = Registry()


@task(registry=_registry)
def list_files() -> list[str]:
    return ["a.csv"]


@task(depends_on=[list_files], fan_out=list_files, registry=_registry)
def count_rows(list_files: str) -> int:
    return len(list_files)


@task(depends_on=["list_files"], fan_out="list_files", retry=2, registry=_registry)
def by_name(list_files: str) -> str:
    return list_files


class CountRowsCall(Protocol):
    def __call__(self, list_files: str) -> int: ...


count_rows_call: CountRowsCall = count_rows
count_rows_mapped: MappedTaskSpec[..., int] = count_rows


class ByNameCall(Protocol):
    def __call__(self, list_files: str) -> str: ...


by_name_call: ByNameCall = by_name
by_name_mapped: MappedTaskSpec[..., str] = by_name
assert_type(list_files, TaskSpec[[], list[str]])  # without fan_out=: a plain TaskSpec
assert_type(count_rows(list_files="a.csv"), int)
assert_type(count_rows.fan_out, str | None)

_engine = flowrun.build_default_engine()


@_engine.task(name="engine_rows", deps=["list_files"], fan_out="list_files")
def engine_rows(list_files: str) -> int:
    return len(list_files)


class EngineRowsCall(Protocol):
    def __call__(self, list_files: str) -> int: ...


engine_rows_call: EngineRowsCall = engine_rows
engine_rows_mapped: MappedTaskSpec[..., int] = engine_rows


@flowrun.task(registry=flowrun.TaskRegistry(), deps=["list_files"], fan_out="list_files")
def module_rows(list_files: str) -> int:
    return len(list_files)


class ModuleRowsCall(Protocol):
    def __call__(self, list_files: str) -> int: ...


module_rows_call: ModuleRowsCall = module_rows
module_rows_mapped: MappedTaskSpec[..., int] = module_rows


@_engine.task(name="engine_plain", deps=["list_files"])
def engine_plain(list_files: list[str]) -> int:
    return len(list_files)


class EnginePlainCall(Protocol):
    def __call__(self, list_files: list[str]) -> int: ...


engine_plain_call: EnginePlainCall = engine_plain


@task(depends_on=[list_files], fan_out=list_files, registry=_registry)
async def fetch_one(list_files: str) -> bytes:
    return list_files.encode()


def fanout_values(snapshot: Snapshot, flow: Flow, simulation: Simulation) -> None:
    # a fan-out task's value is the list of its elements' values; calling it stays one element
    assert_type(snapshot.value(count_rows), list[int])
    assert_type(snapshot.value(fetch_one), list[bytes])
    assert_type(snapshot.value(list_files), list[str])
    assert_type(flow.value(count_rows), list[int])
    assert_type(flow.value(fetch_one), list[bytes])
    assert_type(simulation.snapshot.value(engine_rows), list[int])
    # still a TaskSpec (depends_on=, targets=, ...), but not one whose value is one element:
    # its value is a list, so a fan-out spec is no ``TaskSpec[..., int]`` to either checker
    any_task: TaskSpec[..., object] = count_rows
    mapped: TaskSpec[..., int] = count_rows  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    wrong: int = snapshot.value(count_rows)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    wrong_async: bytes = flow.value(fetch_one)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    takes_int_task(count_rows)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_int_task(fetch_one)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def takes_int_task(spec: TaskSpec[..., int]) -> None:
    """A user's function that reads one ``int`` from the task it is given."""


def fanout_errors(exc: FanOutError) -> None:
    assert_type(exc.task, str)
    assert_type(exc.upstream, str)
    assert_type(exc.value_type, str)


def fanout_plan_elements(graph: TaskGraph) -> None:
    assert_type(plan(graph).elements, Mapping[str, TaskRecord])


task(fan_out=3)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
