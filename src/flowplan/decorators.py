"""The ``task`` decorator, flowing's spelling, bare and with options.

Place in the data flow: the user's entry into the *spec* layer. It turns a function into a
frozen :class:`~flowplan.spec.TaskSpec` and registers it; mypy keeps the exact signature and
return type through ``ParamSpec`` overloads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from flowplan.errors import InvalidOptionError
from flowplan.policies import RetryPolicy
from flowplan.registry import Registry, active_registry
from flowplan.spec import (
    Dependency,
    Effect,
    Gate,
    Isolation,
    MappedTaskSpec,
    OptionalDependency,
    TaskSpec,
    TriggerRule,
)

__all__ = ["task"]

P = ParamSpec("P")
R = TypeVar("R")


def _dependency(ref: object, task: str) -> Dependency:
    if type(ref) is str:  # the common case first
        return Dependency(ref)
    if isinstance(ref, OptionalDependency):
        dep = _dependency(ref.task, task)
        return Dependency(name=dep.name, spec=dep.spec, optional=True)
    if isinstance(ref, TaskSpec):
        return Dependency(name=ref.name, spec=ref)
    if isinstance(ref, str):
        return Dependency(name=ref)
    raise InvalidOptionError(
        f"task {task!r}: depends_on entries must be tasks (decorated with @task), task names or "
        "optional(...) of either, "
        f"got {ref!r} ({type(ref).__name__}); decorate {getattr(ref, '__name__', ref)!r} with "
        "@task first",
        option="depends_on",
        value=ref,
        task=task,
    )


class _Unset(enum.Enum):
    """The type of :data:`_UNSET`: an option the caller did not pass."""

    UNSET = enum.auto()


_UNSET = _Unset.UNSET


# each retry option of @task → the RetryPolicy field it sets (unset ones keep its defaults)
_POLICY_FIELDS = {
    "retry": "retries",
    "retry_backoff_base_ms": "backoff_base_ms",
    "retry_max_backoff_ms": "max_backoff_ms",
    "retry_jitter": "jitter",
    "retry_on": "retry_on",
    "give_up_on": "give_up_on",
    "retry_max_elapsed_s": "max_elapsed_s",
}


_NO_RETRY = RetryPolicy()


def _policy(given: RetryPolicy | None, options: dict[str, Any], task: str | None) -> RetryPolicy:
    """The task's retry policy: ``retry_policy=`` as given, or built from the options."""
    used = {option: value for option, value in options.items() if value is not _UNSET}
    if given is not None:
        if not isinstance(given, RetryPolicy):
            raise InvalidOptionError(
                f"retry_policy must be a RetryPolicy, got {given!r} ({type(given).__name__}); "
                "e.g. retry_policy=RetryPolicy(retries=3)",
                option="retry_policy",
                value=given,
                task=task,
            )
        if used:
            raise InvalidOptionError(
                f"pass either retry_policy= or {', '.join(o + '=' for o in used)}, not both; "
                "put those settings in the RetryPolicy (e.g. RetryPolicy(retries=3))",
                option="retry_policy",
                value=given,
                task=task,
            )
        return given
    return RetryPolicy(**{_POLICY_FIELDS[option]: value for option, value in used.items()})


@overload
def task(fn: Callable[P, R], /) -> TaskSpec[P, R]: ...


@overload
def task(
    fn: None = None,
    /,
    *,
    depends_on: Sequence[TaskSpec[..., Any] | str | OptionalDependency] | None = None,
    retry: int = 0,
    retry_backoff_base_ms: float = 1000,
    retry_max_backoff_ms: float = 30_000,
    retry_jitter: float = 0.0,
    retry_on: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
    give_up_on: type[BaseException] | Sequence[type[BaseException]] = (),
    retry_max_elapsed_s: float | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout_s: float | None = None,
    name: str | None = None,
    detached: bool = False,
    when: Gate | None = None,
    validate: Gate | None = None,
    retry_until: Callable[[Any], object] | None = None,
    retain_result: bool = True,
    version: str | None = None,
    registry: Registry | None = None,
    idempotent: bool = False,
    trigger: TriggerRule = "all_succeeded",
    effect: Effect | None = None,
    reconcile: Gate | None = None,
    cache: bool = False,
    isolation: Isolation | None = None,
    fan_out: TaskSpec[..., Any] | str,
) -> Callable[[Callable[P, R]], MappedTaskSpec[P, R]]: ...


