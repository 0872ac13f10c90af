"""The run context the ``flowplan`` command gives tasks: ``--deps [FILE_OR_MODULE:]NAME``.

Place in the data flow: the CLI (application layer), between ``plan`` and ``execute``. Tasks
that take a ``RunContext[Deps]`` parameter need the application's dependencies; ``--deps``
names where to get them: ``NAME`` alone is looked up in the target's own module,
``FILE_OR_MODULE:NAME`` elsewhere (a file the target already imported is not imported
again). NAME is a function (or class) called without arguments, or a value; a result that is a
:class:`~flowplan.engine.RunContext` is used as it is, anything else is wrapped in one. A
planned task whose context parameter has no default refuses to start without ``--deps`` —
before anything is recorded — naming the task and the flag.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from types import ModuleType

from flowplan._cli_runs import UsageError
from flowplan._cli_target import Target, _import, _is_file, split_target
from flowplan.plan import Plan

__all__ = ["check_context", "load_context"]


def _module(source: str, workdir: str) -> ModuleType:
    """The module ``source`` names, reusing the one already imported for the same file."""
    if _is_file(source):
        path = (Path(workdir) / source).resolve()
        for module in list(sys.modules.values()):
            file = getattr(module, "__file__", None)
            if file is not None and Path(file).resolve() == path:
                return module
    elif source in sys.modules:
        return sys.modules[source]
    return _import(source, workdir)[0]


def _describe(target: str) -> str:
    return f"--deps {target}"


def load_context(text: str, target: Target, *, workdir: str | None = None) -> object:
    """The run context ``--deps text`` names, for ``target``'s tasks.

    Raises:
        UsageError: the name is missing, needs arguments, or raised while building the deps.
        TargetError: its module cannot be imported (a usage error too, exit code 2).
    """
    from flowplan.engine import RunContext

    where = workdir or os.getcwd()
    source, name = split_target(text)
    if name is None:  # NAME alone: an attribute of the target's module
        source, name = split_target(target.ref)[0], text
    if not all(part.isidentifier() for part in name.split(".")):
        raise UsageError(
            f"{_describe(text)}: {name!r} is not a Python name; give NAME (in the target's "
            "module) or FILE_OR_MODULE:NAME, e.g. --deps pipeline.py:make_deps"
        )
    value: object = _module(source, where)
    for part in name.split("."):
        if not hasattr(value, part):
            raise UsageError(
                f"{_describe(text)}: {source} has no attribute {name!r} (looked for {part!r}); "
                "define a function returning your deps there, or point --deps at it"
            )
        value = getattr(value, part)
    if callable(value) and not isinstance(value, RunContext):
        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):
            signature = None
        required = [
            p.name
            for p in (signature.parameters.values() if signature is not None else ())
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if required:
            raise UsageError(
                f"{_describe(text)}: {name} takes arguments ({', '.join(required)}); --deps "
                "calls it with none — point it at a function that builds the deps by itself "
                "(reading settings or the environment)"
            )
        try:
            value = value()
        except Exception as exc:
            raise UsageError(
                f"{_describe(text)}: {name}() raised {type(exc).__name__}: {exc}"
            ) from exc
    return value if isinstance(value, RunContext) else RunContext(value)


def check_context(planned: Plan, context: object, *, source: str = "pipeline.py") -> None:
    """Refuse a run whose tasks need a context when none was given.

    Args:
        planned: the plan about to run (only tasks it runs are checked).
        context: what ``--deps`` gave, or ``None``.
        source: the target's file or module, for the example in the message.

    Raises:
        UsageError: a task to run has a context parameter without a default and ``context`` is
            ``None``; the message names the tasks and ``--deps``.
    """
    if context is not None:
        return
    from flowplan.engine._context import requires_context

    needing = [
        (name, spec.context_param)
        for name in planned.to_run
        if (spec := planned.graph.specs[name]).context_param is not None
        and requires_context(spec.signature, spec.context_param)
    ]
    if not needing:
        return
    tasks = ", ".join(f"{name!r} (parameter {param!r})" for name, param in needing)
    raise UsageError(
        f"task{'s' if len(needing) > 1 else ''} {tasks} take{'' if len(needing) > 1 else 's'} "
        "a RunContext but the run was given none; pass --deps NAME or --deps "
        "FILE_OR_MODULE:NAME, where NAME is a function returning your deps (or a RunContext), "
        f"e.g. --deps {source}:make_deps"
    )
