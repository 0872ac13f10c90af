"""flowrun's API on flowplan: ``import flowplan.engine as flowrun``.

Place in the data flow: façade — flowrun's API over plan → aexecute → store. An
:class:`Engine` registers tasks (frozen core :class:`flowplan.TaskSpec` values) into DAG
namespaces, builds a DAG's :class:`flowplan.TaskGraph`, plans it, executes the plan with
:func:`flowplan.aexecute`, and keeps every run in a state store (in memory, or SQLite with
:class:`SqliteStateStore`, or a backend written to flowrun's :class:`StateStoreProtocol`).
``resume`` plans again from the stored snapshot, so succeeded work is never redone — across
processes with SQLite. flowrun's lower-level classes keep flowrun's contracts: :class:`TaskSpec`
(a task described by hand or read back from a :class:`TaskRegistry`),
:class:`InMemoryStateStore` and :class:`StateStoreProtocol` (with flowrun's transition rules).

>>> import asyncio
>>> import flowplan.engine as flowrun
>>> engine = flowrun.build_default_engine(max_parallel=2)
>>> @engine.task(name="extract", dag="etl")
... def extract() -> list[int]:
...     return [1, 2, 3]
>>> @engine.task(name="total", dag="etl", deps=[extract])
... def total(extract: list[int]) -> int:
...     return sum(extract)
>>> async def main() -> str:
...     async with engine:
...         return await engine.run_once("etl")
>>> report = engine.get_run_report(asyncio.run(main()))
>>> total = report["tasks"].get("total")
>>> report["status"], total["result"]
('SUCCESS', 6)

Where flowrun leaves a choice open, flowplan documents it: tasks without ``dag=`` form the DAG
``"default"`` (and, when no task names a DAG, any DAG name selects it — flowrun's legacy
mode); a failed task skips its downstream tasks while independent branches keep running;
flowplan's CANCELLED is reported as ``SKIPPED``; ``on_task_failure`` fires once a task has
failed for good (retried attempts fire ``on_task_retry``); ``timeout_s`` defaults to no
timeout; retries happen at once unless ``retry_backoff_base_ms`` is set; ``display_dag``
returns the tree without printing it.
"""

import logging

from flowplan.store import BytesSerializer as ResultSerializer
from flowplan.store import (
    JsonSerializer,
    PickleSerializer,
    RunInfo,
    SqliteStateStore,
)

from ._context import RunContext
from ._decorators import TaskDecorator, TaskTemplate, task, task_template
from ._engine import Engine, EngineClosedError, SchedulerConfig, build_default_engine
from ._events import (
    DagEndEvent,
    DagStartEvent,
    RunHook,
    TaskFailureEvent,
    TaskRetryEvent,
    TaskSkipEvent,
    TaskStartEvent,
    TaskSuccessEvent,
    fn_hook,
)
from ._flowrun_spec import TaskSpec
from ._flowrun_state import (
    InMemoryStateStore,
    InvalidTransitionError,
    RunRecord,
    StateStore,
    StateStoreProtocol,
    TaskRunRecord,
    TaskState,
)
from ._options import TaskOptions
from ._registry import DEFAULT_DAG, NoActiveRegistryError, TaskRegistry
from ._scope import DagScope
from ._store import EngineStore, MemoryRunStore

__all__ = [
    "DEFAULT_DAG",
    "DagEndEvent",
    "DagScope",
    "DagStartEvent",
    "Engine",
    "EngineClosedError",
    "EngineStore",
    "InMemoryStateStore",
    "InvalidTransitionError",
    "JsonSerializer",
    "MemoryRunStore",
    "NoActiveRegistryError",
    "PickleSerializer",
    "ResultSerializer",
    "RunContext",
    "RunHook",
    "RunInfo",
    "RunRecord",
    "SchedulerConfig",
    "SqliteStateStore",
    "StateStore",
    "StateStoreProtocol",
    "TaskDecorator",
    "TaskFailureEvent",
    "TaskOptions",
    "TaskRegistry",
    "TaskRetryEvent",
    "TaskRunRecord",
    "TaskSkipEvent",
    "TaskSpec",
    "TaskStartEvent",
    "TaskState",
    "TaskSuccessEvent",
    "TaskTemplate",
    "build_default_engine",
    "fn_hook",
    "task",
    "task_template",
]

# A library never configures logging; without this, warnings would reach stderr through
# logging's last-resort handler when the application has configured nothing.
logging.getLogger("flowplan.engine").addHandler(logging.NullHandler())
