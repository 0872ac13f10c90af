"""Static types of flowplan.engine, pinned with ``assert_type`` (mypy and pyright; never run)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, assert_type

from flowplan.engine import (
    DagScope,
    Engine,
    JsonSerializer,
    PickleSerializer,
    ResultSerializer,
    RunContext,
    SqliteStateStore,
    TaskRegistry,
    TaskSpec,
    TaskTemplate,
    build_default_engine,
    fn_hook,
    task,
)
from flowplan.engine import RunHook as RunHookType


@dataclass(frozen=True)
class Deps:
    api_base: str
    retries: int


engine = build_default_engine(max_workers=2, max_parallel=2)
assert_type(engine, Engine)
assert_type(engine.dag("etl"), DagScope)


@engine.task(name="extract", dag="etl")
def extract(context: RunContext[Deps]) -> list[int]:
    assert_type(context.deps, Deps)
    assert_type(context.deps.retries, int)
    assert_type(context.api_base, Any)  # delegated to deps at run time
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
