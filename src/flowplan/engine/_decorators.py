"""flowrun's declaration entry points: ``engine.task``, the global ``task``, templates.

Place in the data flow: façade over the *spec* layer. Each entry point builds a
:class:`~flowplan.spec.TaskSpec` from flowrun options (``_options.py``) and registers it in a
:class:`TaskRegistry` under its DAG. Decorators keep the function's exact type through
``ParamSpec`` overloads.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, Unpack, overload

from flowplan._suggest import did_you_mean
from flowplan.errors import InvalidOptionError, SignatureMismatchError
from flowplan.spec import MappedTaskSpec, TaskSpec

from ._options import MappedTaskOptions, PlainTaskOptions, TaskOptions, build_spec
from ._registry import TaskRegistry

__all__ = ["TaskDecorator", "TaskTemplate", "register_task", "task", "task_template"]

P = ParamSpec("P")
R = TypeVar("R")


def _registry(given: TaskRegistry | None) -> TaskRegistry:
    return given if given is not None else TaskRegistry.active()


def register_task(
    registry: TaskRegistry, fn: Callable[P, R], name: str | None, options: Mapping[str, Any]
) -> TaskSpec[P, R]:
    """Build ``fn``'s spec from ``options`` and register it in its DAG."""
    if not callable(fn):
        raise InvalidOptionError(
            f"@task expects a function, got {fn!r} ({type(fn).__name__})", option="fn", value=fn
        )
    spec = build_spec(fn, name, options)
    registry.register(spec, options.get("dag"))
    return spec


class TaskTemplate(Generic[P, R]):
    """A function registered many times with different fixed arguments (flowrun templates).

    >>> registry = TaskRegistry()
    >>> def fetch_table(*, table: str) -> str:
    ...     return f"select * from {table}"
    >>> tpl = task_template(fetch_table, dag="etl", registry=registry)
    >>> users = tpl.bind("fetch_users", table="users")
    >>> users()
    'select * from users'
    """

    def __init__(self, fn: Callable[P, R], registry: TaskRegistry, options: TaskOptions) -> None:
        if "name" in options:
            raise InvalidOptionError(
                "task_template(...) takes no name=: give each variant its name in "
                "bind('name', ...)",
                option="name",
                value=options["name"],
            )
        self.fn = fn
        self.registry = registry
        self.options = options

    def with_options(self, **options: Unpack[TaskOptions]) -> TaskTemplate[P, R]:
        """A template with some options replaced (e.g. ``retries=``), for the next binds."""
        return TaskTemplate(self.fn, self.registry, TaskOptions(**{**self.options, **options}))

    def bind(self, name: str, /, **kwargs: Any) -> TaskSpec[..., R]:
        """Register the variant ``name`` with ``kwargs`` fixed as the function's arguments.

        Raises:
            SignatureMismatchError: a keyword is not a parameter of the function.
        """
        params = inspect.signature(self.fn).parameters
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for key in kwargs:
            param = params.get(key)
            if (param is None and not var_kw) or (
                param is not None and param.kind is inspect.Parameter.POSITIONAL_ONLY
            ):
                hint, _ = did_you_mean(key, params)
                raise SignatureMismatchError(
                    f"template {getattr(self.fn, '__qualname__', self.fn)!r}: bind({name!r}, "
                    f"{key}=...) names no keyword parameter; {hint.replace('names', 'parameters')}",
                    task=name,
                )
        fixed: Callable[..., R] = functools.partial(self.fn, **kwargs)
        for attr in ("__module__", "__name__", "__doc__"):
            setattr(fixed, attr, getattr(self.fn, attr, None))
        setattr(fixed, "__qualname__", f"{getattr(self.fn, '__qualname__', name)}[{name}]")  # noqa: B010
        return register_task(self.registry, fixed, name, self.options)


