"""Per-task graph checks: signatures, gates and cycles, each problem collected, never raised.

Place in the data flow: spec → **graph** (``TaskGraph.build`` in ``graph.py`` calls these while
it builds the graph, then raises everything found at once in a
:class:`~flowplan.errors.GraphValidationError`) → plan. Here: whether a task's function can
receive what the graph passes (dependencies no parameter receives, required parameters nothing
supplies, positional-only parameters, ``upstream``/``context`` parameters), whether its gates
(``when``, ``validate``, ``retry_until``) accept their arguments, and the deterministic
topological order with the cycle's path when there is none. Cross-task name checks (duplicates,
unknown or detached dependencies) stay in ``graph.py``, where the names are collected.
"""

from __future__ import annotations

import heapq
import inspect
import types
from collections.abc import Iterable, Mapping
from typing import Any, cast

import attrs

from flowplan._suggest import did_you_mean
from flowplan.errors import CycleError, DefinitionError, SignatureMismatchError
from flowplan.spec import TaskSpec, cached_signature, is_plain_function

__all__ = [
    "SignatureFacts",
    "check_function",
    "check_gates",
    "describe",
    "facts_of",
    "find_cycle",
    "injected_if_valid",
    "toposort",
]

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def describe(spec: TaskSpec[..., Any]) -> str:
    """``module.qualname`` of ``spec``'s function, for messages."""
    fn = spec.fn
    module = getattr(fn, "__module__", "?")
    qualname = getattr(fn, "__qualname__", repr(fn))
    return f"{module}.{qualname}"


@attrs.frozen
class SignatureFacts:
    """What the graph checks need from one signature, read once per signature per build.

    Attributes:
        keyword: the names of the parameters a keyword argument can reach.
        var_keyword: whether the function takes ``**kwargs``.
        required_keyword: the keyword parameters without a default.
        required_positional_only: whether a positional-only parameter lacks a default (always a
            problem: dependencies arrive as keywords).
    """

    keyword: frozenset[str]
    var_keyword: bool
    required_keyword: frozenset[str]
    required_positional_only: bool

    @classmethod
    def read(cls, signature: inspect.Signature) -> SignatureFacts:
        """Collect the facts of ``signature``."""
        params = signature.parameters.values()
        empty = inspect.Parameter.empty
        return cls(
            keyword=frozenset(p.name for p in params if p.kind in _KEYWORD_KINDS),
            var_keyword=any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params),
            required_keyword=frozenset(
                p.name for p in params if p.kind in _KEYWORD_KINDS and p.default is empty
            ),
            required_positional_only=any(
                p.kind is inspect.Parameter.POSITIONAL_ONLY and p.default is empty for p in params
            ),
        )


_NO_NAMES: frozenset[str] = frozenset()
_NO_PARAMETERS = SignatureFacts(_NO_NAMES, False, _NO_NAMES, False)
_ONLY_VAR_KEYWORD = SignatureFacts(_NO_NAMES, True, _NO_NAMES, False)


def facts_of(spec: TaskSpec[..., Any]) -> SignatureFacts:
    """The facts of ``spec``'s signature: read from its function's code object and defaults when
    it is a plain function (see :func:`~flowplan.spec.is_plain_function`), without building an
    :class:`inspect.Signature`; else from ``spec.signature``."""
    fn = spec.fn
    if not is_plain_function(fn):
        return SignatureFacts.read(spec.signature)
    func = cast("types.FunctionType", fn)
    code = func.__code__
    argcount = code.co_argcount
    kwonlycount = code.co_kwonlyargcount
    var_keyword = bool(code.co_flags & inspect.CO_VARKEYWORDS)
    if not argcount and not kwonlycount:  # `def f()`, `def f(*args, **deps)`
        return _ONLY_VAR_KEYWORD if var_keyword else _NO_PARAMETERS
    posonly = code.co_posonlyargcount
    names = code.co_varnames
    positional = names[posonly:argcount]
    kwonly = names[argcount : argcount + kwonlycount]
    defaults = func.__defaults__
    first_default = argcount - (len(defaults) if defaults else 0)  # parameters from here have one
    kwdefaults = func.__kwdefaults__
    keyword = frozenset(positional + kwonly)
    if first_default >= argcount and not kwdefaults:  # no defaults at all
        required = keyword
    else:
        required = frozenset(
            [n for i, n in enumerate(positional, posonly) if i < first_default]
            + [n for n in kwonly if not kwdefaults or n not in kwdefaults]
        )
    return SignatureFacts(
        keyword=keyword,
        var_keyword=var_keyword,
        required_keyword=required,
        required_positional_only=posonly > 0 and first_default > 0,
    )


