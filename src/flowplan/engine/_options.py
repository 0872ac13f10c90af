"""flowrun task options → a frozen :class:`flowplan.spec.TaskSpec`.

Place in the data flow: façade over the *spec* layer. Every flowrun declaration becomes a
:class:`~flowplan.spec.TaskSpec` (so ``mypy`` keeps the function's signature, and the spec stays
callable as the plain function):

* ``deps`` (names or decorated tasks) become ordering-only :class:`~flowplan.spec.Dependency`
  edges: injected by name when a parameter is named like the dependency, else order only;
* a parameter named ``upstream`` receives every dependency value as one ``dict`` (and turns
  named injection off); a parameter annotated ``RunContext[...]`` receives the run's context;
* ``timeout_s`` defaults to ``None`` (no timeout); retries wait ``retry_backoff_base_ms``
  (default 0: flowrun retries at once).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, Required, TypedDict, TypeVar

import attrs

from flowplan._suggest import did_you_mean
from flowplan.errors import InvalidOptionError
from flowplan.policies import RetryPolicy
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

from ._context import find_context_param

__all__ = ["MappedTaskOptions", "TaskOptions", "build_spec"]

P = ParamSpec("P")
R = TypeVar("R")


class _CommonOptions(TypedDict, total=False):
    """Every option of a flowrun task but ``fan_out`` (flowrun's own, then flowplan's)."""

    name: str
    dag: str | None
    deps: Sequence[str | TaskSpec[..., Any] | OptionalDependency]
    timeout_s: float | None
    retries: int
    retain_result: bool
    retry_backoff_base_ms: float
    retry_max_backoff_ms: float
    retry_jitter: float
    retry_on: type[BaseException] | Sequence[type[BaseException]]
    give_up_on: type[BaseException] | Sequence[type[BaseException]]
    retry_max_elapsed_s: float | None
    retry_policy: RetryPolicy
    when: Gate | None
    validate: Gate | None
    retry_until: Callable[[Any], object] | None
    detached: bool
    version: str | None
    idempotent: bool
    trigger: TriggerRule
    isolation: Isolation | None
    effect: Effect | None
    reconcile: Gate | None
    cache: bool


class TaskOptions(_CommonOptions, total=False):
    """Every option of a flowrun task (flowrun's own, then flowplan's additions)."""

    fan_out: str | TaskSpec[..., Any] | None


class PlainTaskOptions(_CommonOptions, total=False):
    """The options of a task that is not a fan-out (the task is a plain ``TaskSpec``)."""

    fan_out: None


class MappedTaskOptions(_CommonOptions, total=False):
    """The options of a fan-out task: ``fan_out`` given (the task is a ``MappedTaskSpec``)."""

    fan_out: Required[str | TaskSpec[..., Any]]


_OPTION_NAMES = frozenset(TaskOptions.__annotations__)


def _dependency(ref: object, task: str) -> Dependency:
    if isinstance(ref, OptionalDependency):  # optional(dep): None when dep was gate-skipped
        return attrs.evolve(_dependency(ref.task, task), optional=True)
    if isinstance(ref, TaskSpec):
        return Dependency(ref.name, ref, ordering_only=True)
    if isinstance(ref, str) and ref:
        return Dependency(ref, ordering_only=True)
    what = getattr(ref, "__name__", None)
    fix = f"decorate {what!r} with @engine.task first" if what else "pass a task name"
    raise InvalidOptionError(
        f"task {task!r}: deps entries must be task names or tasks returned by @engine.task / "
        f"@task (or optional(...) of either), got {ref!r} ({type(ref).__name__}); {fix}",
        option="deps",
        value=ref,
        task=task,
    )


def _fan_out_name(ref: object) -> Any:
    """``fan_out=`` as a dependency name (a task stands for its name); checked by the spec."""
    return ref.name if isinstance(ref, TaskSpec) else ref


def build_spec(fn: Callable[P, R], name: str | None, options: Mapping[str, Any]) -> TaskSpec[P, R]:
    """Turn a function and flowrun options into a :class:`TaskSpec`.

    Raises:
        InvalidOptionError: an unknown option or a value out of range (e.g. ``retries=-1``).
        SignatureMismatchError: two parameters are annotated ``RunContext``.
    """
    task_name = name or options.get("name") or getattr(fn, "__name__", None)
    if not isinstance(task_name, str) or not task_name:
        raise InvalidOptionError(
            f"cannot name the task for {fn!r}: pass name='...' (got {task_name!r})",
            option="name",
            value=task_name,
        )
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        hint, _ = did_you_mean(unknown[0], _OPTION_NAMES)
        raise InvalidOptionError(
            f"task {task_name!r}: unknown option {unknown[0]!r}; "
            f"{hint.replace('names', 'options')}",
            option=unknown[0],
            value=options[unknown[0]],
            task=task_name,
        )
    raw_deps = options.get("deps") or ()
    if isinstance(raw_deps, str):
        raise InvalidOptionError(
            f"task {task_name!r}: deps must be a list, got the string {raw_deps!r}; "
            f"write deps=[{raw_deps!r}]",
            option="deps",
            value=raw_deps,
            task=task_name,
        )
    deps: dict[str, Dependency] = {}
    for ref in raw_deps:
        dep = _dependency(ref, task_name)
        deps.setdefault(dep.name, dep)
    policy_options = (
        "retries",
        "retry_backoff_base_ms",
        "retry_max_backoff_ms",
        "retry_jitter",
        "retry_on",
        "give_up_on",
        "retry_max_elapsed_s",
    )
    given = options.get("retry_policy")
    if given is not None:
        used = [o + "=" for o in policy_options if o in options]
        if not isinstance(given, RetryPolicy) or used:
            why = (
                f"pass either retry_policy= or {', '.join(used)}, not both"
                if used
                else f"retry_policy must be a RetryPolicy, got {given!r} ({type(given).__name__})"
            )
            raise InvalidOptionError(
                f"task {task_name!r}: {why}; e.g. retry_policy=RetryPolicy(retries=3)",
                option="retry_policy",
                value=given,
                task=task_name,
            )
    retries = options.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidOptionError(
            f"task {task_name!r}: retries must be a whole number >= 0, got {retries!r} "
            f"({type(retries).__name__}); use retries=0 for a single attempt",
            option="retries",
            value=retries,
            task=task_name,
        )
    try:
        policy = given or RetryPolicy(
            retries=retries,
            backoff_base_ms=options.get("retry_backoff_base_ms", 0.0),
            max_backoff_ms=options.get("retry_max_backoff_ms", 30_000.0),
            jitter=options.get("retry_jitter", 0.0),
            retry_on=options.get("retry_on", (Exception,)),
            give_up_on=options.get("give_up_on", ()),
            max_elapsed_s=options.get("retry_max_elapsed_s"),
        )
    except InvalidOptionError as exc:
        raise InvalidOptionError(
            f"task {task_name!r}: {exc}", option=exc.option, value=exc.value, task=task_name
        ) from None
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = inspect.Signature().parameters  # TaskSpec reports the unreadable signature
    fan_out = _fan_out_name(options.get("fan_out"))
    kind = TaskSpec if fan_out is None else MappedTaskSpec  # a fan-out value is a list
    spec: TaskSpec[P, Any] = kind(  # a MappedTaskSpec is typed by the decorators' overloads
        name=task_name,
        fn=fn,
        deps=tuple(deps.values()),
        retry=policy,
        timeout_s=options.get("timeout_s"),
        detached=bool(options.get("detached", False)),
        when=options.get("when"),
        validate=options.get("validate"),
        retry_until=options.get("retry_until"),
        retain_result=bool(options.get("retain_result", True)),
        version=options.get("version"),
        idempotent=bool(options.get("idempotent", False)),
        trigger=options.get("trigger", "all_succeeded"),
        isolation=options.get("isolation"),
        fan_out=fan_out,
        effect=options.get("effect"),
        reconcile=options.get("reconcile"),
        cache=bool(options.get("cache", False)),
        upstream_param="upstream" if "upstream" in params else None,
        context_param=find_context_param(fn, task_name),
    )
    return spec
