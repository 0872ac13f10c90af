"""Serializers that turn task results into bytes for durable stores.

Layer: store (serialization of values for durable stores). The JSON-lines journal and the
SQLite store call these; snapshots never serialize anything themselves.

``JsonSerializer`` is the safe default. It round-trips the supported types exactly (type and
value) with a tagged JSON encoding, and it never runs code while loading. ``PickleSerializer``
is opt-in and must only read files you wrote yourself.

Nesting depth: encoding and decoding use explicit stacks, never recursion. JSON text is
written and parsed by the C-accelerated ``json`` module; when that hits CPython's recursion
limit (about 1,000 levels) an iterative writer/parser producing identical text takes over, so
depth is limited only by memory (tested to 20,000 levels, all container kinds).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
import json
import math
import pathlib
import pickle
import re
import reprlib
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs

from flowplan._stored import Unstructured
from flowplan.errors import SerializationError

__all__ = [
    "DecodeError",
    "JsonSerializer",
    "JsonValue",
    "PickleSerializer",
    "ResultSerializer",
    "SerializationError",
    "Unstructured",
]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
_Where: TypeAlias = "tuple[_Where, str, object] | None"  # (parent, step kind, step), lazy path

_TAG = "__flowplan__"
_MAX_PLAIN_INT_BITS = 2048  # ~617 digits: below any sys.set_int_max_str_digits() limit
_SUPPORTED = (
    "None, bool, int, float, str, bytes, bytearray, list, tuple, dict (any keys), set, "
    "frozenset, datetime, date, time, timedelta, Decimal, UUID and pathlib paths, nested "
    "freely (exact types only, not subclasses)"
)
_FIX = (
    "declare the task's return type (e.g. `-> Point`: a dataclass, attrs class, Enum, "
    "NamedTuple or TypedDict is then stored as JSON and rebuilt as that type), return plain "
    "data, convert it with attrs.asdict(), or pass serializer=PickleSerializer() if you trust "
    "the file"
)


class DecodeError(SerializationError):
    """Stored bytes are malformed, truncated, or use an unknown tag (a ``SerializationError``)."""


@runtime_checkable
class ResultSerializer(Protocol):
    """What a durable store needs: turn a task result into bytes and back."""

    def dumps(self, value: object) -> bytes:
        """Serialize ``value``; raise ``SerializationError`` if it is not supported."""
        ...

    def loads(self, data: bytes) -> object:
        """Rebuild a value from ``dumps`` output; raise ``SerializationError`` if malformed."""
        ...


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _render(where: _Where) -> str:
    steps: list[str] = []
    while where is not None:
        where, kind, step = where
        if kind == "i":
            steps.append(f"[{step}]")
        elif kind == "k":
            steps.append(f"[{_quote(step) if isinstance(step, str) else reprlib.repr(step)}]")
        else:
            steps.append(f".keys()[{step}]" if kind == "K" else "{*}")
    return "$" + "".join(reversed(steps))


def _unsupported(obj: object, where: _Where, why: str = "") -> SerializationError:
    try:
        shown = reprlib.repr(obj)
    except Exception:  # a broken __repr__ must not hide the real problem
        shown = "<unrepresentable>"
    path = _render(where)
    return SerializationError(
        f"cannot serialize {_type_name(obj)} at {path}: {shown}{why}. JsonSerializer supports "
        f"{_SUPPORTED}. Fix: {_FIX}.",
        value_type=_type_name(obj),
        path=path,
    )


def _corrupt(problem: str, where: _Where) -> DecodeError:
    path = _render(where)
    return DecodeError(f"cannot load stored result: {problem} at {path}", path=path)


def _tag(name: str, payload: JsonValue) -> JsonValue:
    return {_TAG: name, "v": payload}


def _enc_td(t: dt.timedelta) -> JsonValue:
    return [t.days, t.seconds, t.microseconds]


def _enc_clock(value: dt.datetime | dt.time) -> JsonValue:
    tz, spec = value.tzinfo, None
    if type(tz) is dt.timezone:
        spec = ["offset", _enc_td(tz.utcoffset(None)), tz.tzname(None)]
    elif type(tz) is zoneinfo.ZoneInfo and tz.key:
        spec = ["zone", tz.key]
    elif tz is not None:
        raise TypeError(f" (tzinfo {_type_name(tz)} is not timezone or a keyed ZoneInfo)")
    return [value.replace(tzinfo=None).isoformat(), spec, value.fold]


_CONCRETE_PATH = type(pathlib.Path())
_LEAF_ENCODERS: dict[type, tuple[str, Callable[[Any], JsonValue]]] = {
    bytes: ("bytes", lambda b: base64.b64encode(b).decode("ascii")),
    bytearray: ("bytearray", lambda b: base64.b64encode(b).decode("ascii")),
    dt.datetime: ("datetime", _enc_clock),
    dt.time: ("time", _enc_clock),
    dt.date: ("date", dt.date.isoformat),
    dt.timedelta: ("timedelta", _enc_td),
    decimal.Decimal: ("decimal", str),
    uuid.UUID: ("uuid", str),
    pathlib.PurePosixPath: ("pureposixpath", str),
    pathlib.PureWindowsPath: ("purewindowspath", str),
    _CONCRETE_PATH: ("path", str),
}


def _tokens(tree: JsonValue) -> Iterator[tuple[object, ...]]:
    """Pre-order tokens of a tree; containers carry their size, so streams are prefix-free."""
    stack = [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            yield (5, len(x))
            stack.extend(reversed(x))
        elif isinstance(x, dict):
            yield (6, len(x))
            for k, v in reversed(x.items()):
                stack += [v, k]
        elif isinstance(x, float):
            yield (3, x, math.copysign(1.0, x))
        else:
            yield (_RANKS[type(x)], x)


def _compare(a: JsonValue, b: JsonValue) -> int:
    """Total order on encoded trees; stops at the first difference (no JSON text needed)."""
    for ta, tb in zip(_tokens(a), _tokens(b)):  # noqa: B905 - streams differ before either ends
        if ta != tb:
            return -1 if ta < tb else 1  # same rank implies same type, so this is defined
    return 0


_RANKS = {type(None): 0, bool: 1, int: 2, float: 3, str: 4}
_CANONICAL = functools.cmp_to_key(_compare)


def _plain(x: object) -> bool:
    """Whether ``x`` is its own JSON encoding (the fast path for wide data)."""
    return (
        x is None
        or type(x) is str
        or type(x) is bool
        or (type(x) is int and x.bit_length() <= _MAX_PLAIN_INT_BITS)
        or (type(x) is float and math.isfinite(x))
    )


_COLLECTIONS = (list, tuple, set, frozenset)
_DONE = object()  # stack marker: every child of a container has been encoded


def _encode(value: object) -> JsonValue:
    """Turn ``value`` into a JSON-compatible tree, filling output slots from an explicit stack."""
    root: list[JsonValue] = [None]
    stack: list[tuple[object, _Where, Any, Any]] = [(value, None, root, 0)]  # obj, where, dest
    active: set[int] = set()  # ids of the containers enclosing the current object
    while stack:
        obj, where, dest, slot = stack.pop()
        if obj is _DONE:  # here ``slot`` is the container's id, ``dest`` its set elements
            active.discard(slot)
            if dest is not None:  # equal sets must give equal bytes: canonical element order
                dest.sort(key=_CANONICAL)
            continue
        if _plain(obj):
            dest[slot] = obj
        elif (leaf := _LEAF_ENCODERS.get(type(obj))) is not None:
            try:
                dest[slot] = _tag(leaf[0], leaf[1](obj))
            except TypeError as exc:
                raise _unsupported(obj, where, str(exc)) from None
        elif type(obj) is int or type(obj) is float:
            dest[slot] = _tag(type(obj).__name__, hex(obj) if type(obj) is int else repr(obj))
        elif id(obj) in active:
            raise _unsupported(obj, where, " (it contains itself)")
        else:
            out: Any  # the container's JSON form; plain children are copied in as they are
            kids: list[tuple[object, _Where, Any, Any]]  # children that still need encoding
            if type(obj) in _COLLECTIONS and isinstance(obj, list | tuple | set | frozenset):
                out = list(obj)
                name = "s" if isinstance(obj, set | frozenset) else "i"
                dest[slot] = out if type(obj) is list else _tag(type(obj).__name__, out)
                kids = [(x, (where, name, i), out, i) for i, x in enumerate(out) if not _plain(x)]
            elif type(obj) is dict and _TAG not in obj and all(type(k) is str for k in obj):
                dest[slot] = out = dict(obj)
                kids = [(x, (where, "k", k), out, k) for k, x in out.items() if not _plain(x)]
            elif type(obj) is Unstructured:  # a typed task's value, unstructured by cattrs
                out = [obj.type_name, obj.data]
                dest[slot] = _tag("typed", out)
                kids = [(x, (where, "i", i), out, i) for i, x in enumerate(out) if not _plain(x)]
            elif type(obj) is dict:
                out = [[k, x] for k, x in obj.items()]
                dest[slot] = _tag("dict", out)
                kids = [
                    (p[j], (where, "k", p[0]) if j else (where, "K", i), p, j)
                    for i, p in enumerate(out)
                    for j in (0, 1)
                    if not _plain(p[j])
                ]
            else:
                raise _unsupported(obj, where)
            active.add(id(obj))
            stack.append((_DONE, None, out if isinstance(obj, set | frozenset) else None, id(obj)))
            stack.extend(reversed(kids))  # so the first bad child is the one reported
    return root[0]


def _str(v: JsonValue) -> str:
    if type(v) is not str:
        raise TypeError(f"expected a string, found {_type_name(v)}")
    return v


def _list(v: JsonValue, n: int | None = None) -> list[JsonValue]:
    if type(v) is not list or (n is not None and len(v) != n):
        raise TypeError(f"expected a list{f' of {n}' if n else ''}, found {reprlib.repr(v)}")
    return v


def _dec_td(v: JsonValue) -> dt.timedelta:
    parts = [x for x in _list(v, 3) if type(x) is int]
    delta = dt.timedelta(*parts)
    if len(parts) != 3 or _enc_td(delta) != parts:  # only the normalized form we write
        raise TypeError(f"bad timedelta {reprlib.repr(v)}")
    return delta


def _dec_clock(kind: type[dt.datetime] | type[dt.time]) -> Callable[[JsonValue], object]:
    def decode(v: JsonValue) -> object:
        iso, spec, fold = _list(v, 3)
        tz: dt.tzinfo | None = None
        match spec:
            case ["offset", offset, str(name)]:
                tz = dt.timezone(_dec_td(offset), name)
            case ["zone", str(key)]:
                tz = zoneinfo.ZoneInfo(key)
            case None:
                pass
            case _:
                raise TypeError(f"bad time zone {reprlib.repr(spec)}")
        if type(fold) is not int:
            raise TypeError(f"bad fold {reprlib.repr(fold)}")
        return kind.fromisoformat(_str(iso)).replace(tzinfo=tz, fold=fold)

    return decode


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_LEAF_DECODERS: dict[str, Callable[[JsonValue], object]] = {
    "int": lambda v: int(_str(v), 16),
    "float": lambda v: _FLOATS[_str(v)],
    "bytes": lambda v: base64.b64decode(_str(v), validate=True),
    "bytearray": lambda v: bytearray(base64.b64decode(_str(v), validate=True)),
    "datetime": _dec_clock(dt.datetime),
    "time": _dec_clock(dt.time),
    "date": lambda v: dt.date.fromisoformat(_str(v)),
    "timedelta": _dec_td,
    "decimal": lambda v: decimal.Decimal(_str(v)),
    "uuid": lambda v: uuid.UUID(_str(v)),
    "pureposixpath": lambda v: pathlib.PurePosixPath(_str(v)),
    "purewindowspath": lambda v: pathlib.PureWindowsPath(_str(v)),
    "path": lambda v: pathlib.Path(_str(v)),
}


def _typed(items: list[Any]) -> Unstructured:
    if len(items) != 2 or type(items[0]) is not str:
        raise TypeError(f"expected [type name, data], found {reprlib.repr(items)}")
    return Unstructured(items[0], items[1])


_BUILDERS: dict[str, Callable[[list[Any]], object]] = {
    "typed": _typed,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": lambda a: dict(zip(a[::2], a[1::2], strict=True)),
}
_JSON_SCALARS = (str, int, float, bool, type(None))


@attrs.frozen
class _Build:
    """Stack marker: ``items`` are all decoded, so build the immutable container now."""

    builder: Callable[[list[Any]], object]
    items: list[Any]


def _decode(tree: object) -> object:
    """Rebuild a value from a JSON-compatible tree, filling output slots from a stack."""
    root: list[object] = [None]
    stack: list[tuple[object, _Where, Any, Any]] = [(tree, None, root, 0)]
    while stack:
        node, where, dest, slot = stack.pop()
        out: Any
        try:
            if type(node) is _Build:
                dest[slot] = node.builder(node.items)
                continue
            if type(node) in _JSON_SCALARS:
                dest[slot] = node
                continue
            if type(node) is list:
                dest[slot] = out = list(node)
                kids: Any = enumerate(node)
            elif type(node) is dict and _TAG not in node:
                dest[slot] = out = dict(node)
                kids = node.items()
            elif type(node) is dict:
                tag, items = node[_TAG], node.get("v")
                if node.keys() != {_TAG, "v"} or not isinstance(tag, str):
                    raise _corrupt(f"malformed tagged object {reprlib.repr(node)}", where)
                if tag in _LEAF_DECODERS:
                    dest[slot] = _LEAF_DECODERS[tag](items)
                    continue
                if tag not in _BUILDERS:
                    raise _corrupt(f"unknown tag {tag!r}", where)
                out = [x for p in _list(items) for x in _list(p, 2)] if tag == "dict" else items
                out = list(_list(out))
                stack.append((_Build(_BUILDERS[tag], out), where, dest, slot))
                where, kids = (where, "k", "v"), enumerate(out)
            else:
                raise _corrupt(f"not a JSON value: {_type_name(node)}", where)
        except DecodeError:
            raise
        except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
            raise _corrupt(f"corrupt value ({type(exc).__name__}: {exc})", where) from exc
        kind = "k" if type(out) is dict else "i"
        pending = [(x, (where, kind, k), out, k) for k, x in kids if type(x) not in _JSON_SCALARS]
        stack.extend(reversed(pending))
    return root[0]


class _Raw(str):
    """JSON punctuation on the writer's stack (never a string value)."""

    __slots__ = ()


