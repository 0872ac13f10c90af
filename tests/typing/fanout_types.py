"""Typing tests for dynamic fan-out (``fan_out=``): checked by ``mypy --strict``, never run.

Covered: ``@task(fan_out=...)`` accepts a task or a name and keeps the exact signature (the spec
is called with one element, as in a unit test); ``@engine.task(fan_out=...)`` likewise;
``TaskSpec.fan_out`` is the dependency's name; ``FanOutError`` carries its data as typed
attributes; ``Plan.elements`` maps element names to records. Each ``# type: ignore[code]`` pins
a mistake mypy must reject (``warn_unused_ignores`` fails the check if it stops being one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_type

from mypy_extensions import Arg

import flowplan.engine as flowrun
from flowplan import FanOutError, Registry, TaskGraph, TaskRecord, TaskSpec, plan, task

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


assert_type(count_rows, TaskSpec[[Arg(str, "list_files")], int])
assert_type(by_name, TaskSpec[[Arg(str, "list_files")], str])
assert_type(count_rows(list_files="a.csv"), int)
assert_type(count_rows.fan_out, str | None)

_engine = flowrun.build_default_engine()


@_engine.task(name="engine_rows", deps=["list_files"], fan_out="list_files")
def engine_rows(list_files: str) -> int:
    return len(list_files)


assert_type(engine_rows, TaskSpec[[Arg(str, "list_files")], int])


def _errors(exc: FanOutError) -> None:
    assert_type(exc.task, str)
    assert_type(exc.upstream, str)
    assert_type(exc.value_type, str)


def _plan_elements(graph: TaskGraph) -> None:
    assert_type(plan(graph).elements, Mapping[str, TaskRecord])


task(fan_out=3)  # type: ignore[call-overload]
