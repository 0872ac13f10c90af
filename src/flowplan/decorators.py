"""The ``task`` decorator, flowing's spelling, bare and with options.

Place in the data flow: the user's entry into the *spec* layer. It turns a function into a
frozen :class:`~flowplan.spec.TaskSpec` and registers it; mypy keeps the exact signature and
return type through ``ParamSpec`` overloads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from flowplan.errors import InvalidOptionError
from flowplan.policies import RetryPolicy
from flowplan.registry import Registry, active_registry
from flowplan.spec import Dependency, TaskSpec

__all__ = ["task"]

P = ParamSpec("P")
R = TypeVar("R")


def _dependency(ref: object, task: str) -> Dependency:
    if isinstance(ref, TaskSpec):
        return Dependency(name=ref.name, spec=ref)
    if isinstance(ref, str):
        return Dependency(name=ref)
    raise InvalidOptionError(
        f"task {task!r}: depends_on entries must be tasks (decorated with @task) or task names, "
        f"got {ref!r} ({type(ref).__name__}); decorate {getattr(ref, '__name__', ref)!r} with "
        "@task first",
        option="depends_on",
        value=ref,
        task=task,
    )


@overload
def task(fn: Callable[P, R], /) -> TaskSpec[P, R]: ...


@overload
def task(
    fn: None = None,
    /,
    *,
    depends_on: Sequence[TaskSpec[..., Any] | str] | None = None,
    retry: int = 0,
    retry_backoff_base_ms: float = 1000,
    retry_max_backoff_ms: float = 30_000,
    retry_jitter: float = 0.0,
    timeout_s: float | None = None,
    name: str | None = None,
    detached: bool = False,
    when: Callable[..., object] | None = None,
    validate: Callable[..., object] | None = None,
    retry_until: Callable[[Any], object] | None = None,
    retain_result: bool = True,
    version: str | None = None,
    registry: Registry | None = None,
    idempotent: bool = False,
) -> Callable[[Callable[P, R]], TaskSpec[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    depends_on: Sequence[TaskSpec[..., Any] | str] | None = None,
    retry: int = 0,
    retry_backoff_base_ms: float = 1000,
    retry_max_backoff_ms: float = 30_000,
    retry_jitter: float = 0.0,
    timeout_s: float | None = None,
    name: str | None = None,
    detached: bool = False,
    when: Callable[..., object] | None = None,
    validate: Callable[..., object] | None = None,
    retry_until: Callable[[Any], object] | None = None,
    retain_result: bool = True,
    version: str | None = None,
    registry: Registry | None = None,
    idempotent: bool = False,
) -> TaskSpec[P, R] | Callable[[Callable[P, R]], TaskSpec[P, R]]:
    """Declare a task; dependencies arrive as keyword arguments named after them.

    Args:
        fn: the function, when used bare (``@task``).
        depends_on: upstream tasks (or their names); each must be a parameter of ``fn``
            (or ``fn`` takes ``**kwargs``).
        retry: retries after the first attempt.
        retry_backoff_base_ms: delay before the first retry; doubles each retry.
        retry_max_backoff_ms: cap on the delay.
        retry_jitter: fraction of each delay randomised away, reproducibly.
        timeout_s: per-attempt timeout in seconds.
        name: task name (default: the function's ``__name__``).
        detached: a side effect run after the main DAG; failures never fail the run.
        when: gate over the dependency values; falsy → SKIPPED (spreads downstream).
        validate: contract over the dependency values; raising → FAILED, no retry.
        retry_until: predicate over the value; falsy → retry within the budget.
        retain_result: ``False`` frees the value once no consumer needs it.
        version: explicit behaviour version for step keys.
        registry: register here instead of the active registry.
        idempotent: the body may run twice at once; a retry after a timeout then starts at
            once instead of waiting for the abandoned attempt to end.

    Returns:
        A :class:`TaskSpec` (bare use) or a decorator producing one.

    Raises:
        InvalidOptionError: an option is out of range (e.g. ``retry=-1``).

    >>> @task
    ... def fetch() -> dict[str, list[int]]:
    ...     return {"items": [1, 2, 3]}
    >>> @task(depends_on=[fetch])
    ... def process(fetch: dict[str, list[int]]) -> int:
    ...     return sum(fetch["items"])
    >>> process(fetch={"items": [1, 2]})
    3
    """
    policy = RetryPolicy(
        retries=retry,
        backoff_base_ms=retry_backoff_base_ms,
        max_backoff_ms=retry_max_backoff_ms,
        jitter=retry_jitter,
    )

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
        deps = tuple(_dependency(ref, task_name) for ref in (depends_on or ()))
        spec: TaskSpec[P, R] = TaskSpec(
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
        )
        (registry if registry is not None else active_registry()).register(spec)
        return spec

    if fn is not None:
        return wrap(fn)
    return wrap
