"""Step keys: stable fingerprints of task behaviour for journal/cache reuse.

Place in the data flow: spec → graph → **keys** (step keys for journal/cache
reuse) → plan.

A step key is a hex sha256 that changes when a task's behaviour changes (bytecode,
constants, defaults, closure cells, called helpers, module-level constants read)
or a dependency's key changes, but not for cosmetic edits (renaming or moving the
function, editing its docstring). Encodings are structural and type-tagged, never
``hash()``/``id()``/address-bearing reprs, so keys agree across processes and seeds.
"""

from __future__ import annotations

import dis
import enum
import functools
import hashlib
import inspect
import re
import types
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import attrs

__all__ = [
    "CacheKey",
    "code_fingerprint",
    "code_parts",
    "step_key",
    "value_fingerprint",
]

_FORMAT = b"flowplan.keys/1"
_SCALARS = (int, str, float, bytes, bool, type(None))
_BUILTIN_CALLABLES = (
    types.BuiltinFunctionType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)
_CALLABLES = (types.FunctionType, types.MethodType, functools.partial, *_BUILTIN_CALLABLES)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{5,}")


class _Ctx:
    """Per-call state: active function stack, reachable sets, fingerprint cache, guard."""

    def __init__(self) -> None:
        self.stack: list[types.FunctionType] = []
        self.reach: list[set[types.FunctionType]] = [set()]
        self.cache: dict[types.FunctionType, tuple[types.CodeType, set[types.FunctionType], str]]
        self.cache = {}
        self.containers: list[object] = []


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(8, "big") + payload


def _str(value: str) -> bytes:
    return _frame(b"s", value.encode("utf-8", "surrogatepass"))


def _seq(tag: bytes, parts: list[bytes]) -> bytes:
    return _frame(tag, b"".join(parts))


def _digest(payload: bytes) -> str:
    return hashlib.sha256(_FORMAT + payload).hexdigest()


def _names(tag: bytes, names: tuple[str, ...]) -> bytes:
    return _seq(tag, [_str(name) for name in names])


def _ref(obj: object, ctx: _Ctx) -> bytes:
    return _frame(b"h", _fingerprint(obj, ctx).encode())


def _kwargs(mapping: Mapping[str, object] | None, ctx: _Ctx) -> bytes:
    return _seq(b"K", [_str(k) + _encode(v, ctx) for k, v in sorted((mapping or {}).items())])


def _type_name(tp: type) -> bytes:
    return _str(f"{tp.__module__}.{tp.__qualname__}")


def _is_simple(value: object) -> bool:
    if isinstance(value, (tuple, frozenset)) and type(value) in (tuple, frozenset):
        return all(_is_simple(item) for item in value)
    return type(value) in _SCALARS


def _encode(value: object, ctx: _Ctx) -> bytes:
    """Encode a constant, default, closure cell or partial argument structurally."""
    tp = type(value)
    if value is None or value is Ellipsis:
        return _frame(b"N" if value is None else b"E", b"")
    if tp is bool:
        return _frame(b"?", b"1" if value else b"0")
    if type(value) is int:
        return _frame(b"i", value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True))
    if type(value) is float:
        return _frame(b"f", value.hex().encode())
    if type(value) is complex:
        return _frame(b"j", f"{value.real.hex()},{value.imag.hex()}".encode())
    if type(value) is str:
        return _str(value)
    if type(value) is bytes:
        return _frame(b"b", value)
    if isinstance(value, types.CodeType):
        return _encode_code(value, ctx)
    if isinstance(value, enum.Enum):
        return _seq(b"e", [_type_name(tp), _str(value.name)])
    if isinstance(value, type):
        return _seq(b"c", [_str(value.__module__), _str(value.__qualname__)])
    if isinstance(value, types.ModuleType):
        return _seq(b"m", [_str(value.__name__)])
    if isinstance(value, _CALLABLES):
        return _ref(value, ctx)
    if isinstance(value, (tuple, list, set, frozenset, dict)):
        if any(seen is value for seen in ctx.containers):
            return _frame(b"R", b"container-cycle")
        ctx.containers.append(value)
        try:
            if isinstance(value, dict):
                items = [_encode(k, ctx) + _encode(v, ctx) for k, v in value.items()]
            else:
                items = [_encode(item, ctx) for item in value]
            if isinstance(value, (set, frozenset)):
                items.sort()  # iteration order depends on PYTHONHASHSEED
            return _seq(b"(", [_type_name(tp), *items])
        finally:
            ctx.containers.pop()
    try:  # un-encodable: type name plus repr, unless the repr could carry an address
        text = repr(value)
    except Exception:
        text = "<opaque>"
    return _seq(b"o", [_type_name(tp), _str("<opaque>" if _ADDRESS.search(text) else text)])


