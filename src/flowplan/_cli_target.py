"""Find what the ``flowplan`` command runs: ``FILE_OR_MODULE[:obj]`` → a validated graph.

Place in the data flow: the CLI (application layer), before ``plan``. A target is a Python file
(``pipeline.py``) or an importable module (``pkg.pipeline``), optionally followed by ``:obj``
(a dotted attribute path). ``obj`` may be a :class:`~flowplan.Flow`, a task (its upstream tasks
come along), a list or tuple of tasks, a :class:`~flowplan.TaskGraph`, a
:class:`~flowplan.Registry` (all its tasks), a flowrun ``Engine`` (with ``--dag`` when it has
several DAGs) or ``engine.dag("name")`` scope, or a function taking no arguments that returns
one of these. Without ``:obj`` the module must define exactly one Flow, Engine or TaskGraph, or
else ``@task`` functions, which then all run. Detached tasks are discovered from the module's
:class:`~flowplan.Registry` when it defines exactly one, else from the default registry.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from flowplan.errors import DefinitionError
from flowplan.flow import Flow
from flowplan.graph import TaskGraph
from flowplan.registry import Registry, active_registry
from flowplan.spec import TaskSpec

__all__ = ["Target", "TargetError", "import_location", "load_target", "split_target"]


class TargetError(DefinitionError, ValueError):
    """A target that cannot be imported or holds nothing runnable (a usage error, exit 2)."""


@attrs.frozen
class Target:
    """What a target resolved to.

    Attributes:
        ref: the target as recorded for ``resume`` (files as absolute paths).
        graph: the validated graph to plan.
        label: a short name for run listings (the DAG column).
        fail_fast: stop starting tasks after a failure (a Flow's setting; False for Engines).
        max_workers: the thread-pool size the definition asks for, if any.
    """

    ref: str
    graph: TaskGraph
    label: str
    fail_fast: bool = True
    max_workers: int | None = None


def split_target(text: str) -> tuple[str, str | None]:
    """``"path/to/x.py:flow"`` → ``("path/to/x.py", "flow")``; no ``:obj`` → ``(text, None)``.

    >>> split_target("etl.py:pipeline.flow"), split_target(r"C:\\x.py")
    (('etl.py', 'pipeline.flow'), ('C:\\\\x.py', None))
    """
    source, sep, obj = text.rpartition(":")
    drive = len(source) == 1 and source.isalpha()  # C:\path on Windows
    if sep and source and not drive and all(p.isidentifier() for p in obj.split(".")):
        return source, obj
    return text, None


def _is_file(source: str) -> bool:
    return source.endswith(".py") or os.sep in source or "/" in source


def import_location(text: str, workdir: str) -> Path:
    """Where importing ``FILE_OR_MODULE[:obj]`` from ``workdir`` runs code from: the file, or
    for a module the directory it is looked up in.

    >>> import_location("/srv/etl.py:flow", "/home").as_posix()
    '/srv/etl.py'
    """
    source, _ = split_target(text)
    if _is_file(source):
        return (Path(workdir) / source).resolve()
    return Path(workdir).resolve()


def _import(source: str, workdir: str) -> tuple[ModuleType, str]:
    """Import the module; return it and its recordable reference."""
    if _is_file(source):
        path = (Path(workdir) / source).resolve()
        if not path.is_file():
            raise TargetError(f"no such file: {source!r} (looked for {str(path)!r})")
        stem = path.stem
        name = stem if stem.isidentifier() and stem not in sys.modules else f"_flowplan_{stem}"
        name = name if name.isidentifier() else "_flowplan_target"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:  # pragma: no cover - .py files always load
            raise TargetError(f"cannot import {source!r}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(name, None)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise TargetError(f"cannot import {source!r}: {_one_line(exc)}") from exc
        return module, str(path)
    sys.path.insert(0, workdir)
    try:
        module = importlib.import_module(source)
    except ModuleNotFoundError as exc:
        if exc.name is not None and source.startswith(exc.name):
            raise TargetError(
                f"no module named {source!r}; give a file path (pipeline.py) or an importable "
                "module (run from its project directory)"
            ) from exc
        raise TargetError(f"cannot import {source!r}: {_one_line(exc)}") from exc
    except Exception as exc:
        raise TargetError(f"cannot import {source!r}: {_one_line(exc)}") from exc
    return module, source


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _registry_of(module: ModuleType) -> Registry:
    found = [v for v in vars(module).values() if isinstance(v, Registry)]
    return found[0] if len(found) == 1 else active_registry()


def _engine_graph(engine: Any, dag: str | None, shown: str) -> tuple[TaskGraph, str]:
    dags: list[str] = engine.list_dags()
    if dag is None:
        if len(dags) != 1:
            listed = ", ".join(dags) or "none"
            raise TargetError(f"{shown} is an Engine with DAGs {listed}; choose one with --dag")
        dag = dags[0]
    return engine.graph(dag), dag


def _resolve(
    value: object,
    module: ModuleType,
    shown: str,
    dag: str | None,
    *,
    where: str,
    called: bool = False,
) -> tuple[TaskGraph, str, bool, int | None]:
    from flowplan.engine import DagScope, Engine

    registry = _registry_of(module)
    if isinstance(value, Flow):
        graph = TaskGraph.from_terminals(*value.terminals, registry=registry)
        return graph, shown, value.fail_fast, value.max_workers
    if isinstance(value, TaskSpec):
        return TaskGraph.from_terminals(value, registry=registry), value.name, True, None
    if isinstance(value, list | tuple) and value and all(isinstance(v, TaskSpec) for v in value):
        return TaskGraph.from_terminals(*value, registry=registry), shown, True, None
    if isinstance(value, TaskGraph):
        return value, shown, True, None
    if isinstance(value, Registry):
        return TaskGraph.build(value.specs()), shown, True, None
    if isinstance(value, Engine):
        graph, name = _engine_graph(value, dag, where)
        return graph, name, False, None
    if isinstance(value, DagScope):
        return value.engine.graph(value.name), value.name, False, None
    if inspect.isfunction(value) and not called:
        required = [
            p
            for p in inspect.signature(value).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if not required:
            return _resolve(value(), module, shown, dag, where=where, called=True)
    raise TargetError(
        f"{where} is {type(value).__name__}, not something flowplan can run; point at a Flow, "
        "a task, a list of tasks, a TaskGraph, a Registry, an Engine, or a function returning one"
    )


def _default_object(module: ModuleType, source: str) -> tuple[str, object]:
    from flowplan.engine import Engine

    names = vars(module)
    for kind in (Flow, Engine, TaskGraph):
        found = [n for n, v in names.items() if isinstance(v, kind) and not n.startswith("_")]
        if len(found) == 1:
            return found[0], names[found[0]]
        if found:
            options = ", ".join(f"{source}:{n}" for n in found)
            raise TargetError(f"{source} defines several {kind.__name__}s; choose one: {options}")
    tasks = [
        v
        for v in names.values()
        if isinstance(v, TaskSpec) and getattr(v.fn, "__module__", None) == module.__name__
    ]
    if tasks:
        return module.__name__, sorted(tasks, key=lambda s: s.seq)
    raise TargetError(
        f"{source} defines no Flow, Engine, TaskGraph or @task function; "
        f"add one, or name it as {source}:obj"
    )


def load_target(text: str, *, dag: str | None = None, workdir: str | None = None) -> Target:
    """Import ``FILE_OR_MODULE[:obj]`` and build its validated graph.

    Args:
        text: the target.
        dag: the DAG to run when the target is an Engine with several.
        workdir: where relative paths and modules are looked up (default: the current one).

    Raises:
        TargetError: the target cannot be imported or holds nothing runnable.
        GraphValidationError: the tasks do not form a valid graph.
    """
    source, obj = split_target(text)
    module, ref = _import(source, workdir or os.getcwd())
    if obj is None:
        obj, value = _default_object(module, source)
        stem = Path(source).stem if _is_file(source) else source.rpartition(".")[2]
        shown = stem if obj == module.__name__ else obj
    else:
        value = module
        for part in obj.split("."):
            if not hasattr(value, part):
                raise TargetError(f"{source} has no attribute {obj!r} (looked for {part!r})")
            value = getattr(value, part)
        shown = obj
        ref = f"{ref}:{obj}"
    graph, label, fail_fast, workers = _resolve(value, module, shown, dag, where=text)
    return Target(ref=ref, graph=graph, label=label, fail_fast=fail_fast, max_workers=workers)
