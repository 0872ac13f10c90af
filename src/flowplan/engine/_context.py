"""``RunContext[Deps]``: the typed bag of run-wide dependencies flowrun tasks receive.

Place in the data flow: façade (flowrun's API over plan → aexecute → store). The engine passes
one context object per run to :func:`flowplan.aexecute`, which injects it into the parameter
each spec names in ``context_param``. This module also finds that parameter: the one annotated
``RunContext[...]`` (any position; postponed string annotations included).
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from flowplan.errors import SignatureMismatchError

__all__ = ["RunContext", "context_deps_type", "find_context_param"]

DepsT = TypeVar("DepsT")

_NAME_IN_STRING = re.compile(r"(?<![\w])RunContext\b")


@attrs.frozen
class RunContext(Generic[DepsT]):
    """Run-wide dependencies for tasks, typed by the bundle they wrap.

    Tasks receive it through any parameter annotated ``RunContext[...]``; typed code reads
    ``context.deps.api_base`` (``context.deps`` is ``DepsT``). At run time, as in flowrun,
    attribute access also falls through to ``deps`` (and to its keys when ``deps`` is a
    mapping), so ``context.api_base`` reads ``deps.api_base``; that fallback is hidden from
    type checkers, so under mypy and pyright ``context.api_base`` (or a typo of it) is an
    error, not ``Any``.

    Attributes:
        deps: the user's dependency bundle (a frozen dataclass, attrs class, mapping, ...).

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Deps:
    ...     api_base: str
    >>> ctx = RunContext(Deps(api_base="https://api"))
    >>> ctx.api_base
    'https://api'
    >>> ctx.deps
    Deps(api_base='https://api')
    """

    deps: DepsT

    # flowrun's untyped code reads ``context.api_base``: delegated to ``deps`` at run time, but
    # hidden from type checkers, so a typo (``context.api_bse``) is a static error and typed
    # code reads ``context.deps.api_base`` (typed by ``Deps``).
    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            """Delegate unknown attributes to ``deps`` (or to its keys, for a mapping)."""
            if name == "deps" or (name.startswith("__") and name.endswith("__")):
                raise AttributeError(name)  # unpickling/copying probe before ``deps`` is set
            deps = self.deps
            try:
                return getattr(deps, name)
            except AttributeError:
                if isinstance(deps, Mapping) and name in deps:
                    return deps[name]
            known = sorted(deps) if isinstance(deps, Mapping) else _public_names(deps)
            shown = ", ".join(str(k) for k in known[:10]) or "(none)"
            raise AttributeError(
                f"RunContext has no attribute {name!r}: neither the context nor its deps "
                f"({type(deps).__name__}) define it; available: {shown}. Add {name!r} to your "
                "deps class or read it from context.deps"
            )


def _public_names(obj: object) -> list[str]:
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def _is_run_context(annotation: object) -> bool:
    """Whether ``annotation`` is ``RunContext`` / ``RunContext[X]`` (maybe Optional/Annotated)."""
    if annotation is RunContext:
        return True
    if isinstance(annotation, str):
        return _NAME_IN_STRING.search(annotation) is not None
    if isinstance(annotation, typing.ForwardRef):
        return _is_run_context(annotation.__forward_arg__)
    origin = typing.get_origin(annotation)
    if origin is RunContext:
        return True
    if origin is not None:  # Annotated[...], Optional[...], X | None
        return any(_is_run_context(arg) for arg in typing.get_args(annotation))
    return False


def _hints(fn: Callable[..., object]) -> dict[str, Any]:
    target: object = fn
    while isinstance(target, functools.partial):
        target = target.func
    target = inspect.unwrap(target)  # type: ignore[arg-type]
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to the raw strings
        return {}


def find_context_param(fn: Callable[..., object], task: str) -> str | None:
    """The name of ``fn``'s parameter annotated ``RunContext[...]``, or ``None``.

    Annotations are resolved with :func:`typing.get_type_hints`; when that fails (a name that
    cannot be resolved), the annotation text is matched instead.

    Raises:
        SignatureMismatchError: two parameters are annotated ``RunContext``.
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None  # the spec reports an unreadable signature with a better message
    hints = _hints(fn)
    found = [
        name
        for name, param in params.items()
        if _is_run_context(hints.get(name, param.annotation))
        and param.annotation is not inspect.Parameter.empty
    ]
    if len(found) > 1:
        raise SignatureMismatchError(
            f"task {task!r}: parameters {found[0]!r} and {found[1]!r} are both annotated "
            "RunContext; a task receives one context — keep one and read the rest from it",
            task=task,
        )
    return found[0] if found else None


def requires_context(fn_signature: inspect.Signature, param: str) -> bool:
    """Whether the context parameter ``param`` has no default (a context must be given)."""
    parameter = fn_signature.parameters.get(param)
    return parameter is not None and parameter.default is inspect.Parameter.empty


def _deps_in(annotation: object) -> tuple[bool, object]:
    """``(found, X)`` for the ``RunContext[X]`` inside ``annotation`` (``X`` is ``None`` for a
    bare ``RunContext``); ``found`` is ``False`` when there is none."""
    if annotation is RunContext:
        return True, None
    origin = typing.get_origin(annotation)
    if origin is RunContext:
        args = typing.get_args(annotation)
        return True, (args[0] if args else None)
    if origin is not None:  # Annotated[...], Optional[...], X | None
        for arg in typing.get_args(annotation):
            found, deps = _deps_in(arg)
            if found:
                return True, deps
    return False, None


def context_deps_type(fn: Callable[..., object], param: str) -> type | None:
    """The class a task's ``RunContext[Deps]`` parameter declares for ``deps``, when it is one
    that :func:`isinstance` can check (``Deps``, or ``dict`` for ``dict[str, str]``); ``None``
    for a bare ``RunContext``, ``Any``, a type variable, or an annotation that cannot be
    resolved."""
    _, deps = _deps_in(_hints(fn).get(param))
    deps = typing.get_origin(deps) or deps
    return deps if isinstance(deps, type) else None


def type_name(tp: object) -> str:
    """A readable name of a type: ``Deps``, ``dict``."""
    return getattr(tp, "__qualname__", None) or repr(tp)
