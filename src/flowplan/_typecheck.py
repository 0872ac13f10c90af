"""Typed edges: each producer's return annotation checked against the parameter receiving it.

Place in the data flow: spec → **graph** → plan. :meth:`TaskGraph.build` calls
:func:`edge_type_problems` during validation, so a mismatch joins the other problems of the
grouped :class:`~flowplan.errors.GraphValidationError`. Assignability is decided by
``beartype.door.is_subhint`` (the optional ``typecheck`` extra); this module only resolves
annotations, reads them as a static checker does (``Annotated`` metadata dropped, PEP 484's
numeric tower: ``int`` is accepted where ``float`` is expected) and declines to judge where
beartype cannot decide:

- an end without an annotation, an annotation that cannot be resolved, a ``TypeVar``
  (or ``ParamSpec``, ``Self``), a non-runtime ``Protocol``, or a hint beartype rejects: the edge
  is not checked;
- a mismatch only in type arguments involving hints beartype is known to misjudge (a ``tuple``,
  ``str`` or ``bytes`` against a ``collections.abc`` generic, a bare generic class such as
  ``dict``, a ``TypedDict``): not checked rather than reported wrongly.

Resolved annotations are cached per function and verdicts per pair of hints, so a 100,000-task
graph built from a few functions costs a dictionary lookup per edge.
"""

from __future__ import annotations

import collections.abc
import contextlib
import functools
import importlib.util
import inspect
import types
import typing
import weakref
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from flowplan.errors import EdgeTypeError, InvalidOptionError, MissingExtraError
from flowplan.spec import TaskSpec, cached_signature, is_plain_function

__all__ = ["edge_type_problems", "resolve_check_types"]

INSTALL_HINT = "pip install 'flowplan[typecheck]'"
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_NO_HINTS: Mapping[str, object] = types.MappingProxyType({})
_hints_cache: weakref.WeakKeyDictionary[Callable[..., object], Mapping[str, object]] = (
    weakref.WeakKeyDictionary()
)


def resolve_check_types(check_types: object) -> bool:
    """Decide whether a graph build checks edge types.

    Args:
        check_types: ``None`` checks when beartype is installed (silently skips otherwise),
            ``True`` requires it, ``False`` opts out.

    Returns:
        Whether to check.

    Raises:
        MissingExtraError: ``check_types=True`` but beartype is not installed.
        InvalidOptionError: ``check_types`` is not ``None``, ``True`` or ``False``.
    """
    if check_types is False:
        return False
    if check_types is None:
        return beartype_available()
    if check_types is True:
        if not beartype_available():
            raise MissingExtraError(
                "check_types=True needs the optional 'beartype' package to check edge types; "
                f"install it with {INSTALL_HINT}, or pass check_types=None to check only where "
                "it is installed",
                extra="typecheck",
                package="beartype",
            )
        return True
    raise InvalidOptionError(
        f"check_types must be None, True or False, got {check_types!r} "
        f"({type(check_types).__name__}); use None to check edge types when beartype is installed",
        option="check_types",
        value=check_types,
    )


@functools.cache
def beartype_available() -> bool:
    """Whether ``beartype`` can be imported (looked up once per process)."""
    return importlib.util.find_spec("beartype") is not None


