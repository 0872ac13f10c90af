"""DAG lookup and graph building: a DAG name → a validated :class:`~flowplan.graph.TaskGraph`.

Place in the data flow: façade, between the registry (*spec* layer) and ``plan``. The only
checks added to :meth:`TaskGraph.build`'s are flowrun's: unknown DAG names (with "did you
mean" and the list of DAGs) and dependencies that cross DAGs. Graphs are cached until the
registry changes.

A registry where no task names a ``dag=`` is one implicit DAG (flowrun's legacy mode): any DAG
name selects it. Once DAGs are named, tasks without ``dag=`` form the DAG ``"default"``.
"""

from __future__ import annotations

from flowplan._suggest import did_you_mean
from flowplan.errors import DefinitionError, GraphValidationError, UnknownTaskError
from flowplan.graph import TaskGraph

from ._registry import DEFAULT_DAG, TaskRegistry

__all__ = ["DagCatalog"]


class DagCatalog:
    """The DAGs of one registry, as validated graphs (cached per registry version)."""

    def __init__(self, registry: TaskRegistry, *, check_types: bool | None = None) -> None:
        self.registry = registry
        self.check_types = check_types  # TaskGraph.build's typed-edge option
        self._graphs: dict[str, tuple[int, TaskGraph]] = {}

    def resolve(self, dag_name: str) -> str:
        """The registry key of ``dag_name`` (every name means the one DAG in legacy mode)."""
        dags = self.registry.list_dags()
        if not dags:
            raise UnknownTaskError(
                f"DAG {dag_name!r} has no registered tasks: this engine has none; declare "
                "tasks with @engine.task(dag=...) first",
                name=dag_name,
            )
        if not self.registry.scoped:
            return DEFAULT_DAG
        if dag_name in dags:
            return dag_name
        hint, best = did_you_mean(dag_name, dags)
        hint = hint if best is not None else "no DAG name is close"
        raise UnknownTaskError(
            f"DAG {dag_name!r} is not registered; {hint}; registered DAGs: "
            f"{', '.join(repr(d) for d in dags)}",
            name=dag_name,
            known=dags,
            suggestion=best,
        )

    def graph(self, dag_name: str) -> TaskGraph:
        """The validated :class:`~flowplan.graph.TaskGraph` of a DAG (cached until it changes).

        Raises:
            UnknownTaskError: no such DAG ("did you mean ...", with the DAG names).
            GraphValidationError: missing or cross-DAG dependencies, cycles, signatures.
        """
        key = self.resolve(dag_name)
        version = self.registry.version
        cached = self._graphs.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        specs = self.registry.specs(key)
        local = {spec.name: spec for spec in specs}
        problems: list[DefinitionError] = []
        crossing: set[tuple[str, str]] = set()
        for spec in specs:
            for dep in spec.deps:
                if dep.spec is not None:  # given as a task: its own DAG decides
                    other = self.registry.dag_of(dep.spec)
                else:  # given by name: crossing if only another DAG has it
                    others = [d for d in self.registry.dags_with_task(dep.name) if d != key]
                    other = others[0] if others and dep.name not in local else None
                if other is None or other == key:
                    continue
                crossing.add((spec.name, dep.name))
                problems.append(
                    DefinitionError(
                        f"task {spec.name!r} of DAG {key!r} depends on {dep.name!r} of DAG "
                        f"{other!r}: dependencies cannot cross DAGs; move both tasks into one "
                        "DAG (dag=...) or pass the value through the RunContext",
                        task=spec.name,
                    )
                )
        try:
            graph = TaskGraph.build(specs, check_types=self.check_types)
        except GraphValidationError as exc:
            problems.extend(
                p
                for p in exc.exceptions
                if isinstance(p, DefinitionError)
                and not (isinstance(p, UnknownTaskError) and (p.task, p.name) in crossing)
            )
            raise GraphValidationError(f"invalid DAG {key!r}", problems) from None
        if problems:
            raise GraphValidationError(f"invalid DAG {key!r}", problems)
        self._graphs[key] = (version, graph)
        return graph