_quote = json.encoder.encode_basestring  # ensure_ascii=False quoting, C-accelerated
_COMMA, _CLOSE_LIST, _CLOSE_DICT = _Raw(","), _Raw("]"), _Raw("}")


def _write(tree: JsonValue) -> str:
    """Compact JSON text for a JSON-compatible tree, without recursion."""
    out: list[str] = []
    stack: list[JsonValue] = [tree]
    while stack:
        item = stack.pop()
        if type(item) is _Raw:
            out.append(item)
        elif isinstance(item, str):
            out.append(_quote(item))
        elif item is None or isinstance(item, bool):
            out.append("null" if item is None else "true" if item else "false")
        elif isinstance(item, int | float):
            out.append(type(item).__repr__(item))
        elif isinstance(item, list):
            out.append("[")
            stack.append(_CLOSE_LIST)
            for i in range(len(item) - 1, -1, -1):
                stack += [item[i], _COMMA] if i else [item[i]]
        else:
            out.append("{")
            stack.append(_CLOSE_DICT)
            pairs = list(item.items())
            for i in range(len(pairs) - 1, -1, -1):
                entry = [pairs[i][1], _Raw(_quote(pairs[i][0]) + ":")]
                stack += [*entry, _COMMA] if i else entry
    return "".join(out)