class TaskDecorator:
    """``engine.task`` and ``engine.dag(...).task``: declare tasks in one registry.

    ``@engine.task``, ``@engine.task(...)`` and ``@engine.task("name", ...)`` all work; the
    decorated function comes back as a :class:`TaskSpec` — still callable as the function,
    usable in ``deps=[...]``, and typed with the function's own signature.

    Args:
        registry: where tasks go.
        dag: the DAG every task of this decorator belongs to (a DAG scope), or ``None``.
    """

    def __init__(self, registry: TaskRegistry, dag: str | None = None) -> None:
        self.registry = registry
        self.dag = dag

    @overload
    def __call__(self, fn: Callable[P, R], /) -> TaskSpec[P, R]: ...
    @overload
    def __call__(
        self, name: str | None = None, /, **options: Unpack[MappedTaskOptions]
    ) -> Callable[[Callable[P, R]], MappedTaskSpec[P, R]]: ...
    @overload
    def __call__(
        self, name: str | None = None, /, **options: Unpack[PlainTaskOptions]
    ) -> Callable[[Callable[P, R]], TaskSpec[P, R]]: ...
    def __call__(
        self, fn_or_name: Callable[P, R] | str | None = None, /, **options: Unpack[TaskOptions]
    ) -> TaskSpec[P, R] | Callable[[Callable[P, R]], TaskSpec[P, R]]:
        """Declare a task (see the class docstring)."""
        if self.dag is not None:
            given = options.get("dag", self.dag)
            if given != self.dag:
                raise InvalidOptionError(
                    f"the scope of DAG {self.dag!r} cannot declare a task in DAG {given!r}; "
                    "drop dag= or use engine.task(dag=...)",
                    option="dag",
                    value=given,
                )
            options["dag"] = self.dag
        name = fn_or_name if isinstance(fn_or_name, str) else None

        def wrap(fn: Callable[P, R]) -> TaskSpec[P, R]:
            return register_task(self.registry, fn, name, options)

        if fn_or_name is not None and not isinstance(fn_or_name, str):
            return wrap(fn_or_name)
        return wrap


@overload
def task(fn: Callable[P, R], /) -> TaskSpec[P, R]: ...
@overload
def task(
    name: str | None = None,
    /,
    *,
    registry: TaskRegistry | None = None,
    **options: Unpack[MappedTaskOptions],
) -> Callable[[Callable[P, R]], MappedTaskSpec[P, R]]: ...
@overload
def task(
    name: str | None = None,
    /,
    *,
    registry: TaskRegistry | None = None,
    **options: Unpack[PlainTaskOptions],
) -> Callable[[Callable[P, R]], TaskSpec[P, R]]: ...
def task(
    fn_or_name: Callable[P, R] | str | None = None,
    /,
    *,
    registry: TaskRegistry | None = None,
    **options: Unpack[TaskOptions],
) -> TaskSpec[P, R] | Callable[[Callable[P, R]], TaskSpec[P, R]]:
    """Declare a task in ``registry`` or the activated :class:`TaskRegistry`.

    ``@task``, ``@task(...)`` and ``@task("name", ...)`` all work; options are those of
    ``engine.task``.

    Raises:
        NoActiveRegistryError: no ``registry=`` and no activated registry.
    """
    name = fn_or_name if isinstance(fn_or_name, str) else None

    def wrap(fn: Callable[P, R]) -> TaskSpec[P, R]:
        return register_task(_registry(registry), fn, name, options)

    if fn_or_name is not None and not isinstance(fn_or_name, str):
        return wrap(fn_or_name)
    return wrap


def task_template(
    fn: Callable[P, R], /, *, registry: TaskRegistry | None = None, **options: Unpack[TaskOptions]
) -> TaskTemplate[P, R]:
    """A :class:`TaskTemplate` of ``fn`` in ``registry`` or the activated registry.

    Raises:
        NoActiveRegistryError: no ``registry=`` and no activated registry.
    """
    return TaskTemplate(fn, _registry(registry), options)