def edge_type_problems(specs: Mapping[str, TaskSpec[..., Any]]) -> list[EdgeTypeError]:
    """Check every named-injection edge (and ``when=``/``validate=`` gate) by type.

    Args:
        specs: the graph's tasks by name; dependencies naming no task here are skipped
            (reported elsewhere).

    Returns:
        One :class:`EdgeTypeError` per edge whose producer's return type cannot be assigned
        to the receiving parameter, in declaration order.
    """
    problems: list[EdgeTypeError] = []
    # Per build: the specs keep every function alive until the build ends, so ids are stable.
    # Functions are numbered: closures one `def` makes per task share a number (_function_key).
    numbers: dict[Hashable, int] = {}
    number_of_id: dict[int, int] = {}
    checkable_of: dict[int, Mapping[str, object]] = {}
    memo: dict[tuple[int, bool, int, str, bool], bool | None] = {}

    def key_of(fn: Callable[..., object]) -> int:
        number = number_of_id.get(id(fn))
        if number is None:
            number = numbers.setdefault(_function_key(fn), len(numbers))
            number_of_id[id(fn)] = number
        return number

    unchecked_fns: set[int] = set()  # ids of bodies with no parameter to check (e.g. **deps)
    for consumer in specs.values():
        if consumer.upstream_param is not None or not consumer.deps:
            continue  # one dict receives every value: nothing is injected by name
        if consumer.when is None and consumer.validate is None:
            body = consumer.fn
            if id(body) in unchecked_fns:
                continue  # the common case of generated graphs: one shared **kwargs body
            if is_plain_function(body) and not body.__annotations__:
                continue  # nothing annotated: nothing to check
        receivers: tuple[tuple[str | None, Callable[..., object] | None], ...] = (
            ((None, consumer.fn),)
            if consumer.when is None and consumer.validate is None
            else ((None, consumer.fn), ("when", consumer.when), ("validate", consumer.validate))
        )
        # context: not a value; fan-out: receives one element at a time (not checked)
        unchecked = (consumer.context_param, consumer.fan_out)
        lenient = consumer.trigger != "all_succeeded"
        for gate, fn in receivers:
            if fn is None:
                continue
            fn_key = key_of(fn)
            checkable = checkable_of.get(fn_key)
            if checkable is None:
                checkable = checkable_of[fn_key] = _checkable(fn)
            if not checkable:
                if gate is None:
                    unchecked_fns.add(id(fn))
                continue
            for dep in consumer.deps:
                name = dep.name
                expected = checkable.get(name, _MISSING)
                if expected is _MISSING or name in unchecked:
                    continue
                producer = specs.get(name)
                if producer is None:
                    continue
                may_be_none = lenient or dep.optional
                fan_in = producer.fan_out is not None
                key = (key_of(producer.fn), fan_in, fn_key, name, may_be_none)
                fits = memo.get(key, _MISSING)
                if fits is _MISSING:
                    produced = _produced(producer)
                    fits = memo[key] = (
                        None if produced is _MISSING else _verdict(produced, expected, may_be_none)
                    )
                if fits is False:
                    problems.append(_problem(producer, consumer, name, gate, expected))
    return problems


def _function_key(fn: Callable[..., object]) -> Hashable:
    """What ``fn``'s checks depend on: its code, module and raw annotations when it is a plain
    function, so the closures one ``def`` makes per task share one entry; else ``id(fn)``.
    Valid during one build only (ids of objects the specs keep alive)."""
    if type(fn) is types.FunctionType and "__wrapped__" not in fn.__dict__:
        key = (id(fn.__code__), id(fn.__globals__), tuple(fn.__annotations__.items()))
        try:
            hash(key)
        except TypeError:  # an unhashable annotation (e.g. Annotated metadata)
            return id(fn)
        return key
    return id(fn)


def _checkable(fn: Callable[..., object]) -> Mapping[str, object]:
    """The resolved annotations of ``fn``'s parameters that receive values by name."""
    if is_plain_function(fn) and not fn.__annotations__:
        return _NO_HINTS  # nothing annotated: nothing to resolve
    hints = _hints(fn)
    if not hints:
        return _NO_HINTS
    try:
        params = cached_signature(fn).parameters  # the spec read it already
    except (TypeError, ValueError):
        return _NO_HINTS
    return {
        name: hints[name]
        for name, p in params.items()
        if p.kind in _KEYWORD_KINDS and name in hints
    }


def _produced(producer: TaskSpec[..., Any]) -> object:
    """What ``producer`` delivers: its return annotation (a list of them when it fans out)."""
    produced = _hints(producer.fn).get("return", _MISSING)
    if producer.fan_out is not None and produced is not _MISSING:
        return types.GenericAlias(list, (produced,))  # fan-in: the elements' results, a list
    return produced


