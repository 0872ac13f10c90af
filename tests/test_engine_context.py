"""A run's context is checked against the DAG's ``Deps`` before any task starts.

Type checkers tie ``engine.dag("etl", deps=Deps).run_once(context)`` to ``RunContext[Deps]``
(tests/typing/engine_types.py); these tests pin the run-time side, which also covers untyped
callers and ``engine.run_once("etl", ...)``: a non-``RunContext`` context, a ``deps`` of
another class than the DAG declares, or than a task's ``RunContext[Deps]`` annotation names,
fails at run start with an error naming the task and both classes — and no task body runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from flowplan import FlowplanError, TaskStatus
from flowplan.engine import Engine, RunContext, build_default_engine
from flowplan.errors import InvalidOptionError

T = TypeVar("T")


@dataclass(frozen=True)
class Deps:
    api_base: str


@dataclass(frozen=True)
class OtherDeps:
    region: str


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def etl_engine(calls: list[str], *, declare: bool) -> Engine:
    engine = build_default_engine(max_workers=2)
    scope = engine.dag("etl", deps=Deps) if declare else engine.dag("etl")

    @scope.task(name="extract")
    def extract(context: RunContext[Deps]) -> str:
        calls.append("extract")
        return context.deps.api_base

    @scope.task(name="load", deps=[extract])
    def load(extract: str) -> int:
        calls.append("load")
        return len(extract)

    return engine


def test_a_context_that_is_no_run_context_fails_at_run_start() -> None:
    calls: list[str] = []
    engine = etl_engine(calls, declare=False)
    untyped: Any = 42  # what an untyped caller can still pass
    with pytest.raises(InvalidOptionError, match=r"'etl'.*must be a RunContext.*42.*int") as exc:
        run(engine.run_once("etl", untyped))
    assert isinstance(exc.value, FlowplanError)
    assert exc.value.option == "context"
    assert exc.value.value == 42
    assert calls == []
    engine.close()


def test_deps_of_another_class_than_the_task_annotates_fails_naming_the_task() -> None:
    calls: list[str] = []
    engine = etl_engine(calls, declare=False)  # only the task's annotation knows Deps
    wrong: Any = RunContext(OtherDeps(region="eu"))
    with pytest.raises(InvalidOptionError, match=r"task 'extract'.*RunContext\[Deps\]") as exc:
        run(engine.run_once("etl", wrong))
    assert "OtherDeps" in str(exc.value)
    assert "context=RunContext(Deps(...))" in str(exc.value)
    assert exc.value.task == "extract"
    assert calls == []
    assert engine.state_store.list_runs() == []  # nothing recorded: the run never started
    engine.close()


def test_deps_of_another_class_than_the_dag_declares_fails_through_every_entry_point() -> None:
    calls: list[str] = []
    engine = etl_engine(calls, declare=True)
    scope = engine.dag("etl", deps=Deps)  # the same declaration again is fine
    wrong: Any = RunContext(OtherDeps(region="eu"))
    starts: list[Callable[[], Coroutine[Any, Any, str]]] = [
        lambda: engine.run_once("etl", wrong),
        lambda: scope.run_once(wrong),
        lambda: scope.run_subgraph(["load"], wrong),
        lambda: engine.run_subgraph("etl", ["extract"], wrong),
    ]
    for start in starts:
        with pytest.raises(InvalidOptionError, match=r"declares deps=Deps.*OtherDeps"):
            run(start())
    assert calls == []
    engine.close()


def test_a_declared_dag_checks_deps_even_for_tasks_without_an_annotation() -> None:
    engine = build_default_engine(max_workers=2)
    scope = engine.dag("etl", deps=Deps)

    @scope.task(name="ping")
    def ping(context: RunContext) -> str:  # type: ignore[type-arg]  # bare: no Deps to read
        return "pong"

    with pytest.raises(InvalidOptionError, match=r"declares deps=Deps"):
        run(scope.run_once(RunContext(OtherDeps("eu"))))  # type: ignore[arg-type]
    run_id = run(scope.run_once(RunContext(Deps("u"))))
    assert engine.state_store.load(run_id).value(ping) == "pong"
    engine.close()


def test_the_right_context_runs_and_resume_is_checked_too() -> None:
    calls: list[str] = []
    engine = etl_engine(calls, declare=True)
    scope = engine.dag("etl", deps=Deps)
    run_id = run(scope.run_once(RunContext(Deps(api_base="https://x"))))
    assert calls == ["extract", "load"]
    snapshot = engine.state_store.load(run_id)
    assert snapshot["load"].status is TaskStatus.SUCCEEDED
    assert snapshot.value("load") == len("https://x")
    wrong: Any = RunContext(OtherDeps(region="eu"))
    with pytest.raises(InvalidOptionError, match=r"declares deps=Deps"):
        run(engine.resume(run_id, from_tasks=["extract"], context=wrong))
    assert calls == ["extract", "load"]
    engine.close()


def test_a_generic_deps_annotation_is_checked_by_its_class() -> None:
    engine = build_default_engine(max_workers=2)

    @engine.task(name="read", dag="cfg")
    def read(ctx: RunContext[dict[str, str]]) -> str:
        return ctx.deps["suffix"]

    wrong: Any = RunContext(Deps("u"))
    with pytest.raises(InvalidOptionError, match=r"task 'read'.*RunContext\[dict\]"):
        run(engine.run_once("cfg", wrong))
    run_id = run(engine.run_once("cfg", RunContext({"suffix": "!"})))
    assert engine.state_store.load(run_id).value(read) == "!"
    engine.close()


def test_a_dag_has_one_deps_class() -> None:
    engine = build_default_engine(max_workers=1)
    engine.dag("etl", deps=Deps)
    with pytest.raises(InvalidOptionError, match=r"declared with deps=Deps already.*OtherDeps"):
        engine.dag("etl", deps=OtherDeps)
    not_a_class: Any = Deps("u")
    with pytest.raises(InvalidOptionError, match=r"deps= must be the class"):
        engine.dag("other", deps=not_a_class)
    engine.close()