def _has_docstring(code: types.CodeType) -> bool:
    """Tell whether ``co_consts[0]`` is a str that no instruction loads (a docstring)."""
    if not code.co_consts or type(code.co_consts[0]) is not str:
        return False
    return not any(i.opcode in dis.hasconst and i.arg == 0 for i in dis.get_instructions(code))


def _encode_code(code: types.CodeType, ctx: _Ctx) -> bytes:
    """Encode a code object's behaviour, excluding names, filenames and line tables."""
    consts = [_encode(c, ctx) for c in code.co_consts]
    if _has_docstring(code):  # docstring text is cosmetic
        consts[0] = _frame(b"D", b"")
    counts = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
    parts = [_frame(b"b", code.co_code), _frame(b"x", getattr(code, "co_exceptiontable", b""))]
    parts += [_seq(b"k", consts), _names(b"n", code.co_names), _names(b"v", code.co_varnames)]
    parts += [_names(b"F", code.co_freevars), _names(b"L", code.co_cellvars)]
    return _seq(b"C", [*parts, _frame(b"a", ",".join(map(str, counts)).encode())])


def _global_names(code: types.CodeType, into: set[str]) -> set[str]:
    into.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _global_names(const, into)
    return into


def _encode_global(name: str, fn: types.FunctionType, ctx: _Ctx) -> bytes | None:
    """Encode what ``name`` resolves to in ``fn.__globals__`` (None if unresolved/builtin)."""
    if name not in fn.__globals__:
        return None  # builtins (and not-yet-defined names) count by name only
    return _seq(b"g", [_str(name), _encode_read(fn.__globals__[name], ctx)])


def _encode_read(value: object, ctx: _Ctx) -> bytes:
    """Encode a value a function reads from outside: a global it names or a closure cell.

    Simple immutable values (scalars, tuples and frozensets of them, enum members, classes,
    modules) count by value, callables by their code; anything else — a counter dict, a
    list, a client or service object — counts by its type only, so state a task mutates or
    holds does not change its key from one run to the next.
    """
    if _is_simple(value) or isinstance(value, (enum.Enum, type, types.ModuleType)):
        return _encode(value, ctx)
    if isinstance(value, _CALLABLES):
        return _ref(value, ctx)
    return _seq(b"y", [_type_name(type(value))])


def _encode_cells(fn: types.FunctionType, ctx: _Ctx) -> bytes:
    """Encode ``fn``'s closure cells (an empty cell has a marker of its own)."""
    cells: list[bytes] = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(_encode_read(cell.cell_contents, ctx))
        except ValueError:  # empty cell
            cells.append(_frame(b"Z", b""))
    return _seq(b"Z", cells)


def _fingerprint_function(fn: types.FunctionType, ctx: _Ctx) -> str:
    """Fingerprint a plain function; recursion cycles become relative back-references.

    Results are cached per call (checked against ``__code__``) only when context-free.
    """
    depth = len(ctx.stack)
    for index, active in enumerate(ctx.stack):
        if active is fn:  # recursion cycle: refer back by relative stack distance
            ctx.reach[-1].add(fn)
            return _digest(_frame(b"R", str(depth - index).encode()))
    cached = ctx.cache.get(fn)
    if cached is not None and cached[0] is fn.__code__ and cached[1].isdisjoint(ctx.stack):
        ctx.reach[-1] |= cached[1]
        return cached[2]
    ctx.stack.append(fn)
    ctx.reach.append({fn})
    try:
        code = fn.__code__
        cells = _encode_cells(fn, ctx)
        refs = [_encode_global(n, fn, ctx) for n in sorted(_global_names(code, set()))]
        parts = [_encode_code(code, ctx), _encode(fn.__defaults__ or (), ctx)]
        parts += [_kwargs(fn.__kwdefaults__, ctx), cells]
        digest = _digest(_seq(b"P", [*parts, _seq(b"G", [r for r in refs if r is not None])]))
    finally:
        ctx.stack.pop()
        reach = ctx.reach.pop()
    if reach.isdisjoint(ctx.stack):  # context-free: no back-reference above this frame
        ctx.cache[fn] = (fn.__code__, reach, digest)
    ctx.reach[-1] |= reach
    return digest