_MISSING: object = object()


def _problem(
    producer: TaskSpec[..., Any],
    consumer: TaskSpec[..., Any],
    parameter: str,
    gate: str | None,
    expected: object,
) -> EdgeTypeError:
    produced = _produced(producer)
    shown = _show(produced)
    dep = next(d for d in consumer.deps if d.name == producer.name)
    if dep.optional:
        shown += " (or None: an optional dependency may deliver None)"
    elif consumer.trigger != "all_succeeded":
        shown += f" (or None: trigger={consumer.trigger!r} may deliver None)"
    receiver = f"{consumer.name}'s parameter" if gate is None else f"{consumer.name}'s {gate}= gate"
    return EdgeTypeError(
        f'edge "{producer.name} → {consumer.name}": {producer.name} returns {shown} but '
        f"{receiver} `{parameter}` expects {_show(expected)}; change one of the annotations, "
        "or pass check_types=False to TaskGraph.build to skip this check",
        producer=producer.name,
        consumer=consumer.name,
        parameter=parameter,
        produced=produced,
        expected=expected,
        gate=gate,
    )


def _show(hint: object) -> str:
    if hint is type(None):
        return "None"
    text = inspect.formatannotation(hint)
    return text.replace("typing.", "").replace("collections.abc.", "")


# -- annotations ------------------------------------------------------------------------------


def _hints(fn: Callable[..., object]) -> Mapping[str, object]:
    """``fn``'s resolved annotations (unresolvable ones left out), cached per function."""
    try:
        return _hints_cache[fn]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable or not hashable
        pass
    hints = _resolve(fn)
    with contextlib.suppress(TypeError):
        _hints_cache[fn] = hints
    return hints


def _resolve(fn: Callable[..., object]) -> Mapping[str, object]:
    target: object = fn
    while isinstance(target, functools.partial):  # a template's bound task: same annotations
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        return _NO_HINTS  # callable objects, builtins: their annotations are not the call's
    try:
        return types.MappingProxyType(typing.get_type_hints(target, include_extras=True))
    except Exception:  # one bad annotation must not hide the others
        pass
    raw: Mapping[str, object] = getattr(target, "__annotations__", None) or {}
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    resolved: dict[str, object] = {}
    for name, annotation in raw.items():
        holder = types.SimpleNamespace(__annotations__={name: annotation}, __globals__=namespace)
        try:
            resolved[name] = typing.get_type_hints(holder, include_extras=True)[name]
        except Exception:  # unresolvable (e.g. a local class): not checked
            continue
    return types.MappingProxyType(resolved)


# -- verdicts ---------------------------------------------------------------------------------


def _verdict(produced: object, expected: object, may_be_none: bool) -> bool | None:
    """``True`` fits, ``False`` does not, ``None`` cannot be decided (not checked)."""
    try:
        return _cached_verdict(produced, expected, may_be_none)
    except TypeError:  # unhashable hints (e.g. Annotated with a list): decide uncached
        return _decide(produced, expected, may_be_none)


@functools.lru_cache(maxsize=4096)
def _cached_verdict(produced: object, expected: object, may_be_none: bool) -> bool | None:
    return _decide(produced, expected, may_be_none)


def _decide(produced: object, expected: object, may_be_none: bool) -> bool | None:
    from beartype.door import is_subhint

    try:
        if produced is typing.NoReturn or produced is typing.Never:
            return None  # never delivers a value
        if _undecidable(produced, expected):
            return None
        if may_be_none:
            produced = typing.Optional[produced]  # noqa: UP045 - the hint is a runtime value
        produced, expected = _static(produced, tower=False), _static(expected, tower=True)
        if is_subhint(produced, expected):
            return True
        classes_fit = _classes_fit(produced, expected)
        if classes_fit is None:
            return None
        if not classes_fit:
            return False  # even the runtime classes differ: a certain mismatch
        return None if _misjudged(produced, expected) else False
    except Exception:  # beartype, issubclass or a malformed hint cannot decide: not checked
        return None


