"""Every error flowplan raises, under one root: :class:`FlowplanError`.

Place in the data flow: the lowest layer. Every other module imports from here, and this module
imports nothing of flowplan's. Each error also subclasses the builtin that fits it
(``CycleError`` is a ``ValueError``, ``UnknownTaskError`` a ``LookupError``), so callers that
catch builtins keep working, and each carries its data as attributes for programs to read.
Validation problems found while building a graph are reported together in one
:class:`GraphValidationError` (an ``ExceptionGroup``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CycleError",
    "DefinitionError",
    "DetachedDependencyError",
    "DuplicateTaskError",
    "FanOutError",
    "FlowplanError",
    "GraphValidationError",
    "IdempotencyKeyError",
    "InvalidOptionError",
    "LivenessError",
    "MissingExtraError",
    "RetryUntilError",
    "RunOwnedError",
    "SerializationError",
    "SignatureMismatchError",
    "StoreError",
    "TaskFailedError",
    "TaskTimeoutError",
    "UnknownTaskError",
]


class FlowplanError(Exception):
    """The root of every error flowplan raises on purpose."""


class DefinitionError(FlowplanError, ValueError):
    """A task or graph definition is malformed (raised before anything runs).

    Attributes:
        task: the task the problem belongs to, or ``None`` for graph-wide problems.
    """

    def __init__(self, message: str, *, task: str | None = None) -> None:
        super().__init__(message)
        self.task = task


class InvalidOptionError(DefinitionError):
    """A task, policy or executor option has a value outside its domain.

    Attributes:
        option: the option's name, e.g. ``"retry"``.
        value: the value that was given.
    """

    def __init__(
        self, message: str, *, option: str, value: object, task: str | None = None
    ) -> None:
        super().__init__(message, task=task)
        self.option = option
        self.value = value


class DuplicateTaskError(DefinitionError):
    """Two different tasks share one name in the same graph."""


class UnknownTaskError(DefinitionError, KeyError):
    """A name refers to no task (a dependency, a target, a rerun request, a lookup).

    Attributes:
        name: the unknown name.
        known: the names that do exist, sorted.
        suggestion: the closest known name, if any is close.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str,
        known: Sequence[str] = (),
        suggestion: str | None = None,
        task: str | None = None,
    ) -> None:
        super().__init__(message, task=task)
        self.name = name
        self.known: tuple[str, ...] = tuple(known)
        self.suggestion = suggestion

    def __str__(self) -> str:
        # LookupError/KeyError would quote the message; keep it readable.
        return str(self.args[0])


class CycleError(DefinitionError):
    """The dependencies form a cycle.

    Attributes:
        cycle: the task names along the cycle, first name repeated at the end.
    """

    def __init__(self, message: str, *, cycle: Sequence[str]) -> None:
        super().__init__(message, task=cycle[0] if cycle else None)
        self.cycle: tuple[str, ...] = tuple(cycle)


class DetachedDependencyError(DefinitionError):
    """A main (non-detached) task depends on a detached task, which runs only after the main DAG."""


class SignatureMismatchError(DefinitionError, TypeError):
    """A function or gate cannot receive the values the graph would pass it, or vice versa."""


