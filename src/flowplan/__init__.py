"""flowplan: typed DAGs of Python functions, planned, executed and resumed from snapshots.

The core: ``task`` → :class:`TaskSpec` → :class:`TaskGraph` → :func:`plan` → :func:`execute` /
:func:`aexecute` → :class:`Snapshot`; resume is ``execute(plan(graph, snapshot))``.
flowing's API lives here too (:class:`Flow`, :class:`StepState`, :class:`StepResult`,
:func:`clear_registry`), so ``import flowplan as flowing`` runs flowing programs; flowrun's API
is :mod:`flowplan.engine`.
"""

from flowplan._effects import NotDone, NotDoneType
from flowplan._estimate import Estimate, past_durations, store_history
from flowplan.attempt import AttemptContext, current_attempt
from flowplan.cache import (
    CachedResult,
    MemoryCache,
    ResultCache,
    SqliteCache,
    UnfingerprintableInputError,
)
from flowplan.decorators import task
from flowplan.errors import (
    CycleError,
    DefinitionError,
    DetachedDependencyError,
    DuplicateTaskError,
    EdgeTypeError,
    FanOutError,
    FlowplanError,
    GraphValidationError,
    IdempotencyKeyError,
    InvalidOptionError,
    LivenessError,
    MissingExtraError,
    RetryUntilError,
    RunOwnedError,
    SerializationError,
    SignatureMismatchError,
    StoreError,
    TaskFailedError,
    TaskTimeoutError,
    UnknownTaskError,
)
from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskInDoubt,
    TaskReleased,
    TaskRetrying,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
)
from flowplan.executors import DaskExecutor, InlineExecutor, ProcessExecutor
from flowplan.flow import Flow, StepResult, StepState
from flowplan.graph import TaskGraph
from flowplan.hooks import CallbackHook, Hook, RecordingHook, StructlogHook
from flowplan.interpreter import aexecute, execute
from flowplan.plan import Action, Decision, Plan, plan
from flowplan.policies import RetryBudget, RetryPolicy
from flowplan.registry import Registry, active_registry, clear_registry, default_registry
from flowplan.report import to_ascii, to_dot, to_mermaid, to_networkx
from flowplan.simulate import Fail, FakeClock, Simulation, Timeout, Value, simulate
from flowplan.snapshot import ErrorInfo, Snapshot, TaskRecord, TaskStatus
from flowplan.spec import (
    Dependency,
    Effect,
    Isolation,
    MappedTaskSpec,
    OptionalDependency,
    TaskSpec,
    TriggerRule,
    optional,
)
from flowplan.store import JsonSerializer, MemoryStore, PickleSerializer, StateStore
from flowplan.transitions import advance, fold

__all__ = [
    "Action",
    "AttemptContext",
    "CachedResult",
    "CallbackHook",
    "CycleError",
    "DaskExecutor",
    "Decision",
    "DefinitionError",
    "Dependency",
    "DetachedDependencyError",
    "DuplicateTaskError",
    "EdgeTypeError",
    "Effect",
    "ErrorInfo",
    "Estimate",
    "Event",
    "Fail",
    "FakeClock",
    "FanOutError",
    "Flow",
    "FlowplanError",
    "GraphValidationError",
    "Hook",
    "IdempotencyKeyError",
    "InlineExecutor",
    "InvalidOptionError",
    "Isolation",
    "JsonSerializer",
    "LivenessError",
    "MappedTaskSpec",
    "MemoryCache",
    "MemoryStore",
    "MissingExtraError",
    "NotDone",
    "NotDoneType",
    "OptionalDependency",
    "PickleSerializer",
    "Plan",
    "ProcessExecutor",
    "RecordingHook",
    "Registry",
    "ResultCache",
    "RetryBudget",
    "RetryPolicy",
    "RetryUntilError",
    "RunFinished",
    "RunOwnedError",
    "RunStarted",
    "SerializationError",
    "SignatureMismatchError",
    "Simulation",
    "Snapshot",
    "SqliteCache",
    "StateStore",
    "StepResult",
    "StepState",
    "StoreError",
    "StructlogHook",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskFailedError",
    "TaskGraph",
    "TaskInDoubt",
    "TaskRecord",
    "TaskReleased",
    "TaskRetrying",
    "TaskReused",
    "TaskSkipped",
    "TaskSpec",
    "TaskStarted",
    "TaskStatus",
    "TaskSucceeded",
    "TaskTimedOut",
    "TaskTimeoutError",
    "Timeout",
    "TriggerRule",
    "UnfingerprintableInputError",
    "UnknownTaskError",
    "Value",
    "active_registry",
    "advance",
    "aexecute",
    "clear_registry",
    "current_attempt",
    "default_registry",
    "execute",
    "fold",
    "optional",
    "past_durations",
    "plan",
    "simulate",
    "store_history",
    "task",
    "to_ascii",
    "to_dot",
    "to_mermaid",
    "to_networkx",
]