def injected_if_valid(
    spec: TaskSpec[..., Any], facts: SignatureFacts, dep_names: tuple[str, ...]
) -> tuple[str, ...] | None:
    """The injected deps of ``spec`` (``dep_names``) when its function can receive them, else
    ``None``.

    The common case, decided from the signature's facts without building any message;
    ``None`` sends the spec to :func:`check_function`, which reports each problem.
    """
    if facts.required_positional_only:
        return None
    keyword = facts.keyword
    var_keyword = facts.var_keyword
    supplied: set[str] = set()
    for special in (spec.upstream_param, spec.context_param):
        if special is not None:
            if not var_keyword and special not in keyword:
                return None
            supplied.add(special)
    if spec.upstream_param is not None:
        injected: tuple[str, ...] = ()
    else:
        injected = dep_names
        if not var_keyword and not keyword.issuperset(injected):
            return None
        supplied.update(injected)
    if not facts.required_keyword.issubset(supplied):
        return None
    return injected


def check_function(spec: TaskSpec[..., Any], problems: list[DefinitionError]) -> tuple[str, ...]:
    """Check that ``spec.fn`` can receive what the graph passes; return the injected deps."""
    params = spec.signature.parameters
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    keyword_params = {n for n, p in params.items() if p.kind in _KEYWORD_KINDS}
    supplied: set[str] = set()
    injected: list[str] = []
    for special, what in ((spec.upstream_param, "upstream"), (spec.context_param, "context")):
        if special is None:
            continue
        if special not in keyword_params and not has_var_kw:
            problems.append(
                SignatureMismatchError(
                    f"task {spec.name!r}: its {what} parameter {special!r} is not a keyword "
                    f"parameter of {describe(spec)}; rename the parameter or drop the option",
                    task=spec.name,
                )
            )
        supplied.add(special)
    if spec.upstream_param is None:
        dep_names: set[str] | None = None
        for dep in spec.deps:
            if dep.name in keyword_params or has_var_kw:
                injected.append(dep.name)
                supplied.add(dep.name)
            elif dep.name in params:
                problems.append(
                    SignatureMismatchError(
                        f"task {spec.name!r}: dependency {dep.name!r} is received by a "
                        "positional-only parameter; make it a normal parameter (remove the '/')",
                        task=spec.name,
                    )
                )
            elif not dep.ordering_only:
                if dep_names is None:  # once per task: O(deps), not O(deps²), at huge fan-in
                    dep_names = {d.name for d in spec.deps}
                unused = sorted(keyword_params - dep_names)
                hint, _ = did_you_mean(dep.name, unused) if unused else ("", None)
                hint = f" ({hint})" if unused and "did you mean" in hint else ""
                problems.append(
                    SignatureMismatchError(
                        f"task {spec.name!r} depends on {dep.name!r}, but {describe(spec)} has "
                        f"no parameter {dep.name!r} to receive its value{hint}; add a parameter "
                        f"named {dep.name!r} or `**kwargs`",
                        task=spec.name,
                    )
                )
    for pname, param in params.items():
        required = param.default is inspect.Parameter.empty
        if param.kind in _KEYWORD_KINDS and required and pname not in supplied:
            hint, _ = did_you_mean(pname, spec.dep_names) if spec.deps else ("", None)
            hint = f" ({hint})" if spec.deps and "did you mean" in hint else ""
            problems.append(
                SignatureMismatchError(
                    f"task {spec.name!r}: required parameter {pname!r} of {describe(spec)} is "
                    f"supplied by nothing{hint}; add a task named {pname!r} to its dependencies "
                    "or give the parameter a default",
                    task=spec.name,
                )
            )
        elif param.kind is inspect.Parameter.POSITIONAL_ONLY and required:
            problems.append(
                SignatureMismatchError(
                    f"task {spec.name!r}: positional-only parameter {pname!r} cannot be "
                    "supplied (dependencies arrive as keywords); remove the '/' or add a default",
                    task=spec.name,
                )
            )
    return tuple(injected)