@overload
def task(
    fn: None = None,
    /,
    *,
    depends_on: Sequence[TaskSpec[..., Any] | str | OptionalDependency] | None = None,
    retry: int = 0,
    retry_backoff_base_ms: float = 1000,
    retry_max_backoff_ms: float = 30_000,
    retry_jitter: float = 0.0,
    retry_on: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
    give_up_on: type[BaseException] | Sequence[type[BaseException]] = (),
    retry_max_elapsed_s: float | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout_s: float | None = None,
    name: str | None = None,
    detached: bool = False,
    when: Gate | None = None,
    validate: Gate | None = None,
    retry_until: Callable[[Any], object] | None = None,
    retain_result: bool = True,
    version: str | None = None,
    registry: Registry | None = None,
    idempotent: bool = False,
    trigger: TriggerRule = "all_succeeded",
    effect: Effect | None = None,
    reconcile: Gate | None = None,
    cache: bool = False,
    isolation: Isolation | None = None,
    fan_out: None = None,
) -> Callable[[Callable[P, R]], TaskSpec[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    depends_on: Sequence[TaskSpec[..., Any] | str | OptionalDependency] | None = None,
    retry: int | _Unset = _UNSET,
    retry_backoff_base_ms: float | _Unset = _UNSET,
    retry_max_backoff_ms: float | _Unset = _UNSET,
    retry_jitter: float | _Unset = _UNSET,
    retry_on: type[BaseException] | Sequence[type[BaseException]] | _Unset = _UNSET,
    give_up_on: type[BaseException] | Sequence[type[BaseException]] | _Unset = _UNSET,
    retry_max_elapsed_s: float | _Unset | None = _UNSET,
    retry_policy: RetryPolicy | None = None,
    timeout_s: float | None = None,
    name: str | None = None,
    detached: bool = False,
    when: Gate | None = None,
    validate: Gate | None = None,
    retry_until: Callable[[Any], object] | None = None,
    retain_result: bool = True,
    version: str | None = None,
    registry: Registry | None = None,
    idempotent: bool = False,
    trigger: TriggerRule = "all_succeeded",
    effect: Effect | None = None,
    reconcile: Gate | None = None,
    cache: bool = False,
    isolation: Isolation | None = None,
    fan_out: TaskSpec[..., Any] | str | None = None,
) -> TaskSpec[P, R] | Callable[[Callable[P, R]], TaskSpec[P, R]]:
    """Declare a task; dependencies arrive as keyword arguments named after them.

    Args:
        fn: the function, when used bare (``@task``).
        depends_on: upstream tasks (or their names); each must be a parameter of ``fn``
            (or ``fn`` takes ``**kwargs``). ``optional(dep)``: when ``dep`` is skipped by a
            ``when=`` gate (not because of a failure), the task still runs with ``None``.
        retry: retries after the first attempt.
        retry_backoff_base_ms: delay before the first retry; doubles each retry.
        retry_max_backoff_ms: cap on the delay.
        retry_jitter: fraction of each delay randomised away, reproducibly.
        retry_on: exception classes that are retried (default: ``Exception``); a framework
            timeout counts as :class:`~flowplan.errors.TaskTimeoutError`.
        give_up_on: exception classes never retried (wins over ``retry_on``).
        retry_max_elapsed_s: stop retrying once a retry would start more than this many
            seconds after the first attempt started (backoff included).
        retry_policy: a ready :class:`~flowplan.policies.RetryPolicy` instead of the
            ``retry``/``retry_*``/``retry_on``/``give_up_on`` options (not both).
        timeout_s: per-attempt timeout in seconds.
        name: task name (default: the function's ``__name__``).
        detached: a side effect run after the main DAG; failures never fail the run.
        when: gate over the dependency values; falsy → SKIPPED (spreads downstream).
        validate: contract over the dependency values; raising → FAILED, no retry.
        retry_until: predicate over the value; falsy → retry within the budget.
        retain_result: ``False`` frees the value from memory once no consumer in the run
            needs it (durable stores keep it). A later run that needs it while it is gone
            recomputes it only for ``effect="pure"``; any other task is in doubt.
        version: explicit behaviour version for step keys.
        registry: register here instead of the active registry.
        idempotent: the body may run twice at once; a retry after a timeout then starts at
            once instead of waiting for the abandoned attempt to end.
        trigger: when the task may run given how its dependencies ended:
            ``"all_succeeded"`` (default), ``"all_done"``, ``"none_failed"``,
            ``"any_succeeded"``, decided once every dependency has ended; ``"all_done"`` tasks
            still run after a fail-fast stop (cleanup). Dependencies that did not succeed are
            received as ``None``; a "no" skips the task (docs/trigger-rules.md).
        effect: ``"pure"``, ``"idempotent"`` or ``"at_most_once"``; resume honours it.
        reconcile: for an ``at_most_once`` task left in doubt by a crash: called with the
            dependency values to decide whether the lost attempt took effect.
        cache: reuse a result from the run's result cache when the step key matches.
        isolation: ``"process"`` runs this task's attempts in a child process.
        fan_out: a dependency (task or name) whose value is a list: one element instance
            ``name[i]`` runs per element, receiving the element as that parameter; the
            task's value is the list of their values, in order (see docs/fan-out.md).

    Returns:
        A :class:`TaskSpec` (bare use) or a decorator producing one; with ``fan_out=`` a
        :class:`MappedTaskSpec`, whose value (``Snapshot.value``) is typed ``list[R]``.

    Raises:
        InvalidOptionError: an option is out of range (e.g. ``retry=-1``), or
            ``retry_policy=`` is combined with ``retry=``-style options.

    >>> @task
    ... def fetch() -> dict[str, list[int]]:
    ...     return {"items": [1, 2, 3]}
    >>> @task(depends_on=[fetch])
    ... def process(fetch: dict[str, list[int]]) -> int:
    ...     return sum(fetch["items"])
    >>> process(fetch={"items": [1, 2]})
    3
    """
    if (  # the common case, checked without building anything: no retry option given
        retry_policy is None
        and retry is _UNSET
        and retry_backoff_base_ms is _UNSET
        and retry_max_backoff_ms is _UNSET
        and retry_jitter is _UNSET
        and retry_on is _UNSET
        and give_up_on is _UNSET
        and retry_max_elapsed_s is _UNSET
    ):
        policy = _NO_RETRY
    else:
        options = {
            "retry": retry,
            "retry_backoff_base_ms": retry_backoff_base_ms,
            "retry_max_backoff_ms": retry_max_backoff_ms,
            "retry_jitter": retry_jitter,
            "retry_on": retry_on,
            "give_up_on": give_up_on,
            "retry_max_elapsed_s": retry_max_elapsed_s,
        }
        policy = _policy(retry_policy, options, name)

    def wrap(func: Callable[P, R]) -> TaskSpec[P, R]:
        if not callable(func):
            raise InvalidOptionError(
                f"@task expects a function, got {func!r} ({type(func).__name__})",
                option="fn",
                value=func,
            )
        task_name = name if name is not None else getattr(func, "__name__", None)
        if task_name is None:
            raise InvalidOptionError(
                f"@task cannot infer a name for {func!r}; pass name='...'",
                option="name",
                value=func,
            )
        deps = tuple([_dependency(ref, task_name) for ref in depends_on]) if depends_on else ()
        kind = TaskSpec if fan_out is None else MappedTaskSpec  # a fan-out value is a list
        spec: TaskSpec[P, Any] = kind(  # a MappedTaskSpec is typed by the overloads
            name=task_name,
            fn=func,
            deps=deps,
            retry=policy,
            timeout_s=timeout_s,
            detached=detached,
            when=when,
            validate=validate,
            retry_until=retry_until,
            retain_result=retain_result,
            version=version,
            idempotent=idempotent,
            trigger=trigger,
            effect=effect,
            reconcile=reconcile,
            cache=cache,
            isolation=isolation,
            fan_out=fan_out.name if isinstance(fan_out, TaskSpec) else fan_out,
        )
        (registry if registry is not None else active_registry()).register(spec)
        return spec

    if fn is not None:
        return wrap(fn)
    return wrap
