"""The run-start check of a flowrun context: a ``RunContext`` whose ``deps`` is the declared class.

Place in the data flow: façade, before ``aexecute``. Type checkers tie a run's context to the
DAG's ``Deps`` where the engine knows it statically (``engine.dag("etl", deps=Deps)``); this
module checks the same at run time for every run, against the DAG's declared ``Deps`` and the
``RunContext[Deps]`` annotations of the tasks about to run, so a wrong context fails before any
task starts, with an error naming the task, the expected and the found class.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, MutableMapping

from flowplan.errors import InvalidOptionError
from flowplan.plan import Plan

from ._context import RunContext, context_deps_type, type_name

__all__ = ["check_context_type", "declare_deps"]

# A task's declared Deps class, per function (reading type hints costs more than a run's check).
_declared: weakref.WeakKeyDictionary[Callable[..., object], tuple[str, type | None]] = (
    weakref.WeakKeyDictionary()
)


def _task_deps(fn: Callable[..., object], param: str) -> type | None:
    try:
        cached = _declared.get(fn)
    except TypeError:  # not weak-referenceable
        return context_deps_type(fn, param)
    if cached is not None and cached[0] == param:
        return cached[1]
    deps = context_deps_type(fn, param)
    _declared[fn] = (param, deps)
    return deps


def declare_deps(declared: MutableMapping[str, type], dag: str, deps: object) -> None:
    """Record ``deps`` as DAG ``dag``'s ``Deps`` class.

    Raises:
        InvalidOptionError: ``deps`` is not a class, or the DAG has another one already.
    """
    if not isinstance(deps, type):
        raise InvalidOptionError(
            f"DAG {dag!r}: deps= must be the class of the run's context deps, got {deps!r} "
            f"({type(deps).__name__}); e.g. engine.dag({dag!r}, deps=Deps)",
            option="deps",
            value=deps,
        )
    known = declared.setdefault(dag, deps)
    if known is not deps:
        raise InvalidOptionError(
            f"DAG {dag!r} is declared with deps={type_name(known)} already, got "
            f"deps={type_name(deps)}; a DAG has one Deps class — use the same one everywhere",
            option="deps",
            value=deps,
        )


def check_context_type(dag: str, planned: Plan, context: object, declared: type | None) -> None:
    """Check a run's ``context`` before it starts.

    Raises:
        InvalidOptionError: ``context`` is not a :class:`RunContext`; or its ``deps`` is not an
            instance of the DAG's declared ``Deps`` or of the class a task to run annotates
            (``RunContext[Deps]``). The message names the task, both classes and the fix.
    """
    if not isinstance(context, RunContext):
        raise InvalidOptionError(
            f"DAG {dag!r}: context must be a RunContext, got {context!r} "
            f"({type(context).__name__}); wrap the value: context=RunContext(YourDeps(...))",
            option="context",
            value=context,
        )
    deps: object = context.deps
    if declared is not None and not isinstance(deps, declared):
        raise InvalidOptionError(
            f"DAG {dag!r} declares deps={type_name(declared)} (engine.dag({dag!r}, deps=...)) "
            f"but the run got RunContext({type_name(type(deps))}): {deps!r}; pass "
            f"context=RunContext({type_name(declared)}(...))",
            option="context",
            value=context,
        )
    for name in planned.to_run:
        spec = planned.graph.specs[name]
        if spec.context_param is None:
            continue
        expected = _task_deps(spec.fn, spec.context_param)
        if expected is None:
            continue
        try:
            fits = isinstance(deps, expected)
        except TypeError:  # a class isinstance cannot check (e.g. a protocol): not checked
            continue
        if not fits:
            raise InvalidOptionError(
                f"DAG {dag!r}: task {name!r} takes RunContext[{type_name(expected)}] "
                f"(parameter {spec.context_param!r}) but the run got "
                f"RunContext({type_name(type(deps))}): {deps!r}; pass "
                f"context=RunContext({type_name(expected)}(...)), or fix the annotation",
                option="context",
                value=context,
                task=name,
            )