def _walk(hint: object) -> collections.abc.Iterator[object]:
    """``hint`` and every hint nested in it (not ``Literal`` values or ``Annotated`` metadata)."""
    stack = [hint]
    while stack:
        current = stack.pop()
        yield current
        origin = typing.get_origin(current)
        if origin is typing.Literal:
            continue
        args = typing.get_args(current)
        for arg in args[:1] if origin is typing.Annotated else args:
            stack.extend(arg if isinstance(arg, list | tuple) else (arg,))  # Callable params


def _undecidable(*hints: object) -> bool:
    free = (typing.TypeVar, typing.ParamSpec, typing.TypeVarTuple, typing.ForwardRef, str)
    for hint in hints:
        for part in _walk(hint):
            if isinstance(part, free) or part is typing.Self:
                return True
    return False


def _static(hint: object, *, tower: bool) -> object:
    """``hint`` as a static checker reads it: ``Annotated`` metadata dropped and, with
    ``tower``, PEP 484's numeric tower (``int`` accepted for ``float``, ``int``/``float`` for
    ``complex``) spelled out as unions."""
    if tower and hint is float:
        return float | int
    if tower and hint is complex:
        return complex | float | int
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _static(args[0], tower=tower)
    if not args or origin in {typing.Literal, collections.abc.Callable}:
        return hint
    new = tuple(_static(arg, tower=tower) for arg in args)
    if all(a is b for a, b in zip(new, args, strict=True)):
        return hint
    if origin in {typing.Union, types.UnionType}:
        return typing.Union[new]  # noqa: UP007 - built at runtime
    copy_with = getattr(hint, "copy_with", None)
    if copy_with is not None:  # typing aliases: typing.List[float], user Generic classes
        return copy_with(new)
    return types.GenericAlias(origin, new) if isinstance(origin, type) else hint


def _classes(hint: object) -> tuple[type, ...] | None:
    """The runtime classes a value of ``hint`` can have, or ``None`` when unknown."""
    if hint is typing.Any or hint is object:
        return (object,)
    if hint is None or hint is type(None):
        return (type(None),)
    supertype = getattr(hint, "__supertype__", None)
    if supertype is not None:  # NewType
        return _classes(supertype)
    if typing.is_typeddict(hint):
        return (dict,)
    if isinstance(hint, type):
        return (hint,)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _classes(args[0])
    if origin is typing.Literal:
        return tuple(type(arg) for arg in args)
    if origin in {typing.Union, types.UnionType}:
        found: list[type] = []
        for arg in args:
            part = _classes(arg)
            if part is None:
                return None
            found.extend(part)
        return tuple(found)
    return (origin,) if isinstance(origin, type) else None


def _classes_fit(produced: object, expected: object) -> bool | None:
    given, wanted = _classes(produced), _classes(expected)
    if given is None or wanted is None:
        return None
    return all(any(issubclass(g, w) for w in wanted) for g in given)


_SEQUENCE_LIKE = (tuple, str, bytes, bytearray)


def _misjudged(produced: object, expected: object) -> bool:
    """Whether beartype's "no" may be wrong here (so the edge is left unchecked)."""
    abc_generics = tuple(
        origin
        for origin in map(typing.get_origin, _walk(expected))
        if isinstance(origin, type) and origin.__module__ == "collections.abc"
    )
    for part in _walk(produced):
        cls = typing.get_origin(part) or part
        if cls in _SEQUENCE_LIKE and abc_generics and issubclass(cls, abc_generics):
            return True  # e.g. tuple[int, ...] against Sequence[int], str against Iterable[str]
        if _bare_generic(part) or typing.is_typeddict(part):
            return True
    return any(
        _bare_generic(part) or typing.is_typeddict(part) or getattr(part, "_is_protocol", False)
        for part in _walk(expected)
    )


def _bare_generic(hint: object) -> bool:
    return (
        isinstance(hint, type)
        and not typing.get_args(hint)
        and (hasattr(hint, "__class_getitem__") or bool(getattr(hint, "__parameters__", ())))
    )
