"""networkx in and out: a ``networkx.DiGraph`` of tasks → a :class:`TaskGraph`, and back.

Place in the data flow: beside the **graph** (``TaskGraph.from_networkx`` / ``to_networkx``),
the plan (``Plan.to_networkx``) and the report (``report.to_networkx``). networkx is imported
here, when one of these is called, never when flowplan is imported.

In: each node is a task — its data holds the task under ``"task"`` (a :class:`TaskSpec`, or a
plain callable named by the node) and any task options under their option names; an edge
``u → v`` makes ``v`` depend on ``u``. Everything :meth:`TaskGraph.build` checks is checked.
Out: a new, ordinary ``DiGraph`` the caller owns, with the same keys, so that
``TaskGraph.from_networkx(graph.to_networkx())`` rebuilds an equal graph (the same specs).
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from flowplan._suggest import suggest
from flowplan.errors import DefinitionError, GraphValidationError, InvalidOptionError
from flowplan.policies import RetryPolicy
from flowplan.spec import Dependency, MappedTaskSpec, TaskSpec

if TYPE_CHECKING:
    import networkx as nx

    from flowplan.graph import TaskGraph
    from flowplan.plan import Plan
    from flowplan.registry import Registry
    from flowplan.snapshot import Snapshot

__all__ = [
    "NODE_OPTIONS",
    "graph_from_networkx",
    "graph_to_networkx",
    "plan_to_networkx",
    "run_to_networkx",
]

# The TaskSpec fields a node's data may set, by their option names.
NODE_OPTIONS: tuple[str, ...] = (
    "retry",
    "timeout_s",
    "detached",
    "when",
    "validate",
    "retry_until",
    "retain_result",
    "version",
    "upstream_param",
    "context_param",
    "idempotent",
    "trigger",
    "effect",
    "reconcile",
    "cache",
    "isolation",
    "fan_out",
)
# What flowplan's own exporters add to a node: never mistaken for a misspelt option.
_EXPORTED = frozenset(
    {
        "task",
        "action",
        "reason",
        "status",
        "attempts",
        "duration_s",
        "started_at",
        "finished_at",
        "error",
        "error_type",
        "error_kind",
        "root_cause",
        "outcome_reason",
        "cached",
    }
)
_OPTION_SET = frozenset(NODE_OPTIONS)
_NODE_KEYS = ("task", *NODE_OPTIONS)
_read_options = operator.attrgetter(*NODE_OPTIONS)
_UNSET = object()
_NO_RENAMES: Mapping[str, str] = MappingProxyType({})
_RENAMES = "__flowplan_renames__"  # set on the wrapper of a function taking renamed edges


def _renames_of(fn: object) -> Mapping[str, str]:
    """Upstream task → parameter of a wrapped function (see :func:`_renamed`), else empty."""
    attributes = getattr(fn, "__dict__", None)  # no failed getattr per node: it is costly
    return attributes.get(_RENAMES, _NO_RENAMES) if attributes else _NO_RENAMES


_TYPO_CUTOFF = 0.65  # how close an unknown key must be to an option to be reported as a typo


def graph_to_networkx(graph: TaskGraph) -> nx.DiGraph[str]:
    """A new ``DiGraph`` of ``graph``: node data ``task`` (the spec) and each option; edge data
    ``param`` (the parameter receiving the value, ``None`` when the edge orders only) and
    ``optional``."""
    import networkx as nx

    specs = graph.specs
    inputs = graph.inputs
    out: nx.DiGraph[str] = nx.DiGraph()
    read = _read_options  # one C call per spec for every option
    out.add_nodes_from(
        (name, dict(zip(_NODE_KEYS, (spec, *read(spec)), strict=True)))
        for name, spec in specs.items()
    )
    edges: list[tuple[str, str, dict[str, Any]]] = []
    for name, spec in specs.items():
        received: tuple[str, ...] | frozenset[str] = inputs[name]
        if len(received) > 8:  # a wide fan-in: a set, or the edges of its node cost O(n²)
            received = frozenset(received)
        renames = _renames_of(spec.fn)
        for dep in spec.deps:
            upstream = dep.name
            param = renames.get(upstream, upstream) if upstream in received else None
            edges.append((upstream, name, {"param": param, "optional": dep.optional}))
    out.add_edges_from(edges)
    return out


def plan_to_networkx(plan: Plan) -> nx.DiGraph[str]:
    """:func:`graph_to_networkx` of the plan's graph, plus each node's ``action`` (the
    :class:`~flowplan.plan.Action`'s value: ``"run"``, ``"reuse"``, ``"not_needed"``,
    ``"in_doubt"``) and ``reason``."""
    out = graph_to_networkx(plan.graph)
    nodes = out.nodes
    for name, decision in plan.decisions.items():
        data = nodes[name]
        data["action"] = decision.action.value
        data["reason"] = decision.reason
    return out


def run_to_networkx(graph: TaskGraph, snapshot: Snapshot) -> nx.DiGraph[str]:
    """:func:`graph_to_networkx` plus what ``snapshot`` recorded of each task: ``status`` (the
    :class:`~flowplan.snapshot.TaskStatus` value, ``None`` without a record), ``attempts``,
    ``duration_s`` (its last attempt), ``started_at``, ``finished_at``, ``error`` (the
    message), ``error_type``, ``error_kind``, ``cached``, ``outcome_reason`` (why it was
    skipped, cancelled or failed) and ``root_cause``."""
    out = graph_to_networkx(graph)
    nodes = out.nodes
    records = snapshot.records
    for name in graph.order:
        record = records.get(name)
        error = None if record is None else record.error
        nodes[name].update(
            status=None if record is None else record.status.value,
            attempts=0 if record is None else record.attempts,
            duration_s=None if record is None else record.duration_ms / 1000,
            started_at=None if record is None else record.started_at,
            finished_at=None if record is None else record.finished_at,
            error=None if error is None else error.message,
            error_type=None if error is None else error.type,
            error_kind=None if error is None else error.kind,
            cached=False if record is None else record.cached,
            outcome_reason=None if record is None else record.reason,
            root_cause=None if record is None else record.root_cause,
        )
    return out


def graph_from_networkx(
    g: object, *, registry: Registry | None, check_types: bool | None
) -> TaskGraph:
    """The :class:`TaskGraph` of a ``networkx.DiGraph`` of tasks (see the module docstring)."""
    from flowplan.graph import TaskGraph

    nodes, edges = _read(g)
    problems: list[DefinitionError] = []
    specs: dict[str, TaskSpec[..., Any]] = {}
    for node, data in nodes:
        spec = _node_spec(node, data, edges.get(node, ()), problems)
        if spec is not None:
            specs[node] = spec
    if problems:
        raise GraphValidationError("invalid networkx task graph", problems)
    linked = [
        spec if spec is data.get("task") else _link(spec, specs)  # a given spec stays as it is
        for (_, data), spec in zip(nodes, specs.values(), strict=True)
    ]
    graph = TaskGraph.build(linked, check_types=check_types)
    if registry is not None:
        for spec in linked:
            if spec not in registry.specs():
                registry.register(spec)
    return graph


_Edge = tuple[str, Mapping[str, Any]]


def _read(g: object) -> tuple[list[tuple[str, Mapping[str, Any]]], dict[str, list[_Edge]]]:
    """The nodes (with data) and each node's incoming edges (with data) of ``g``, checked to be
    a directed graph with string nodes."""
    import networkx as nx

    if not isinstance(g, nx.Graph):
        raise DefinitionError(
            f"expected a networkx.DiGraph, got {g!r} ({type(g).__name__}); build one with "
            "networkx.DiGraph() and add a node per task (data 'task' = the function)"
        )
    if not isinstance(g, nx.DiGraph) or isinstance(g, nx.MultiDiGraph):
        kind = type(g).__name__
        raise DefinitionError(
            f"expected a networkx.DiGraph, got a {kind}: edges must have a direction (u → v: v "
            "depends on u) and be single; convert it with networkx.DiGraph(g)"
        )
    problems: list[DefinitionError] = []
    nodes: list[tuple[str, Mapping[str, Any]]] = []
    for node, data in g.nodes(data=True):
        if not isinstance(node, str) or not node:
            problems.append(
                DefinitionError(
                    f"node {node!r} ({type(node).__name__}): node names are task names and must "
                    "be non-empty strings; relabel the graph, e.g. "
                    "networkx.relabel_nodes(g, str)"
                )
            )
            continue
        nodes.append((node, data))
    if problems:
        raise GraphValidationError("invalid networkx task graph", problems)
    # each node's incoming edges in the order they were added (a spec's dependency order)
    pred = g.pred
    incoming: dict[str, list[_Edge]] = {node: list(pred[node].items()) for node, _ in nodes}
    return nodes, incoming


def _node_spec(
    node: str,
    data: Mapping[str, Any],
    incoming: list[_Edge] | tuple[()],
    problems: list[DefinitionError],
) -> TaskSpec[..., Any] | None:
    """The spec node ``node`` declares (not yet linked to its upstream specs), or ``None`` with
    the problems appended."""
    given = data.get("task")
    if given is None:
        problems.append(
            DefinitionError(
                f"node {node!r} has no task: its data needs the function under 'task', e.g. "
                f"g.add_node({node!r}, task=my_function)",
                task=node,
            )
        )
        return None
    options: dict[str, Any] = {}
    for key, value in data.items():
        if key in _OPTION_SET:
            options[key] = value
        elif key not in _EXPORTED and isinstance(key, str):
            close = suggest(key, NODE_OPTIONS)
            if close is not None and _similar(key, close):
                problems.append(
                    InvalidOptionError(
                        f"node {node!r}: unknown task option {key!r}; did you mean {close!r}? "
                        f"(task options on a node: {', '.join(NODE_OPTIONS)}; other data is "
                        "ignored)",
                        option=key,
                        value=value,
                        task=node,
                    )
                )
    try:
        return _spec(node, given, options, incoming)
    except DefinitionError as exc:
        problems.append(exc)
        return None


def _similar(key: str, option: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, key, option).ratio() >= _TYPO_CUTOFF


def _spec(
    node: str,
    given: object,
    options: dict[str, Any],
    incoming: list[_Edge] | tuple[()],
) -> TaskSpec[..., Any]:
    """The spec of one node: ``given`` (a spec or a callable) with ``options`` and ``incoming``
    edges as its dependencies."""
    if "retry" in options:
        options["retry"] = _retry_policy(node, options["retry"])
    if isinstance(given, TaskSpec):
        spec: TaskSpec[..., Any] = given
        if spec.name != node:
            raise DefinitionError(
                f"node {node!r} holds task {spec.name!r}: a node's name is its task's name; "
                f"name the node {spec.name!r}, or pass the function (task=spec.fn) to make a "
                f"task named {node!r}",
                task=node,
            )
        fn: Callable[..., Any] = spec.fn
    elif callable(given):
        spec = TaskSpec(name=node, fn=given)
        fn = given
    else:
        raise DefinitionError(
            f"node {node!r}: 'task' must be a task (TaskSpec) or a function, got {given!r} "
            f"({type(given).__name__}); e.g. g.add_node({node!r}, task=my_function)",
            task=node,
        )
    deps, renames = _dependencies(node, incoming, spec, options.get("fan_out", spec.fan_out))
    if renames != _renames_of(fn):
        fn = _renamed(fn, renames)
    fan_out = options.pop("fan_out", spec.fan_out)
    changes = {}
    for key, value in options.items():
        current = getattr(spec, key)
        if value is not current and value != current:
            changes[key] = value
    same_deps = tuple((d.name, d.optional, d.ordering_only) for d in spec.deps) == tuple(
        (d.name, d.optional, d.ordering_only) for d in deps
    )
    if not changes and same_deps and fn is spec.fn and fan_out == spec.fan_out:
        return spec  # unchanged: the very spec, so a round trip gives an equal graph
    kind = TaskSpec if fan_out is None else MappedTaskSpec
    fields = {f: getattr(spec, f) for f in NODE_OPTIONS}
    fields.update(changes)
    fields["fan_out"] = fan_out
    return kind(name=node, fn=fn, deps=deps, seq=spec.seq, **fields)


def _retry_policy(node: str, value: object) -> RetryPolicy:
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return RetryPolicy(retries=value)
    raise InvalidOptionError(
        f"node {node!r}: retry must be a number of retries (int) or a RetryPolicy, got "
        f"{value!r} ({type(value).__name__}); e.g. retry=2",
        option="retry",
        value=value,
        task=node,
    )


def _dependencies(
    node: str,
    incoming: list[_Edge] | tuple[()],
    spec: TaskSpec[..., Any],
    fan_out: object,
) -> tuple[tuple[Dependency, ...], dict[str, str]]:
    """``node``'s dependencies from its incoming edges, and the renames (task → parameter) of
    the edges whose ``param=`` differs from the upstream task's name."""
    if _same_edges(spec, incoming):  # e.g. a graph exported by to_networkx: nothing to read
        return spec.deps, dict(_renames_of(spec.fn))
    inner: Callable[..., Any] = getattr(spec.fn, "__flowplan_inner__", spec.fn)
    params = spec.signature.parameters if inner is spec.fn else inspect.signature(inner).parameters
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    receives = spec.upstream_param is None
    deps: list[Dependency] = []
    renames: dict[str, str] = {}
    for upstream, data in incoming:
        optional = bool(data.get("optional", False))
        if "param" in data:
            param = data["param"]
            if param is not None and (not isinstance(param, str) or not param):
                raise InvalidOptionError(
                    f"edge {upstream!r} → {node!r}: param must name a parameter of {node!r} "
                    f"(a string) or be None for an ordering-only edge, got {param!r}",
                    option="param",
                    value=param,
                    task=node,
                )
            if param is not None and param != upstream:
                if param not in params:
                    raise InvalidOptionError(
                        f"edge {upstream!r} → {node!r}: param={param!r} is not a parameter of "
                        f"{node!r}; its parameters are {', '.join(params) or '(none)'}",
                        option="param",
                        value=param,
                        task=node,
                    )
                renames[upstream] = param
            ordering_only = param is None
        else:  # received when a parameter is named after the upstream task
            ordering_only = not (upstream in params or var_keyword) and upstream != fan_out
        deps.append(
            Dependency(upstream, ordering_only=ordering_only and receives, optional=optional)
        )
    return tuple(deps), renames


