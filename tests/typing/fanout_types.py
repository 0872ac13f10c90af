"""Typing tests for dynamic fan-out (``fan_out=``): checked by ``mypy --strict``, never run.

Covered: ``@task(fan_out=...)`` accepts a task or a name, returns a ``MappedTaskSpec`` and keeps
the exact signature (the spec is called with one element, as in a unit test);
``@engine.task(fan_out=...)`` likewise; ``Snapshot.value`` / ``Flow.value`` type a fan-out task's
value as ``list[R]`` (``list[T]`` for ``async def`` elements returning ``T``);
``TaskSpec.fan_out`` is the dependency's name; ``FanOutError`` carries its data as typed
attributes; ``Plan.elements`` maps element names to records. Each ``# type: ignore[code]`` pins
a mistake mypy must reject (``warn_unused_ignores`` fails the check if it stops being one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_type

from mypy_extensions import Arg

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


assert_type(count_rows, MappedTaskSpec[[Arg(str, "list_files")], int])
assert_type(by_name, MappedTaskSpec[[Arg(str, "list_files")], str])
assert_type(list_files, TaskSpec[[], list[str]])  # without fan_out=: a plain TaskSpec
assert_type(count_rows(list_files="a.csv"), int)
assert_type(count_rows.fan_out, str | None)

_engine = flowrun.build_default_engine()


@_engine.task(name="engine_rows", deps=["list_files"], fan_out="list_files")
def engine_rows(list_files: str) -> int:
    return len(list_files)


assert_type(engine_rows, MappedTaskSpec[[Arg(str, "list_files")], int])


@flowrun.task(registry=flowrun.TaskRegistry(), deps=["list_files"], fan_out="list_files")
def module_rows(list_files: str) -> int:
    return len(list_files)


assert_type(module_rows, MappedTaskSpec[[Arg(str, "list_files")], int])


@_engine.task(name="engine_plain", deps=["list_files"])
def engine_plain(list_files: list[str]) -> int:
    return len(list_files)


assert_type(engine_plain, TaskSpec[[Arg(list[str], "list_files")], int])


@task(depends_on=[list_files], fan_out=list_files, registry=_registry)
async def fetch_one(list_files: str) -> bytes:
    return list_files.encode()


def _values(snapshot: Snapshot, flow: Flow, simulation: Simulation) -> None:
    # a fan-out task's value is the list of its elements' values; calling it stays one element
    assert_type(snapshot.value(count_rows), list[int])
    assert_type(snapshot.value(fetch_one), list[bytes])
    assert_type(snapshot.value(list_files), list[str])
    assert_type(flow.value(count_rows), list[int])
    assert_type(flow.value(fetch_one), list[bytes])
    assert_type(simulation.snapshot.value(engine_rows), list[int])
    mapped: TaskSpec[..., int] = count_rows  # still a TaskSpec (depends_on=, targets=, ...)
    assert_type(snapshot.value(mapped), int)
    wrong: int = snapshot.value(count_rows)  # type: ignore[assignment]  # a list, not one int
    del wrong


def _errors(exc: FanOutError) -> None:
    assert_type(exc.task, str)
    assert_type(exc.upstream, str)
    assert_type(exc.value_type, str)


def _plan_elements(graph: TaskGraph) -> None:
    assert_type(plan(graph).elements, Mapping[str, TaskRecord])


task(fan_out=3)  # type: ignore[call-overload]
