"""``TaskRegistry``: flowrun tasks, each in one DAG namespace, activatable per context.

Place in the data flow: façade, beside the *spec* layer. The Engine builds each DAG's graph
from the specs registered under its name. Tasks declared without ``dag=`` belong to the
implicit DAG :data:`DEFAULT_DAG` (``"default"``). The global ``@task`` registers into the
registry activated in the current context (a context variable, never process-global state).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from flowplan._suggest import did_you_mean
from flowplan.errors import (
    DefinitionError,
    DuplicateTaskError,
    InvalidOptionError,
    UnknownTaskError,
)
from flowplan.spec import TaskSpec

from ._flowrun_spec import TaskSpec as FlowrunSpec
from ._flowrun_spec import core_spec, describe

__all__ = ["DEFAULT_DAG", "NoActiveRegistryError", "TaskRegistry"]

DEFAULT_DAG = "default"


class NoActiveRegistryError(DefinitionError, LookupError):
    """The global ``@task`` was used with no ``registry=`` and no activated registry."""


class TaskRegistry:
    """An explicit collection of flowrun tasks, each in one DAG namespace.

    Names are unique within a DAG and may repeat across DAGs. Activate a registry to make it
    the target of the global ``@task`` in the current context.

    >>> from flowplan.engine import task
    >>> registry = TaskRegistry()
    >>> token = registry.activate()
    >>> @task
    ... def one() -> int:
    ...     return 1
    >>> TaskRegistry.deactivate(token)
    >>> registry.list_tasks()
    ['one']
    """

    def __init__(self) -> None:
        self._entries: list[tuple[str, TaskSpec[..., Any]]] = []
        self._by_key: dict[tuple[str, str], TaskSpec[..., Any]] = {}  # (dag, name) → spec
        self._views: dict[tuple[str, str], FlowrunSpec] = {}  # (dag, name) → flowrun's view
        self._scoped = False
        self._lock = threading.Lock()
        self._version = 0

    def __repr__(self) -> str:
        shown = ", ".join(f"{dag}:{spec.name}" for dag, spec in self._entries[:10])
        return f"TaskRegistry([{shown}{', ...' if len(self._entries) > 10 else ''}])"

    def register(self, spec: TaskSpec[..., Any] | FlowrunSpec, dag: str | None = None) -> None:
        """Add ``spec`` to DAG ``dag`` (``None``: the spec's own ``dag``, else the implicit
        :data:`DEFAULT_DAG`).

        ``spec`` is a task from ``@engine.task`` / ``@task`` or a flowrun
        :class:`~flowplan.engine.TaskSpec` built by hand (its options are checked as
        ``@engine.task`` checks them).

        Raises:
            DuplicateTaskError: another task already has this name in this DAG (a
                ``ValueError``: "Duplicate task name: 'x'").
            InvalidOptionError: a bad ``dag`` or option.
        """
        if isinstance(spec, FlowrunSpec):
            view: FlowrunSpec | None = spec
            dag = dag if dag is not None else spec.dag
            core = core_spec(spec)
        else:
            view, core = None, spec
        given: object = dag
        if given is not None and (not isinstance(given, str) or not given):
            raise InvalidOptionError(
                f"task {core.name!r}: dag must be a non-empty string or None, got {dag!r}",
                option="dag",
                value=dag,
                task=core.name,
            )
        key = dag or DEFAULT_DAG
        with self._lock:
            other = self._by_key.get((key, core.name))
            if other is not None and (other is core or self._views[key, core.name] is view):
                return
            if other is not None:
                raise DuplicateTaskError(
                    f"Duplicate task name: {core.name!r}: DAG {key!r} already has a task named "
                    f"{core.name!r} ({getattr(other.fn, '__qualname__', other.fn)!r}); names "
                    "are unique within a DAG namespace — pass another name= or dag=",
                    task=core.name,
                )
            self._entries.append((key, core))
            self._by_key[key, core.name] = core
            self._views[key, core.name] = view if view is not None else describe(core, dag)
            self._scoped = self._scoped or dag is not None
            self._version += 1

    @property
    def version(self) -> int:
        """Changes whenever a task is registered or the registry is cleared."""
        return self._version

    @property
    def scoped(self) -> bool:
        """Whether any task was declared with ``dag=`` (else: one implicit DAG, flowrun legacy)."""
        return self._scoped

    def list_dags(self) -> list[str]:
        """The DAG names, sorted."""
        with self._lock:
            return sorted({dag for dag, _ in self._entries})

    def list_tasks(self, dag: str | None = None) -> list[str]:
        """Task names (of ``dag``, if given), in registration order."""
        with self._lock:
            return [s.name for d, s in self._entries if dag is None or d == dag]

    def specs(self, dag: str) -> tuple[TaskSpec[..., Any], ...]:
        """The tasks of DAG ``dag``, in registration order (maybe empty)."""
        with self._lock:
            return tuple(spec for d, spec in self._entries if d == dag)

    def dag_of(self, spec: TaskSpec[..., Any]) -> str | None:
        """The DAG ``spec`` was registered in, or ``None``."""
        with self._lock:
            return next((d for d, s in self._entries if s is spec), None)

    def dags_with_task(self, name: str) -> list[str]:
        """The DAGs that have a task called ``name``."""
        with self._lock:
            return sorted({d for d, s in self._entries if s.name == name})

    def spec(self, name: str, dag: str | None = None) -> TaskSpec[..., Any]:
        """The core spec the engine runs for task ``name`` (in ``dag``; without it, the name
        must be unique).

        Raises:
            UnknownTaskError: no such task (a ``KeyError``: "... is not registered; did you
                mean ...").
        """
        with self._lock:
            found = [s for d, s in self._entries if s.name == name and dag in (None, d)]
            known = [s.name for d, s in self._entries if dag in (None, d)]
        if len(found) == 1:
            return found[0]
        if found:
            raise UnknownTaskError(
                f"task {name!r} exists in several DAGs; pass dag= to choose one",
                name=name,
                known=sorted(known),
            )
        hint, best = did_you_mean(name, known)
        where = f" in DAG {dag!r}" if dag is not None else ""
        raise UnknownTaskError(
            f"task {name!r} is not registered{where}; {hint}",
            name=name,
            known=sorted(set(known)),
            suggestion=best,
        )

    def get(self, name: str, dag: str | None = None) -> FlowrunSpec:
        """Task ``name`` as flowrun describes it (a :class:`~flowplan.engine.TaskSpec`: the
        one registered by hand, or a view of a decorated task).

        Raises:
            UnknownTaskError: no such task (a ``KeyError``; "did you mean ...").
        """
        core = self.spec(name, dag)
        with self._lock:
            key = next(d for d, s in self._entries if s is core)
            return self._views[key, name]

    def __getitem__(self, name: str) -> FlowrunSpec:
        return self.get(name)

    @property
    def task_specs(self) -> Mapping[str, FlowrunSpec]:
        """A read-only mapping of task name to flowrun :class:`~flowplan.engine.TaskSpec`, in
        registration order (a name declared in several DAGs appears as ``"dag:name"``)."""
        with self._lock:
            counts: dict[str, int] = {}
            for _, spec in self._entries:
                counts[spec.name] = counts.get(spec.name, 0) + 1
            return MappingProxyType(
                {
                    (s.name if counts[s.name] == 1 else f"{d}:{s.name}"): self._views[d, s.name]
                    for d, s in self._entries
                }
            )

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return any(s.name == name for _, s in self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self.list_tasks()))

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every task."""
        with self._lock:
            self._entries.clear()
            self._by_key.clear()
            self._views.clear()
            self._scoped = False
            self._version += 1

    def activate(self) -> contextvars.Token[TaskRegistry | None]:
        """Make this registry the target of the global ``@task`` in the current context.

        Returns:
            A token for :meth:`deactivate`.
        """
        return _active.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[TaskRegistry | None]) -> None:
        """Restore the registry that was active before :meth:`activate` returned ``token``."""
        _active.reset(token)

    @staticmethod
    def active() -> TaskRegistry:
        """The activated registry.

        Raises:
            NoActiveRegistryError: none is active in this context.
        """
        registry = _active.get()
        if registry is None:
            raise NoActiveRegistryError(
                "No active TaskRegistry: pass registry=... to @task, or activate one first "
                "(registry = TaskRegistry(); token = registry.activate())"
            )
        return registry


_active: contextvars.ContextVar[TaskRegistry | None] = contextvars.ContextVar(
    "flowplan_engine_active_registry", default=None
)