def _same_edges(spec: TaskSpec[..., Any], incoming: list[_Edge] | tuple[()]) -> bool:
    """Whether ``incoming`` says what ``spec.deps`` says: the same upstream tasks in the same
    order, each received (``param`` naming its receiver) or ordering only (``param=None``)
    as the spec has it, and equally optional."""
    deps = spec.deps
    if len(deps) != len(incoming):
        return False
    renames = _renames_of(spec.fn)
    for dep, (upstream, data) in zip(deps, incoming, strict=True):
        if dep.name != upstream or bool(data.get("optional", False)) != dep.optional:
            return False
        param = data.get("param", _UNSET)
        if param is _UNSET:
            if renames:
                return False
            continue
        if param is None:
            if not dep.ordering_only:
                return False
        elif dep.ordering_only or renames.get(upstream, upstream) != param:
            return False
    return True


def _link(spec: TaskSpec[..., Any], specs: Mapping[str, TaskSpec[..., Any]]) -> TaskSpec[..., Any]:
    """``spec`` with each dependency pointing at its upstream spec (as ``@task`` does)."""
    if all(dep.spec is specs.get(dep.name) for dep in spec.deps):
        return spec
    deps = tuple(attrs.evolve(dep, spec=specs.get(dep.name)) for dep in spec.deps)
    return attrs.evolve(spec, deps=deps)