def _fingerprint(obj: object, ctx: _Ctx) -> str:
    """Dispatch on the kind of callable and return its fingerprint."""
    if isinstance(obj, functools.partial):
        parts = [_ref(obj.func, ctx), _encode(obj.args, ctx), _kwargs(obj.keywords, ctx)]
        return _digest(_seq(b"p", parts))
    if callable(obj) and hasattr(obj, "__wrapped__"):
        try:
            return _fingerprint(inspect.unwrap(obj), ctx)
        except ValueError:  # a __wrapped__ cycle: fingerprint the outermost object
            pass
    if isinstance(obj, types.MethodType):
        return _fingerprint(obj.__func__, ctx)
    if isinstance(obj, types.FunctionType):
        return _fingerprint_function(obj, ctx)
    if isinstance(obj, type):
        init = getattr(obj, "__init__", None)
        extra = [_ref(init, ctx)] if isinstance(init, types.FunctionType) else []
        return _digest(_seq(b"c", [_encode(obj, ctx), *extra]))
    call = next((vars(k)["__call__"] for k in type(obj).__mro__ if "__call__" in vars(k)), None)
    if isinstance(call, types.FunctionType):
        return _fingerprint(call, ctx)
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module = module if isinstance(module, str) else ""
    label = qualname if isinstance(qualname, str) else type(obj).__qualname__
    return _digest(_seq(b"B", [_str(module), _str(label)]))


def code_fingerprint(fn: Callable[..., object]) -> str:
    """Fingerprint a callable's behaviour (code, constants, defaults, closure, helpers).

    Args:
        fn: A function, bound method, ``functools.partial``, decorated function
            (``__wrapped__``), callable object, class or builtin.

    Returns:
        A hex sha256 digest, identical across processes for identical behaviour
        and unchanged by renaming or moving the function.
    """
    return _fingerprint(fn, _Ctx())


def step_key(
    fn: Callable[..., object], *, dep_keys: Mapping[str, str], version: str | None = None
) -> str:
    """Compute the step key used to decide whether a journalled result can be reused.

    Args:
        fn: The task's callable; ignored when ``version`` is given.
        dep_keys: Dependency (parameter) name → that dependency's step key.
        version: An explicit task version; when given it replaces the code fingerprint.

    Returns:
        A hex sha256 digest over the version (or code fingerprint) and sorted dep keys.
    """
    return _step_key(fn, dep_keys, version, _Ctx())


def _step_key(
    fn: Callable[..., object], dep_keys: Mapping[str, str], version: str | None, ctx: _Ctx
) -> str:
    deps = _seq(b"d", [_str(name) + _str(key) for name, key in sorted(dep_keys.items())])
    if version is not None:
        return _digest(_seq(b"S", [_str("version"), _str(version), deps]))
    return _digest(_seq(b"S", [_str("code"), _str(_fingerprint(fn, ctx)), deps]))


def _graph_step_keys(
    order: Iterable[str],
    fns: Mapping[str, Callable[..., object]],
    deps: Mapping[str, Iterable[str]],
    versions: Mapping[str, str | None],
) -> dict[str, str]:
    """Every task's :func:`step_key`, in topological ``order``, sharing fingerprints: a
    function (or helper) used by many tasks is fingerprinted once for the whole graph."""
    ctx = _Ctx()
    keys: dict[str, str] = {}
    for name in order:
        keys[name] = _step_key(fns[name], {d: keys[d] for d in deps[name]}, versions[name], ctx)
    return keys