class EdgeTypeError(DefinitionError, TypeError):
    """A producer's return annotation cannot be assigned to the parameter receiving its value.

    Attributes:
        producer: the upstream task's name.
        consumer: the downstream task's name (also ``task``).
        parameter: the consumer's (or gate's) parameter receiving the value.
        produced: the producer's resolved return annotation.
        expected: the parameter's resolved annotation.
        gate: ``"when"`` or ``"validate"`` when the receiver is that gate, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        producer: str,
        consumer: str,
        parameter: str,
        produced: object,
        expected: object,
        gate: str | None = None,
    ) -> None:
        super().__init__(message, task=consumer)
        self.producer = producer
        self.consumer = consumer
        self.parameter = parameter
        self.produced = produced
        self.expected = expected
        self.gate = gate


class MissingExtraError(FlowplanError, ImportError):
    """An option needs an optional dependency that is not installed.

    Attributes:
        extra: the flowplan extra providing it, e.g. ``"typecheck"``.
        package: the missing package, e.g. ``"beartype"``.
    """

    def __init__(self, message: str, *, extra: str, package: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.package = package


class GraphValidationError(FlowplanError, ExceptionGroup[DefinitionError], ValueError):
    """Every problem found while building a graph, reported together.

    It is a ``ValueError`` (as each problem is), so ``except ValueError`` catches it; iterate
    ``.exceptions`` for the individual :class:`DefinitionError` values, or use ``except*``.
    """

    def __new__(cls, message: str, exceptions: Sequence[DefinitionError]) -> GraphValidationError:
        return super().__new__(cls, message, exceptions)

    def derive(self, excs: Sequence[DefinitionError]) -> GraphValidationError:  # type: ignore[override]
        """The same error over ``excs`` (what ``except*`` and ``split`` build)."""
        return GraphValidationError(self.message, excs)

    def __str__(self) -> str:
        lines = [f"{self.message} ({len(self.exceptions)} problem(s)):"]
        lines.extend(f"  - {exc}" for exc in self.exceptions)
        return "\n".join(lines)


class TaskTimeoutError(FlowplanError, TimeoutError):
    """An attempt ran longer than its task's ``timeout_s`` (a framework timeout).

    A task that raises ``TimeoutError`` itself is reported with its own error, not this one.

    Attributes:
        task: the task's name.
        timeout_s: the limit that was exceeded.
        attempt: the attempt number (1-based).
        detail: how the attempt ended when it did not simply stop at its timeout (an
            ``async def`` body that ignored its cancellation, or blocked its event loop), or
            ``""``.
    """

    def __init__(self, task: str, timeout_s: float, attempt: int, *, detail: str = "") -> None:
        super().__init__(
            f"task {task!r} attempt {attempt} exceeded its timeout of {timeout_s:g}s; {detail}"
            if detail
            else f"task {task!r} attempt {attempt} exceeded its timeout of {timeout_s:g}s; "
            "the attempt was abandoned (raise timeout_s or make the task faster)"
        )
        self.task = task
        self.timeout_s = timeout_s
        self.attempt = attempt
        self.detail = detail


class FanOutError(FlowplanError, TypeError):
    """A fan-out task's upstream value cannot be mapped over (not an ordered sized iterable).

    Recorded as the fan-out task's failure (its record's ``error``); nothing is raised.

    Attributes:
        task: the fan-out task.
        upstream: the dependency it maps over (``fan_out=``).
        value_type: the type name of the value found.
    """

    def __init__(self, message: str, *, task: str, upstream: str, value_type: str) -> None:
        super().__init__(message)
        self.task = task
        self.upstream = upstream
        self.value_type = value_type


class TaskFailedError(FlowplanError, RuntimeError):
    """A value was asked of a task that did not succeed.

    Attributes:
        task: the task's name.
        status: the task's recorded status, as text.
    """

    def __init__(self, message: str, *, task: str, status: str) -> None:
        super().__init__(message)
        self.task = task
        self.status = status


class RetryUntilError(FlowplanError, ValueError):
    """A task's ``retry_until`` predicate was falsy for an attempt's value.

    Attributes:
        task: the task's name.
        attempt: the attempt whose value was rejected.
        max_attempts: the attempt budget.
    """

    def __init__(self, task: str, attempt: int, max_attempts: int) -> None:
        super().__init__(
            f"retry_until predicate returned False (attempt {attempt}/{max_attempts}) for task "
            f"{task!r}; raise retry= for more attempts or relax the predicate"
        )
        self.task = task
        self.attempt = attempt
        self.max_attempts = max_attempts


class SerializationError(FlowplanError, ValueError):
    """A value cannot be encoded or decoded by a store's serializer.

    Attributes:
        value_type: the qualified type name of the offending value (or ``"bytes"`` on decode).
        path: where in the value the problem is, e.g. ``$[2]["items"]``.
    """

    def __init__(self, message: str, *, value_type: str = "", path: str = "$") -> None:
        super().__init__(message)
        self.value_type = value_type
        self.path = path


class StoreError(FlowplanError, RuntimeError):
    """A state store cannot be opened, read or written (corrupt file, newer schema, I/O).

    Attributes:
        path: the store's file, when the store has one (``None`` otherwise).
        run_id: the run the problem concerns, e.g. the run whose row is damaged.
        column: the damaged column of that run's row, when one is.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        run_id: str | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.run_id = run_id
        self.column = column


class RunOwnedError(FlowplanError, RuntimeError):
    """A run cannot start: its lineage (the run and the runs resumed from it) has a live owner.

    One process (and in it one run) at a time owns a lineage in a store; a second ``execute``,
    resume or ``flowplan resume`` of it is refused while the owner lives. A dead owner is taken
    over by the next run; this error says who owns the lineage and how to take it over.

    Attributes:
        run_id: the run that was refused.
        lineage_id: the lineage it belongs to (the first run of its chain of resumes).
        owner_run_id: the run that owns the lineage.
        owner_pid: the owner's process id.
        owner_host: the owner's host name.
        owner_since: when the owner took the lineage (epoch seconds).
        lease_until: when another host may take the lineage over if the owner stops renewing
            its lease (epoch seconds).
        orphan_pid: the process id of a still-running attempt of the dead owner that keeps the
            lineage (an ``at_most_once`` attempt's child process), else ``None``.
        task: the task that orphaned attempt runs, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        lineage_id: str,
        owner_run_id: str,
        owner_pid: int,
        owner_host: str,
        owner_since: float,
        lease_until: float,
        orphan_pid: int | None = None,
        task: str | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.lineage_id = lineage_id
        self.owner_run_id = owner_run_id
        self.owner_pid = owner_pid
        self.owner_host = owner_host
        self.owner_since = owner_since
        self.lease_until = lease_until
        self.orphan_pid = orphan_pid
        self.task = task


class LivenessError(FlowplanError, RuntimeError):
    """A plan would leave a task waiting forever (a planner bug: plan() never builds one).

    Attributes:
        task: the task that could never start.
        dependency: the dependency it would wait on.
    """

    def __init__(self, message: str, *, task: str, dependency: str) -> None:
        super().__init__(message)
        self.task = task
        self.dependency = dependency


class IdempotencyKeyError(FlowplanError, TypeError):
    """An attempt's idempotency key cannot be derived: an input has no stable fingerprint.

    Attributes:
        task: the task whose key was asked for.
        value_type: the qualified type name of the input that cannot be fingerprinted.
        path: where in the inputs it is, e.g. ``order.items[2]``.
    """

    def __init__(self, message: str, *, task: str, value_type: str, path: str) -> None:
        super().__init__(message)
        self.task = task
        self.value_type = value_type
        self.path = path