# What ``json.dumps(tree, ensure_ascii=False, separators=(",", ":"), allow_nan=False)`` builds on
# every call (non-default options make it construct a new encoder each time), built once.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _text(tree: JsonValue) -> str:
    """Compact JSON text: C-accelerated ``json``, or ``_write`` when nesting is too deep."""
    try:
        return _ENCODER.encode(tree)
    except RecursionError:
        return _write(tree)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


_SCALARS = json.JSONDecoder(parse_constant=_reject_constant)
_SPACE = re.compile(r"[ \t\n\r]*")


def _parse(text: str) -> JsonValue:
    """Strict JSON text to a tree, without recursion (``json`` parses only the scalars)."""
    stack: list[list[JsonValue] | dict[str, JsonValue]] = []
    keys: list[str] = []  # pending key of each open dict

    def key_at(pos: int) -> int:
        if not text.startswith('"', pos):  # never let raw_decode recurse into a container
            raise ValueError(f"expected a string key at character {pos}")
        key, pos = _SCALARS.raw_decode(text, pos)
        pos = _skip(pos)
        if not text.startswith(":", pos):
            raise ValueError(f"expected ':' at character {pos}")
        keys.append(key)
        return _skip(pos + 1)

    def _skip(pos: int) -> int:
        return _SPACE.match(text, pos).end()  # type: ignore[union-attr]  # always matches

    pos = _skip(0)
    while True:
        value: JsonValue
        if text.startswith(("[", "{"), pos):
            closer = "]" if text[pos] == "[" else "}"
            pos = _skip(pos + 1)
            if text.startswith(closer, pos):
                value, pos = ([] if closer == "]" else {}), pos + 1
            else:
                stack.append([] if closer == "]" else {})
                pos = key_at(pos) if closer == "}" else pos
                continue
        else:
            value, pos = _SCALARS.raw_decode(text, pos)
        while True:  # attach the finished value, closing every container it completes
            pos = _skip(pos)
            if not stack:
                if pos != len(text):
                    raise ValueError(f"extra data at character {pos}")
                return value
            top = stack[-1]
            if isinstance(top, list):
                top.append(value)
            else:
                top[keys.pop()] = value
            if text.startswith(",", pos):
                pos = key_at(_skip(pos + 1)) if isinstance(top, dict) else _skip(pos + 1)
                break
            if not text.startswith("]" if isinstance(top, list) else "}", pos):
                raise ValueError(f"expected ',' or a closing bracket at character {pos}")
            value, pos = stack.pop(), pos + 1