def _renamed(fn: Callable[..., Any], renames: Mapping[str, str]) -> Callable[..., Any]:
    """``fn`` taking each renamed upstream value under the task's name: the graph injects
    dependencies by task name, and ``fn`` receives them under the edge's ``param``."""
    inner: Callable[..., Any] = getattr(fn, "__flowplan_inner__", fn)
    if not renames:
        return inner
    mapping = dict(renames)
    to_param = dict(mapping)

    def rename(kwargs: dict[str, Any]) -> dict[str, Any]:
        return {to_param.get(key, key): value for key, value in kwargs.items()}

    if inspect.iscoroutinefunction(inner):

        async def wrapper_async(**kwargs: Any) -> Any:
            return await inner(**rename(kwargs))

        wrapper: Callable[..., Any] = wrapper_async
    else:

        def wrapper_sync(**kwargs: Any) -> Any:
            return inner(**rename(kwargs))

        wrapper = wrapper_sync
    from_param = {param: task for task, param in mapping.items()}
    signature = inspect.signature(inner)
    parameters = [
        p.replace(name=from_param.get(p.name, p.name), kind=inspect.Parameter.KEYWORD_ONLY)
        if p.name in from_param
        else p
        for p in signature.parameters.values()
    ]
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=sorted(parameters, key=lambda p: p.kind)
    )
    annotations: dict[str, object] = dict(getattr(inner, "__annotations__", {}))
    wrapper.__annotations__ = {from_param.get(k) or k: v for k, v in annotations.items()}
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        if hasattr(inner, attribute):
            setattr(wrapper, attribute, getattr(inner, attribute))
    wrapper.__wrapped__ = inner  # type: ignore[attr-defined]  # its globals resolve annotations
    wrapper.__flowplan_inner__ = inner  # type: ignore[attr-defined]
    wrapper.__flowplan_renames__ = MappingProxyType(mapping)  # type: ignore[attr-defined]
    return wrapper
