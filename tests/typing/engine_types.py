"""Static types of flowplan.engine, pinned with ``assert_type`` (mypy and pyright; never run)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, assert_type

import flowplan.engine as flowrun_api
from flowplan import TaskStatus
from flowplan.engine import (
    DagScope,
    Engine,
    JsonSerializer,
    PickleSerializer,
    ResultSerializer,
    RunContext,
    SqliteStateStore,
    TaskRegistry,
    TaskTemplate,
    build_default_engine,
    fn_hook,
    task,
)
from flowplan.engine import RunHook as RunHookType
from flowplan.spec import TaskSpec


@dataclass(frozen=True)
class Deps:
    api_base: str
    retries: int


engine = build_default_engine(max_workers=2, max_parallel=2)
assert_type(engine, Engine)
assert_type(engine.dag("etl"), DagScope[Any])


@engine.task(name="extract", dag="etl")
def extract(context: RunContext[Deps]) -> list[int]:
    assert_type(context.deps, Deps)
    assert_type(context.deps.retries, int)
    assert_type(context.deps.api_base, str)
    # the run-time fallback to deps is hidden from type checkers: a typo is an error
    base = context.api_base  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    typo = context.api_bse  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    return [1, 2]


extract_spec: TaskSpec[[RunContext[Deps]], list[int]] = extract
wrong_param: TaskSpec[[int], list[int]] = extract  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
wrong_return: TaskSpec[[RunContext[Deps]], str] = extract  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
assert_type(extract(RunContext(Deps("u", 1))), list[int])


@engine.task
def bare(x: int, *, y: str = "") -> float:
    return 1.0


assert_type(bare(1, y="a"), float)


@engine.task("named", dag="etl", deps=[extract], retries=2)
async def fetch(extract: list[int]) -> str:
    return str(extract)


fetch_spec: TaskSpec[[list[int]], Coroutine[Any, Any, str]] = fetch
bare(1, y=2)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

registry = TaskRegistry()


@task(registry=registry)
def global_one() -> int:
    return 1


@task
def global_bare() -> bytes:
    return b""


assert_type(global_one, TaskSpec[[], int])
assert_type(global_bare, TaskSpec[[], bytes])


def fetch_table(*, table: str) -> str:
    return table


template = engine.task_template(fetch_table, dag="etl")
assert isinstance(template, TaskTemplate)
assert_type(template.bind("users", table="users"), TaskSpec[..., str])

context = RunContext(Deps("u", 3))
assert_type(context, RunContext[Deps])
on_fail: Callable[[Any], object] = print
assert_type(fn_hook(on_task_failure=on_fail), RunHookType)


class Base64Serializer:  # flowrun's ResultSerializer protocol only: serialize / deserialize
    def serialize(self, obj: Any) -> bytes:
        return repr(obj).encode()

    def deserialize(self, data: bytes) -> Any:
        return data.decode()


flowrun_serializer: ResultSerializer = Base64Serializer()
json_as_flowrun: ResultSerializer = JsonSerializer()
assert_type(JsonSerializer().serialize({"a": 1}), bytes)
assert_type(PickleSerializer().deserialize(b""), Any)
sqlite_store = SqliteStateStore(":memory:", serializer=Base64Serializer())
assert_type(sqlite_store, SqliteStateStore)


# -- a run's context is tied to the DAG's Deps --------------------------------------------


@dataclass(frozen=True)
class OtherDeps:
    region: str


etl = engine.dag("etl", deps=Deps)
assert_type(etl, DagScope[Deps])
assert_type(etl.deps, type[Deps] | None)


async def typed_runs() -> None:
    assert_type(await etl.run_once(RunContext(Deps("u", 1))), str)
    assert_type(await etl.run_once(), str)
    assert_type(await etl.run_subgraph([extract], RunContext(Deps("u", 1))), str)
    assert_type(await engine.run_once("etl", RunContext(OtherDeps("eu"))), str)  # Deps unknown
    await etl.run_once(RunContext(OtherDeps("eu")))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await etl.run_subgraph(["extract"], RunContext(OtherDeps("eu")))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await etl.run_once(Deps("u", 1))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await engine.run_once("etl", 42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await engine.resume("run-id", context=Deps("u", 1))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    engine.dag("etl", deps=Deps("u", 1))  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


# -- typed values of a finished run (get_run_report is flowrun's untyped dict) ------------


def run_values(run_id: str) -> None:
    assert_type(engine.get_run_report(run_id), dict[str, Any])
    snapshot = engine.state_store.load(run_id)
    assert_type(snapshot.value(extract), list[int])
    assert_type(snapshot.value(fetch), str)  # an async task: its result
    assert_type(snapshot[extract].status, TaskStatus)
    wrong: str = snapshot.value(extract)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


# -- flowrun's lower-level classes: TaskSpec (a description), TaskRegistry, state stores.
hand_built = flowrun_api.TaskSpec(name="load", func=fetch_table, deps=["extract"], retries=1)
assert_type(hand_built.deps, list[str])
assert_type(hand_built.timeout_s, float | None)
assert_type(hand_built.named_deps, list[str])
assert_type(hand_built.requires_context, bool)
low_registry = flowrun_api.TaskRegistry()
low_registry.register(hand_built)
low_registry.register(global_one)  # a decorated task registers too
assert_type(low_registry["load"], flowrun_api.TaskSpec)
assert_type(low_registry.get("load"), flowrun_api.TaskSpec)
assert_type(low_registry.spec("load"), TaskSpec[..., Any])
assert_type(low_registry.task_specs, Mapping[str, flowrun_api.TaskSpec])

memory = flowrun_api.InMemoryStateStore()
assert_type(memory.create_run("r", "etl", ["load"]), flowrun_api.RunRecord)
assert_type(memory.get_run("r").tasks["load"], flowrun_api.TaskRunRecord)
assert_type(memory.get_run("r").tasks["load"].status, flowrun_api.TaskState)
assert_type(memory.get_run("r").finished_at, float | None)
as_protocol: flowrun_api.StateStoreProtocol = memory
on_memory = build_default_engine(state_store=memory)
on_sqlite = build_default_engine(state_store=SqliteStateStore(":memory:"))
assert_type(on_memory.state_store, flowrun_api.EngineStore)
default_store: flowrun_api.EngineStore = flowrun_api.MemoryRunStore()
build_default_engine(state_store=object())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