@attrs.frozen
class JsonSerializer:
    """Safe default: tagged, deterministic, compact UTF-8 JSON; loading never runs code.

    Plain data (None, bool, finite float, small int, str, list, str-keyed dict) is written as
    ordinary JSON. Everything else is wrapped as ``{"__flowplan__": tag, "v": payload}``; a
    user dict that itself has a ``"__flowplan__"`` key (or any non-str key) is written as a
    tagged list of ``[key, value]`` pairs, so user data can never be mistaken for a tag.
    Dicts keep their insertion order (so equal dicts built in different orders give different
    bytes); set elements are put in a canonical order of their encoded form, so equal sets of
    the same elements give equal bytes. Strings with lone surrogates are written as
    JSON escapes (a lone high surrogate directly followed by a lone low one reads back as
    the combined character, as with any JSON).
    """

    def encode(self, value: object) -> JsonValue:
        """Convert ``value`` to a JSON-compatible tree (for embedding in a JSON line).

        Raises:
            SerializationError: ``value`` contains an unsupported or self-containing object.
        """
        return _encode(value)

    def decode(self, obj: JsonValue) -> object:
        """Rebuild the value from an ``encode`` tree.

        Raises:
            DecodeError: The tree is malformed or uses an unknown tag.
        """
        return _decode(obj)

    def dumps(self, value: object) -> bytes:
        """Serialize ``value`` to UTF-8 JSON bytes.

        Raises:
            SerializationError: ``value`` contains an unsupported or self-containing object.
        """
        tree = value if _plain(value) else _encode(value)  # a plain scalar is its own tree
        return _text(tree).encode("utf-8", "backslashreplace")  # type: ignore[arg-type]

    def loads(self, data: bytes) -> object:
        """Rebuild a value from ``dumps`` output.

        Raises:
            DecodeError: ``data`` is not UTF-8, not JSON, or not a valid tagged encoding.
        """
        try:
            text = bytes(data).decode("utf-8")
            try:
                tree = json.loads(text, parse_constant=_reject_constant)
            except RecursionError:
                tree = _parse(text)
        except ValueError as exc:  # includes UnicodeDecodeError and json.JSONDecodeError
            raise DecodeError(f"cannot load stored result: not valid UTF-8 JSON ({exc})") from exc
        return _decode(tree)

    def serialize(self, obj: Any) -> bytes:
        """:meth:`dumps` under flowrun's name (its ``ResultSerializer`` protocol)."""
        return self.dumps(obj)

    def deserialize(self, data: bytes) -> Any:
        """:meth:`loads` under flowrun's name (its ``ResultSerializer`` protocol)."""
        return self.loads(data)