def check_gates(spec: TaskSpec[..., Any], problems: list[DefinitionError]) -> None:
    """Check that ``spec``'s gates accept their arguments; append each problem found."""
    if spec.when is None and spec.validate is None and spec.retry_until is None:
        return
    dep_kwargs = dict.fromkeys(spec.dep_names)
    gates: tuple[tuple[str, Any, tuple[Any, ...], dict[str, None]], ...] = (
        ("when", spec.when, (), dep_kwargs),
        ("validate", spec.validate, (), dep_kwargs),
        ("retry_until", spec.retry_until, (None,), {}),
    )
    for option, gate, args, kwargs in gates:
        if gate is None:
            continue
        try:
            sig = cached_signature(gate)  # shared with the edge type checks
        except (TypeError, ValueError):  # builtins without a signature: checked when called
            continue
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            expected = (
                "one positional argument (the task's value)"
                if option == "retry_until"
                else "keyword arguments " + (", ".join(spec.dep_names) or "(none)")
            )
            problems.append(
                SignatureMismatchError(
                    f"task {spec.name!r}: its {option}= callable cannot receive {expected}: "
                    f"{exc}; found signature {option}{sig}. Fix: accept the values by name "
                    "or with `**kwargs`",
                    task=spec.name,
                )
            )


def find_cycle(remaining: Iterable[str], preds: Mapping[str, tuple[str, ...]]) -> list[str]:
    """One cycle among ``remaining`` as a path that ends where it starts (deterministic).

    An iterative depth-first walk along the dependency edges (upstream → downstream), started
    from the names in the order given and visiting dependents in declaration order, so the same
    graph always reports the same cycle and a long chain needs no recursion.
    """
    ordered = list(remaining)  # declaration order, not set order: the same cycle every run
    nodes = set(ordered)
    succs: dict[str, list[str]] = {name: [] for name in ordered}
    for name in ordered:
        for dep in preds[name]:
            if dep in nodes:
                succs[dep].append(name)
    done: set[str] = set()
    for root in ordered:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root: 0}
        cursors = [0]
        while path:
            here = path[-1]
            children = succs[here]
            if cursors[-1] == len(children):
                done.add(here)
                del on_path[here]
                path.pop()
                cursors.pop()
                continue
            child = children[cursors[-1]]
            cursors[-1] += 1
            if child in on_path:
                return [*path[on_path[child] :], child]
            if child not in done:
                on_path[child] = len(path)
                path.append(child)
                cursors.append(0)
    raise AssertionError(f"flowplan bug: no cycle among {ordered!r}")  # pragma: no cover


def toposort(
    by_name: Mapping[str, TaskSpec[..., Any]],
    preds: Mapping[str, tuple[str, ...]],
    succs: Mapping[str, list[str]],
    problems: list[DefinitionError],
) -> tuple[str, ...]:
    """The names in topological order, ties broken by declaration order (``seq``).

    Args:
        by_name: name → spec, every task of the graph.
        preds: name → its known dependencies.
        succs: name → its dependents.
        problems: where a cycle is reported (a :class:`~flowplan.errors.CycleError` with the
            cycle's path).

    Returns:
        The ordered names; with a cycle, only those outside it and not below it.
    """
    indegree = {name: len(preds.get(name, ())) for name in by_name}
    heap = [(by_name[n].seq, n) for n, d in indegree.items() if d == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, name = heapq.heappop(heap)
        order.append(name)
        for nxt in succs[name]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(heap, (by_name[nxt].seq, nxt))
    if len(order) < len(by_name):
        done = set(order)
        remaining = [n for n in by_name if n not in done and n in preds]
        cycle = find_cycle(remaining, preds)
        path = " -> ".join(cycle)
        problems.append(
            CycleError(
                f"the dependencies form a cycle: {path}; remove one of these dependencies",
                cycle=cycle,
            )
        )
    return tuple(order)