# -- keys with named parts (result cache) ------------------------------------------------------
_HELPER_TYPES = (types.FunctionType, types.MethodType, functools.partial)


def _plain_function(fn: object) -> types.FunctionType | None:
    """The plain function behind ``fn`` (unwrapping decorators and methods), if there is one."""
    if callable(fn) and hasattr(fn, "__wrapped__"):
        try:
            fn = inspect.unwrap(fn)
        except ValueError:  # a __wrapped__ cycle
            return None
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    return fn if isinstance(fn, types.FunctionType) else None


def code_parts(fn: Callable[..., object], *, version: str | None = None) -> dict[str, str]:
    """Split a task body's fingerprint into named parts, so a change can be explained.

    Parts: ``"code"`` (bytecode, constants, closure, module constants read — not defaults,
    which are inputs, and not helper functions) and ``"helper:NAME"`` for each module-level
    function (or partial, or method) the body references, fingerprinted with everything it
    calls in turn. An explicit ``version`` replaces them all with one ``"version"`` part.

    Args:
        fn: The task's callable.
        version: The task's explicit ``version=``, if any.

    Returns:
        Part name → hex digest.
    """
    if version is not None:
        return {"version": _digest(_str(version))}
    plain = _plain_function(fn)
    if plain is None:  # partials, classes, callable objects: one opaque part
        return {"code": code_fingerprint(fn)}
    ctx = _Ctx()
    ctx.stack.append(plain)
    helpers: dict[str, str] = {}
    refs: list[bytes] = []
    for name in sorted(_global_names(plain.__code__, set())):
        value = plain.__globals__.get(name, _MISSING)
        if value is plain:
            refs.append(_seq(b"g", [_str(name), _frame(b"R", b"self")]))
        elif isinstance(value, _HELPER_TYPES) or (
            callable(value) and hasattr(value, "__wrapped__")
        ):
            helpers[f"helper:{name}"] = code_fingerprint(value)
            refs.append(_seq(b"g", [_str(name), _frame(b"H", b"")]))
        elif value is not _MISSING:
            encoded = _encode_global(name, plain, ctx)
            if encoded is not None:
                refs.append(encoded)
    cells = _encode_cells(plain, ctx)
    body = [_encode_code(plain.__code__, ctx), cells, _seq(b"G", refs)]
    return {"code": _digest(_seq(b"Q", body)), **helpers}


_MISSING = object()


def value_fingerprint(value: object) -> str:
    """Fingerprint a value by its canonical JSON encoding (the store's JSON serializer).

    Args:
        value: Any value the JSON serializer supports (plain data, tuples, sets, bytes,
            datetimes, ...); sets are ordered canonically, dicts keep insertion order. A value
            holding dataclasses, attrs classes, enums or named tuples is fingerprinted by its
            type name and its cattrs-unstructured data.

    Returns:
        A hex sha256 digest, identical across processes for equal encodings.

    Raises:
        SerializationError: the value cannot be encoded, so it has no stable fingerprint.
    """
    from flowplan.errors import SerializationError
    from flowplan.store._serializers import JsonSerializer

    try:
        return _digest(_frame(b"V", JsonSerializer().dumps(value)))
    except SerializationError as exc:
        from flowplan.store._typed import typed_converter

        try:
            data = typed_converter().unstructure(value)
            encoded = JsonSerializer().dumps(
                (f"{type(value).__module__}.{type(value).__qualname__}", data)
            )
        except Exception:
            raise exc from None
        return _digest(_frame(b"T", encoded))


def _frozen_parts(parts: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(parts.items())))


@attrs.frozen
class CacheKey:
    """A result-cache key: a digest over named parts, kept so changes can be explained.

    Attributes:
        parts: part name → digest. Names are ``"code"``, ``"helper:NAME"``, ``"version"``,
            ``"gate:NAME"``, ``"input:PARAM"`` and ``"upstream:TASK"``.
        digest: hex sha256 over the sorted parts.
    """

    parts: Mapping[str, str] = attrs.field(converter=_frozen_parts, hash=False)
    digest: str = attrs.field(init=False)

    @digest.default
    def _digest_default(self) -> str:
        return _digest(_seq(b"K", [_str(k) + _str(v) for k, v in self.parts.items()]))