@attrs.frozen
class PickleSerializer:
    """Opt-in pickle serializer for results JSON cannot represent.

    WARNING: loading a pickle can execute arbitrary code. Never load a file you did not
    write yourself; a tampered or downloaded store becomes remote code execution. Prefer
    ``JsonSerializer`` unless every stored file is trusted.

    Attributes:
        protocol: Pickle protocol, 0 to ``pickle.HIGHEST_PROTOCOL``.
    """

    protocol: int = attrs.field(default=pickle.HIGHEST_PROTOCOL)

    @protocol.validator
    def _check_protocol(self, attribute: attrs.Attribute[int], value: int) -> None:
        if type(value) is not int or not 0 <= value <= pickle.HIGHEST_PROTOCOL:
            raise ValueError(f"protocol must be 0..{pickle.HIGHEST_PROTOCOL}, got {value!r}")

    def dumps(self, value: object) -> bytes:
        """Pickle ``value``.

        Raises:
            SerializationError: ``value`` (or something inside it) cannot be pickled.
        """
        try:
            return pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:  # pickling can fail with almost any exception type
            raise SerializationError(
                f"cannot pickle {_type_name(value)}: {type(exc).__name__}: {exc}. Fix: return "
                "plain data (module-level functions and classes, no locks, sockets or lambdas)",
                value_type=_type_name(value),
            ) from exc

    def loads(self, data: bytes) -> object:
        """Unpickle ``data``; only ever call this on bytes you wrote yourself.

        Raises:
            DecodeError: ``data`` is not a loadable pickle.
        """
        try:
            return pickle.loads(data)
        except Exception as exc:  # truncated/garbage pickles raise many exception types
            raise DecodeError(
                f"cannot load stored result: not a valid pickle ({type(exc).__name__}: {exc})"
            ) from exc

    def serialize(self, obj: Any) -> bytes:
        """:meth:`dumps` under flowrun's name (its ``ResultSerializer`` protocol)."""
        return self.dumps(obj)

    def deserialize(self, data: bytes) -> Any:
        """:meth:`loads` under flowrun's name; only ever call it on bytes you wrote yourself."""
        return self.loads(data)
