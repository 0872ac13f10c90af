"""flowrun's ``TaskSpec``: a task as flowrun describes it, over the core's spec.

Place in the data flow: façade over the *spec* layer. flowrun programs build
``TaskSpec(name="a", func=f, deps=["b"])`` themselves and register it, and read specs back
from a :class:`~flowplan.engine.TaskRegistry` (``registry["a"].deps`` is a list of task
*names*). The registry keeps the core :class:`flowplan.spec.TaskSpec` it runs; this module
turns one kind into the other: :func:`core_spec` builds the core spec a flowrun spec
describes (with the same option checks as ``@engine.task``), :func:`describe` gives the
flowrun view of a core spec.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from flowplan.errors import InvalidOptionError
from flowplan.spec import TaskSpec as CoreSpec

from ._context import find_context_param, requires_context
from ._options import build_spec

__all__ = ["TaskSpec", "core_spec", "describe"]


def _names(value: Iterable[str]) -> list[str]:
    if isinstance(value, str):
        raise InvalidOptionError(
            f"deps must be a list of task names, got the string {value!r}; write deps=[{value!r}]",
            option="deps",
            value=value,
        )
    return list(value)


def _signature(spec: TaskSpec) -> inspect.Signature | None:
    try:
        return inspect.signature(spec.func)
    except (TypeError, ValueError):
        return None


def _accepts_context(spec: TaskSpec) -> bool:
    return _signature(spec) is not None and find_context_param(spec.func, spec.name) is not None


def _requires_context(spec: TaskSpec) -> bool:
    signature = _signature(spec)
    context = find_context_param(spec.func, spec.name) if signature is not None else None
    return signature is not None and context is not None and requires_context(signature, context)


def _accepts_upstream(spec: TaskSpec) -> bool:
    signature = _signature(spec)
    return signature is not None and "upstream" in signature.parameters


def _named_deps(spec: TaskSpec) -> list[str]:
    signature = _signature(spec)
    if signature is None or spec.accepts_upstream:
        return []
    return [d for d in spec.deps if d in signature.parameters]


@attrs.frozen
class TaskSpec:
    """A task as flowrun describes it (``flowplan.engine.TaskSpec``).

    Build one to register a function by hand (``registry.register(TaskSpec(name="load",
    func=load, deps=["extract"]))``); ``registry[name]`` gives one back for every task,
    however it was declared. The Engine runs the core :class:`flowplan.spec.TaskSpec` the
    registry builds from it.

    Attributes:
        name: the task's name. func: the function.
        deps: the names of the tasks it depends on.
        timeout_s: per-attempt timeout in seconds (``None``: none; flowrun's default 30).
        retries: attempts after the first. retain_result: keep the value once consumers ran.
        dag: the DAG namespace (``None``: the implicit one).
        accepts_context: a parameter is annotated ``RunContext[...]``.
        requires_context: that parameter has no default (a run must give a context).
        accepts_upstream: a parameter named ``upstream`` receives every dependency value.
        named_deps: the dependencies received as parameters of the same name.

    >>> def load(extract: list[int]) -> int:
    ...     return sum(extract)
    >>> spec = TaskSpec(name="load", func=load, deps=["extract"])
    >>> spec.named_deps, spec.timeout_s, spec.is_async()
    (['extract'], 30.0, False)
    """

    name: str
    func: Callable[..., Any] = attrs.field(repr=False)
    deps: list[str] = attrs.field(factory=list, converter=_names)
    timeout_s: float | None = 30.0
    retries: int = 0
    retain_result: bool = True
    dag: str | None = None
    # Read from ``func``'s signature unless given (as flowrun's decorator does).
    accepts_context: bool = attrs.field(default=attrs.Factory(_accepts_context, takes_self=True))
    requires_context: bool = attrs.field(default=attrs.Factory(_requires_context, takes_self=True))
    accepts_upstream: bool = attrs.field(default=attrs.Factory(_accepts_upstream, takes_self=True))
    named_deps: list[str] = attrs.field(default=attrs.Factory(_named_deps, takes_self=True))

    def is_async(self) -> bool:
        """Whether ``func`` is a coroutine function (awaited by the engine)."""
        return inspect.iscoroutinefunction(self.func)


def core_spec(spec: TaskSpec) -> CoreSpec[..., Any]:
    """The core spec ``spec`` describes (``@engine.task``'s checks and defaults apply).

    Raises:
        InvalidOptionError: an option is out of range (e.g. ``retries=-1``).
    """
    if not callable(spec.func):
        raise InvalidOptionError(
            f"TaskSpec {spec.name!r}: func must be a function, got {spec.func!r} "
            f"({type(spec.func).__name__})",
            option="func",
            value=spec.func,
            task=spec.name,
        )
    options: dict[str, Any] = {
        "deps": spec.deps,
        "timeout_s": spec.timeout_s,
        "retries": spec.retries,
        "retain_result": spec.retain_result,
    }
    return build_spec(spec.func, spec.name, options)


def describe(spec: CoreSpec[..., Any], dag: str | None) -> TaskSpec:
    """The flowrun view of a core spec registered in ``dag``."""
    context = spec.context_param
    upstream = spec.upstream_param is not None
    params = spec.signature.parameters
    deps = [d.name for d in spec.deps]
    return TaskSpec(
        name=spec.name,
        func=spec.fn,
        deps=deps,
        timeout_s=spec.timeout_s,
        retries=spec.retry.retries,
        retain_result=spec.retain_result,
        dag=dag,
        accepts_context=context is not None,
        requires_context=context is not None and requires_context(spec.signature, context),
        accepts_upstream=upstream,
        named_deps=[] if upstream else [d for d in deps if d in params],
    )
