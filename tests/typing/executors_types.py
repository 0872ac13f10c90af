"""Typing tests for the executors and process isolation: checked by mypy and pyright, never run.

Each ``assert_type`` pins a type the public API promises; each ``# type: ignore[code]`` line
pins a mistake both checkers must reject (each fails on an ignore that stops being needed).

Covered: ``ProcessExecutor``, ``DaskExecutor`` and ``InlineExecutor`` are
``concurrent.futures.Executor`` s whose ``submit`` keeps the callable's signature and result
type; the remote ones satisfy the ``RemoteExecutor`` protocol; ``execute`` / ``aexecute`` take
any of them (and ``process_workers=``) and return a ``Snapshot``; ``Flow`` and the Engine accept
them as ``executor=``; ``isolation=`` keeps ``@task`` / ``@engine.task`` types exact and only
accepts ``"thread"`` / ``"process"``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Protocol, assert_type

from flowplan import (
    DaskExecutor,
    Flow,
    FlowplanError,
    InlineExecutor,
    Plan,
    ProcessExecutor,
    Registry,
    Snapshot,
    TaskGraph,
    TaskSpec,
    aexecute,
    execute,
    plan,
    task,
)
from flowplan.engine import Engine, build_default_engine
from flowplan.executors import AttemptKilledError, RemoteExecutor, WorkerDiedError

_registry = Registry()


def double(x: int, *, times: int = 2) -> int:
    return x * times


# -- executors keep submit()'s types ------------------------------------------------------------

processes = ProcessExecutor(2, mp_context="spawn")
assert_type(processes, ProcessExecutor)
assert_type(processes.max_workers, int)
assert_type(processes.submit(double, 3), Future[int])
assert_type(processes.submit(double, 3, times=4), Future[int])
processes.submit(double, "3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
processes.submit(double, 3, twice=True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
assert_type(processes.abandon(processes.submit(double, 1)), bool)
assert_type(processes.began(processes.submit(double, 1)), float | None)
ProcessExecutor(max_workers="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

inline = InlineExecutor()
assert_type(inline.submit(double, 3), Future[int])
inline.submit(double, "3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

dask = DaskExecutor(object(), key_prefix="etl")  # the client is untyped (distributed is)
assert_type(dask, DaskExecutor)
assert_type(dask.submit(double, 3), Future[int])
dask.submit(double, "3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
DaskExecutor(object(), key_prefix=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
keeping = DaskExecutor(object(), keep_values_on_cluster=True)
assert_type(keeping.keep_values_on_cluster, bool)
future, on_cluster = keeping.submit_keeping(double, 3)
assert_type(future, Future[int])
assert_type(on_cluster, Any)  # a distributed.Future (distributed is untyped)
DaskExecutor(object(), keep_values_on_cluster="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

as_executor: list[Executor] = [processes, inline, dask, ThreadPoolExecutor(2)]
as_remote: list[RemoteExecutor] = [processes, dask]
not_remote: RemoteExecutor = inline  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]

assert_type(AttemptKilledError("killed"), AttemptKilledError)
errors: list[FlowplanError] = [AttemptKilledError("killed"), WorkerDiedError("died")]
builtin: list[RuntimeError] = [AttemptKilledError("killed"), WorkerDiedError("died")]

# -- isolation= keeps @task types exact --------------------------------------------------------


@task(isolation="process", timeout_s=5.0, retry=1, registry=_registry)
def isolated(x: int, unit: str) -> str:
    return f"{x}{unit}"


class IsolatedCall(Protocol):
    def __call__(self, x: int, unit: str) -> str: ...


isolated_call: IsolatedCall = isolated
assert_type(isolated(1, "s"), str)
isolated("1", "s")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


@task(isolation="thread", registry=_registry)
async def isolated_async() -> int:
    return 1


isolated_async_spec: TaskSpec[[], Coroutine[Any, Any, int]] = isolated_async


@task(isolation=None, registry=_registry)
def not_isolated() -> bytes:
    return b""


assert_type(not_isolated, TaskSpec[[], bytes])


def bad_isolation() -> None:
    task(isolation="processes")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


# -- execute / aexecute take any executor, and process_workers ---------------------------------

the_plan: Plan = plan(TaskGraph.build([isolated, isolated_async, not_isolated]))
assert_type(execute(the_plan, executor=processes), Snapshot)
assert_type(execute(the_plan, executor=dask), Snapshot)
assert_type(execute(the_plan, executor=inline, process_workers=2), Snapshot)
assert_type(execute(the_plan, process_workers=None), Snapshot)
execute(the_plan, process_workers="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
execute(the_plan, executor="threads")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def run_async() -> None:
    assert_type(await aexecute(the_plan, executor=processes, process_workers=1), Snapshot)
    assert_type(await aexecute(the_plan, executor=dask), Snapshot)
    pending: Coroutine[Any, Any, Snapshot] = aexecute(the_plan)
    pending.close()
    await aexecute(the_plan, process_workers=1.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await aexecute(the_plan, executor="dask")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# -- Flow and the Engine accept them --------------------------------------------------------------

flow = Flow(isolated, executor=processes, process_workers=2)
assert_type(flow, Flow)
Flow(isolated, executor=dask)
Flow(isolated, process_workers="1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

engine = Engine(executor=dask, process_workers=1)
assert_type(engine.executor, Executor)
assert_type(engine.process_workers, int | None)
assert_type(build_default_engine(ProcessExecutor(1), process_workers=2), Engine)
build_default_engine(inline, process_workers="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


@engine.task(dag="etl", isolation="process", timeout_s=1.0)
def engine_isolated(n: int) -> list[int]:
    return [n]


class EngineIsolatedCall(Protocol):
    def __call__(self, n: int) -> list[int]: ...


engine_isolated_call: EngineIsolatedCall = engine_isolated


def bad_engine_isolation() -> None:
    engine.task(dag="etl", isolation="fork")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
