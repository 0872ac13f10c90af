"""Task graphs: specs → a validated, frozen DAG.

Place in the data flow: spec → **graph** → plan → interpreter → snapshot. This is the only place
cross-task facts are checked — duplicate names, missing dependencies (with "did you mean"),
cycles (with the cycle's path), main tasks depending on detached ones, dependencies no parameter
receives, required parameters nothing supplies, gate signatures, edge types (``_typecheck``,
``check_types=``) — and every problem is reported at once in a
:class:`~flowplan.errors.GraphValidationError`. Order is deterministic (declaration order,
names as tie-break) and every walk is iterative, so a 100,000-deep chain is fine. The checks
of one task's signature and gates, and the ordering with its cycle report, are in
``_validate``; name checks and the build itself are here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from flowplan._fanout import check_fan_out
from flowplan._gc import gc_paused
from flowplan._suggest import did_you_mean
from flowplan._typecheck import edge_type_problems, resolve_check_types
from flowplan._validate import (
    SignatureFacts,
    check_function,
    check_gates,
    describe,
    facts_of,
    injected_if_valid,
    toposort,
)
from flowplan.errors import (
    DefinitionError,
    DetachedDependencyError,
    DuplicateTaskError,
    GraphValidationError,
    UnknownTaskError,
)
from flowplan.registry import Registry, active_registry
from flowplan.spec import TaskSpec

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["TaskGraph"]


@attrs.frozen(eq=False)
class TaskGraph:
    """A validated DAG of task specs. Immutable; build with :meth:`build` or :meth:`from_terminals`.

    Attributes:
        specs: name → spec, in topological order.
        order: the names in deterministic topological order.
        predecessors: name → upstream names (declaration order).
        successors: name → downstream names.
        inputs: name → the dependency names injected as keyword arguments.
        detached: the names of detached tasks.

    >>> from flowplan.spec import Dependency
    >>> a = TaskSpec("a", lambda: 1)
    >>> b = TaskSpec("b", lambda a: a + 1, deps=(Dependency("a", a),))
    >>> TaskGraph.build([b, a]).order
    ('a', 'b')
    """

    specs: Mapping[str, TaskSpec[..., Any]] = attrs.field(hash=False)
    order: tuple[str, ...]
    predecessors: Mapping[str, tuple[str, ...]] = attrs.field(hash=False, repr=False)
    successors: Mapping[str, tuple[str, ...]] = attrs.field(hash=False, repr=False)
    inputs: Mapping[str, tuple[str, ...]] = attrs.field(hash=False, repr=False)
    detached: frozenset[str] = attrs.field(repr=False)
    _cache: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False, alias="_cache")

    @classmethod
    def build(cls, specs: Iterable[object], *, check_types: bool | None = None) -> TaskGraph:
        """Validate ``specs`` and build the graph.

        Args:
            specs: the task specs.
            check_types: check each edge's producer return annotation against the receiving
                parameter's (``docs/typed-edges.md``): ``None`` (default) checks when the
                optional ``beartype`` package is installed and skips silently otherwise,
                ``True`` requires it, ``False`` skips the check for this graph.

        Raises:
            GraphValidationError: every problem found, together (a ``ValueError``); type
                mismatches are :class:`~flowplan.errors.EdgeTypeError` entries.
            MissingExtraError: ``check_types=True`` without beartype
                (``pip install 'flowplan[typecheck]'``).
        """
        with gc_paused:  # no task code runs here; see flowplan._gc
            return cls._build(specs, check_types)

    @classmethod
    def _build(cls, specs: Iterable[object], check_types: bool | None) -> TaskGraph:
        problems: list[DefinitionError] = []
        by_name: dict[str, TaskSpec[..., Any]] = {}
        for spec in specs:
            if not isinstance(spec, TaskSpec):
                problems.append(
                    DefinitionError(
                        f"expected task specs (functions decorated with @task), got {spec!r} "
                        f"({type(spec).__name__}); decorate it with @task"
                    )
                )
                continue
            seen = by_name.get(spec.name)
            if seen is None:
                by_name[spec.name] = spec
            elif seen is not spec:
                problems.append(
                    DuplicateTaskError(
                        f"two different tasks are named {spec.name!r}: {describe(seen)} and "
                        f"{describe(spec)}; give one of them another name=",
                        task=spec.name,
                    )
                )
        if not by_name and not problems:
            raise GraphValidationError(
                "cannot build an empty graph",
                [DefinitionError("the graph has no tasks; declare at least one task")],
            )
        preds: dict[str, tuple[str, ...]] = {}
        succs: dict[str, list[str]] = {name: [] for name in by_name}
        inputs: dict[str, tuple[str, ...]] = {}
        detached: list[str] = []
        # Generated graphs share a few functions among thousands of specs: read each
        # function's signature facts once (keyed by identity, the function kept alive alongside;
        # a spec's signature is its function's).
        read_facts: dict[int, tuple[object, SignatureFacts]] = {}
        plain: list[str] = []
        bare: list[str] = []
        triggered: list[str] = []
        fan_out: dict[str, str] = {}
        # Specs usually come in declaration order, each after its dependencies; then that order
        # is the topological order the heap would produce, and successor lists come sorted.
        in_order = True
        last_seq: float = -math.inf
        for name, spec in by_name.items():
            spec_detached = spec.detached
            if spec_detached:
                detached.append(name)
            if in_order:
                if spec.seq <= last_seq:
                    in_order = False
                last_seq = spec.seq
            dep_names = tuple([dep.name for dep in spec.deps])
            all_known = True
            for dep_name in dep_names:
                upstream = by_name.get(dep_name)
                if upstream is None:
                    all_known = False
                    hint, best = did_you_mean(dep_name, by_name)
                    problems.append(
                        UnknownTaskError(
                            f"task {name!r} depends on {dep_name!r}, which is not a task in this "
                            f"graph; {hint}",
                            name=dep_name,
                            known=sorted(by_name),
                            suggestion=best,
                            task=name,
                        )
                    )
                    continue
                if upstream.detached and not spec_detached:
                    problems.append(
                        DetachedDependencyError(
                            f"main task {name!r} depends on detached task {dep_name!r}, which "
                            "runs only after the main DAG; make "
                            f"{name!r} detached too or {dep_name!r} not detached",
                            task=name,
                        )
                    )
                if in_order and dep_name not in preds:  # not seen yet (or itself)
                    in_order = False
            if all_known and (len(dep_names) < 2 or len(set(dep_names)) == len(dep_names)):
                upstream_names = dep_names
            else:  # ordered set, without the unknown names: O(1) per edge at huge fan-in
                upstream_names = tuple(dict.fromkeys(n for n in dep_names if n in by_name))
            preds[name] = upstream_names
            for dep_name in upstream_names:
                succs[dep_name].append(name)
            fn = spec.fn
            cached = read_facts.get(id(fn))
            if cached is None:
                cached = read_facts[id(fn)] = (fn, facts_of(spec))
            injected = injected_if_valid(spec, cached[1], dep_names)
            inputs[name] = check_function(spec, problems) if injected is None else injected
            check_gates(spec, problems)
            if spec.fan_out is not None:
                check_fan_out(spec, inputs[name], by_name, problems)
                fan_out[name] = spec.fan_out
            # The interpreter's task kinds, read now while the spec is at hand (one pass).
            if _is_plain(spec):
                plain.append(name)
            if _is_bare(spec):
                bare.append(name)
            if _is_triggered(spec):
                triggered.append(name)
        # In order, no cycle is possible: every dependency came before its dependent.
        order = tuple(by_name) if in_order else toposort(by_name, preds, succs, problems)
        if resolve_check_types(check_types):  # typed edges: a producer's return → its receiver
            problems.extend(edge_type_problems(by_name))
        if problems:
            raise GraphValidationError("invalid task graph", problems)
        if in_order:
            specs_in_order = by_name
            successors = {n: tuple(s) for n, s in succs.items()}
        else:  # graph order, whatever order the specs came in
            position = {name: i for i, name in enumerate(order)}
            specs_in_order = {name: by_name[name] for name in order}
            successors = {
                n: tuple(sorted(s, key=position.__getitem__)) if len(s) > 1 else tuple(s)
                for n, s in succs.items()
            }
        graph = cls(
            specs=MappingProxyType(specs_in_order),
            order=order,
            predecessors=MappingProxyType(preds),
            successors=MappingProxyType(successors),
            inputs=MappingProxyType(inputs),
            detached=frozenset(detached),
        )
        graph._cache.update(  # what plain_tasks() & co. would compute in passes of their own
            plain=frozenset(plain),
            bare=frozenset(bare),
            triggered=frozenset(triggered),
            fan_out=MappingProxyType(fan_out),
        )
        return graph

    @classmethod
    def from_terminals(
        cls,
        *terminals: TaskSpec[..., Any],
        registry: Registry | None = None,
        check_types: bool | None = None,
    ) -> TaskGraph:
        """Collect ``terminals`` and their upstream tasks, plus detached tasks from ``registry``.

        As in flowing, a detached task in the registry joins when every dependency it has is
        already collected (repeated to a fixed point, so detached chains join). Tasks are matched
        by identity, never by name, so stale definitions that reuse a name stay out.
        ``registry`` defaults to the active registry (the one ``@task`` registers into);
        ``check_types`` is :meth:`build`'s.
        """
        collected: dict[int, TaskSpec[..., Any]] = {}
        stack = list(terminals)
        while stack:
            spec = stack.pop()
            if id(spec) in collected:
                continue
            collected[id(spec)] = spec
            stack.extend(dep.spec for dep in spec.deps if dep.spec is not None)
        source = registry if registry is not None else active_registry()  # empty ones are falsy
        candidates = [s for s in source.specs() if s.detached and s.deps]
        names = {spec.name for spec in collected.values()}
        changed = True
        while changed:
            changed = False
            for spec in candidates:
                if id(spec) in collected:
                    continue
                if all(
                    (id(dep.spec) in collected) if dep.spec is not None else dep.name in names
                    for dep in spec.deps
                ):
                    collected[id(spec)] = spec
                    names.add(spec.name)
                    changed = True
        ordered: list[TaskSpec[..., Any]] = sorted(collected.values(), key=lambda s: s.seq)
        return cls.build(ordered, check_types=check_types)

    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def __getitem__(self, name: str) -> TaskSpec[..., Any]:
        try:
            return self.specs[name]
        except KeyError:
            raise self.unknown(name) from None

    def unknown(self, name: str, *, what: str = "task") -> UnknownTaskError:
        """An :class:`UnknownTaskError` for ``name`` with a suggestion from this graph."""
        hint, best = did_you_mean(name, self.specs)
        return UnknownTaskError(
            f"unknown {what} {name!r}: it is not a task of this graph; {hint}",
            name=name,
            known=sorted(self.specs),
            suggestion=best,
        )

    def ancestors(self, names: Iterable[str]) -> frozenset[str]:
        """Every task upstream of ``names`` (excluding them unless upstream of another)."""
        return self._walk(names, self.predecessors)

    def descendants(self, names: Iterable[str]) -> frozenset[str]:
        """Every task downstream of ``names``."""
        return self._walk(names, self.successors)

    @staticmethod
    def _walk(names: Iterable[str], edges: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
        seen: set[str] = set()
        stack = [n for name in names for n in edges[name]]
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(edges[name])
        return frozenset(seen)

    @classmethod
    def from_networkx(
        cls,
        g: nx.DiGraph[str],
        *,
        registry: Registry | None = None,
        check_types: bool | None = None,
    ) -> TaskGraph:
        """Build a graph from a ``networkx.DiGraph`` whose nodes are tasks.

        Each node's name is its task's name; its data holds the task under ``"task"`` — a
        :class:`~flowplan.spec.TaskSpec`, or a plain callable (sync or ``async def``) — and any
        task option under its name (``retry`` as a number of retries or a
        :class:`~flowplan.policies.RetryPolicy`, ``timeout_s``, ``when``, ``validate``,
        ``retry_until``, ``detached``, ``effect``, ``trigger``, ``fan_out``, …; options win over
        a spec's own). An edge ``u → v`` makes ``v`` depend on ``u``: ``v`` receives ``u``'s
        value when it has a parameter named ``u`` (or ``**kwargs``), or under the parameter the
        edge names with ``param="..."``; otherwise (or with ``param=None``) the edge only
        orders. ``optional=True`` on an edge is :func:`~flowplan.spec.optional`. Other node
        data is ignored, except a key so close to an option's name that it is surely a typo.
        The graph the edges describe replaces a spec's own dependencies.

        Args:
            g: the graph (it is read, never changed).
            registry: also register the tasks here (default: nowhere — the graph holds them).
            check_types: as in :meth:`build`.

        Raises:
            GraphValidationError: every problem found, each naming its node: what
                :meth:`build` checks, plus nodes without a task, names that are not strings,
                misspelt options and edges naming a parameter the task does not have.
            DefinitionError: ``g`` is not a directed networkx graph with single edges.

        >>> import networkx as nx
        >>> g = nx.DiGraph()
        >>> g.add_node("load", task=lambda: [1, 2, 3])
        >>> g.add_node("total", task=lambda rows: sum(rows), retry=2)
        >>> g.add_edge("load", "total", param="rows")
        >>> graph = TaskGraph.from_networkx(g)
        >>> graph.order, graph["total"].retry.retries
        (('load', 'total'), 2)
        """
        from flowplan._networkx import graph_from_networkx

        with gc_paused:
            return graph_from_networkx(g, registry=registry, check_types=check_types)

    def to_networkx(self) -> nx.DiGraph[str]:
        """The graph as a new, ordinary ``networkx.DiGraph`` the caller may change.

        Node data: ``task`` (the spec) and each of its options under the name
        :meth:`from_networkx` reads; edge data: ``param`` (the parameter receiving the value,
        ``None`` for an ordering-only edge) and ``optional``. ``from_networkx(to_networkx())``
        rebuilds an equal graph, with the very same specs.

        >>> from flowplan.spec import Dependency
        >>> a = TaskSpec("a", lambda: 1)
        >>> b = TaskSpec("b", lambda a: a + 1, deps=(Dependency("a", a),))
        >>> g = TaskGraph.build([a, b]).to_networkx()
        >>> list(g.edges(data="param"))
        [('a', 'b', 'a')]
        """
        from flowplan._networkx import graph_to_networkx

        with gc_paused:  # builds only data, no cycles (see flowplan._gc)
            return graph_to_networkx(self)

    @property
    def digraph(self) -> nx.DiGraph[str]:
        """The graph as a frozen ``networkx.DiGraph`` of task names (built on first use); see
        :meth:`to_networkx` for a graph with the specs and options that the caller may
        change."""
        cached: nx.DiGraph[str] | None = self._cache.get("digraph")
        if cached is None:
            import networkx as nx

            cached = nx.DiGraph()
            cached.add_nodes_from(self.order)
            cached.add_edges_from(
                (dep, name) for name in self.order for dep in self.predecessors[name]
            )
            cached = nx.freeze(cached)
            self._cache["digraph"] = cached
        return cached

    def plain_tasks(self) -> frozenset[str]:
        """The tasks the interpreter may run on its fast path, computed once: sync bodies with
        no gate (``when``, ``validate``, ``retry_until``), one attempt, no timeout, no
        process isolation and no ``effect``."""
        plain: frozenset[str] | None = self._cache.get("plain")
        if plain is None:
            plain = self._cache["plain"] = frozenset(
                name for name, spec in self.specs.items() if _is_plain(spec)
            )
        return plain

    def bare_tasks(self) -> frozenset[str]:
        """The tasks whose keyword arguments are exactly their inputs' values (no
        ``upstream_param``, no context parameter), computed once."""
        bare: frozenset[str] | None = self._cache.get("bare")
        if bare is None:
            bare = self._cache["bare"] = frozenset(
                name for name, spec in self.specs.items() if _is_bare(spec)
            )
        return bare

    def triggered_tasks(self) -> frozenset[str]:
        """The tasks with a non-default ``trigger`` or an ``optional`` dependency, computed
        once: the only ones the interpreter evaluates a trigger rule for (see ``_triggers``)."""
        triggered: frozenset[str] | None = self._cache.get("triggered")
        if triggered is None:
            triggered = self._cache["triggered"] = frozenset(
                name for name, spec in self.specs.items() if _is_triggered(spec)
            )
        return triggered

    def fan_out_tasks(self) -> Mapping[str, str]:
        """Each fan-out task → the dependency it maps over (``fan_out=``), computed once."""
        fan_out: Mapping[str, str] | None = self._cache.get("fan_out")
        if fan_out is None:
            fan_out = self._cache["fan_out"] = MappingProxyType(
                {n: s.fan_out for n, s in self.specs.items() if s.fan_out is not None}
            )
        return fan_out

    def step_keys(self) -> Mapping[str, str]:
        """Each task's step key (code, dependency keys, ``version=``), computed once."""
        keys: Mapping[str, str] | None = self._cache.get("step_keys")
        if keys is None:
            from flowplan.keys import _graph_step_keys

            specs = self.specs
            computed = _graph_step_keys(
                self.order,
                {name: spec.fn for name, spec in specs.items()},
                self.predecessors,
                {name: spec.version for name, spec in specs.items()},
            )
            keys = MappingProxyType(computed)
            self._cache["step_keys"] = keys
        return keys


def _is_plain(spec: TaskSpec[..., Any]) -> bool:
    """Whether ``spec`` may run on the interpreter's fast path (see ``plain_tasks``)."""
    return (
        spec.when is None
        and spec.validate is None
        and spec.retry_until is None
        and spec.timeout_s is None
        and not spec.is_async
        and spec.retry.max_attempts == 1
        and spec.isolation != "process"  # its attempts go to a child process
        and spec.effect is None  # keyed attempts, durable starts, in-doubt checks
    )


def _is_bare(spec: TaskSpec[..., Any]) -> bool:
    """Whether ``spec``'s keyword arguments are just its inputs' values."""
    return spec.upstream_param is None and spec.context_param is None


def _is_triggered(spec: TaskSpec[..., Any]) -> bool:
    """Whether ``spec`` has a trigger rule to evaluate (a non-default one, or an optional
    dependency)."""
    if spec.trigger != "all_succeeded":
        return True
    for dep in spec.deps:  # noqa: SIM110 - no genexpr: called for every spec of a build
        if dep.optional:
            return True
    return False
