"""Typed values in JSON stores: the task's declared return type decides how a value is stored.

Place in the data flow: graph (declared return types) → **store** (values unstructured with
cattrs on save) → plan (structured back to the declared type when reused).

A task whose declared return type holds a dataclass, an attrs class, an ``Enum``, a
``NamedTuple`` or a ``TypedDict`` (at any depth: ``list[Point]``, ``dict[str, Point]``,
``Point | None``) has its value unstructured to plain data by cattrs and stored as an
:class:`~flowplan.store.Unstructured` (JSON tag ``"typed"``); reusing it structures that data
back to the declared type. No pickle, and no class named by a file is ever imported. Untyped
and ``Any``-typed values, and plain data types, keep the tagged JSON format unchanged.
cattrs is imported on first use only (a typed value being stored or rebuilt).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import inspect
import pathlib
import threading
import types
import typing
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from flowplan._fanout import split_element
from flowplan.errors import SerializationError
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus
from flowplan.store._serializers import JsonSerializer, Unstructured

if TYPE_CHECKING:
    import cattrs

    from flowplan.graph import TaskGraph
    from flowplan.spec import TaskSpec

__all__ = [
    "RunTypes",
    "declared_type",
    "from_stored",
    "record_type",
    "restore_readable",
    "restore_values",
    "restored_or_failed",
    "stores_typed",
    "to_stored",
    "typed_converter",
]

_FIX = (
    "make it (and every field's type) a dataclass, an attrs class, an Enum, a NamedTuple, a "
    "TypedDict or plain data (or register hooks for it on flowplan.store.typed_converter()), "
    "or pass serializer=PickleSerializer() to the store if you trust its files"
)
# JsonSerializer stores these exactly itself: cattrs passes them through unchanged
_LEAVES: tuple[type, ...] = (
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    decimal.Decimal,
    uuid.UUID,
    bytes,
    bytearray,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    pathlib.Path,
)
# return annotations that can never need cattrs, as objects and as (postponed) text
_PLAIN: frozenset[object] = frozenset(
    {int, float, str, bytes, bool, complex, type(None), None, object, list, dict, tuple, set}
    | {frozenset, *_LEAVES, typing.Any}
    | {"int", "float", "str", "bytes", "bool", "None", "object", "list", "dict", "Any"}
    | {"tuple", "set", "frozenset", "typing.Any"}
)
_NONE: object = object()  # "no typed return" in the per-function cache
_returns: weakref.WeakKeyDictionary[Callable[..., object], object] = weakref.WeakKeyDictionary()


def _exact(value: object, tp: type) -> object:
    if type(value) is tp or (tp is pathlib.Path and isinstance(value, pathlib.Path)):
        return value
    raise TypeError(f"expected {tp.__qualname__}, found {type(value).__qualname__}")


@functools.cache
def typed_converter() -> cattrs.Converter:
    """The cattrs converter flowplan's JSON stores use for typed task values.

    Register hooks on it (``register_structure_hook``/``register_unstructure_hook``) for a
    type of your own that cattrs cannot handle by itself; the hooks must produce data that
    :class:`~flowplan.store.JsonSerializer` stores (plain data, tuples, sets, bytes, dates…).
    """
    import cattrs

    converter = cattrs.Converter()
    for leaf in _LEAVES:  # stored exactly by the JSON encoding: no conversion either way
        converter.register_unstructure_hook(leaf, lambda value: value)
        converter.register_structure_hook(leaf, _exact)
    converter.register_unstructure_hook_factory(_is_named_tuple, _unstructure_named(converter))
    converter.register_structure_hook_factory(_is_named_tuple, _structure_named(converter))
    return converter


def _is_named_tuple(hint: object) -> bool:
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def _field_types(cls: type) -> list[tuple[str, object]]:
    """A named tuple's fields and their resolved types (postponed annotations included)."""
    hints = typing.get_type_hints(cls)
    return [(field, hints.get(field, Any)) for field in cls._fields]  # type: ignore[attr-defined]


def _unstructure_named(converter: cattrs.Converter) -> Callable[[Any], Callable[[Any], object]]:
    """Named tuples as lists of their unstructured fields, each by its declared type."""

    def factory(cls: Any) -> Callable[[Any], object]:
        fields = _field_types(cls)

        def unstructure(value: Any) -> object:
            return [
                converter.unstructure(getattr(value, name), unstructure_as=tp)
                for name, tp in fields
            ]

        return unstructure

    return factory


def _structure_named(converter: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], object]]:
    """Named tuples back from a list (or tuple) of their fields, each by its declared type."""

    def factory(cls: Any) -> Callable[[Any, Any], object]:
        fields = _field_types(cls)

        def structure(data: Any, _: Any) -> object:
            if not isinstance(data, list | tuple) or len(data) != len(fields):
                raise TypeError(
                    f"expected the {len(fields)} fields of {cls.__qualname__} as a list, found "
                    f"{type(data).__qualname__}"
                )
            pairs = zip(data, fields, strict=True)
            return cls(*(converter.structure(x, typing.cast("Any", tp)) for x, (_, tp) in pairs))

        return structure

    return factory


def _is_structured_class(hint: object) -> bool:
    if not isinstance(hint, type):
        return typing.is_typeddict(hint)
    return (
        attrs.has(hint)
        or dataclasses.is_dataclass(hint)
        or issubclass(hint, enum.Enum)
        or (issubclass(hint, tuple) and hasattr(hint, "_fields"))
        or typing.is_typeddict(hint)
    )


def _needs_cattrs(hint: object, depth: int = 0) -> bool:
    """Whether ``hint`` holds a class that only cattrs can store (at any depth)."""
    if depth > 50 or hint is typing.Any:
        return False
    if _is_structured_class(hint):
        return True
    supertype = getattr(hint, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _needs_cattrs(supertype, depth + 1)
    if typing.get_origin(hint) is typing.Literal:
        return False
    return any(_needs_cattrs(arg, depth + 1) for arg in typing.get_args(hint))


def _strip(hint: object) -> object:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def _plain_annotation(annotation: object) -> bool:
    try:
        return annotation in _PLAIN
    except TypeError:  # unhashable
        return False


def _resolve_with_closure(fn: object, annotation: str) -> object | None:
    """A postponed return annotation naming a class local to an enclosing function (under
    ``from __future__ import annotations``), resolved through the names ``fn`` closes over."""
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    if code is None:
        return None
    local: dict[str, object] = {}
    for name, cell in zip(code.co_freevars, cells, strict=False):
        with contextlib.suppress(ValueError):  # an empty cell
            local[name] = cell.cell_contents
    holder = types.SimpleNamespace(__annotations__={"return": annotation})
    try:
        hints = typing.get_type_hints(
            holder, globalns=getattr(fn, "__globals__", {}), localns=local, include_extras=True
        )
    except Exception:  # still unresolvable: the task is treated as untyped
        return None
    return hints.get("return")


def declared_type(fn: Callable[..., object]) -> object | None:
    """``fn``'s declared return type when storing it needs cattrs, else ``None`` (cached)."""
    try:
        cached = _returns.get(fn, _NONE)
    except TypeError:  # not weak-referenceable
        cached = _NONE
    if cached is not _NONE:
        return cached
    target: object = fn
    while isinstance(target, functools.partial):
        target = target.func
    raw = getattr(target, "__annotations__", None)
    hint: object | None = None
    if isinstance(raw, dict) and not _plain_annotation(raw.get("return", None)):
        from flowplan._typecheck import _hints

        found = _hints(fn).get("return", None)
        if found is None and isinstance(raw.get("return", None), str):
            found = _resolve_with_closure(target, raw["return"])
        found = _strip(found)
        hint = found if found is not None and _needs_cattrs(found) else None
    with contextlib.suppress(TypeError):
        _returns[fn] = hint
    return hint


def record_type(graph: TaskGraph, name: str) -> object | None:
    """The declared type of record ``name`` of ``graph`` when it needs cattrs, else ``None``.

    A fan-out task's own record holds the list of its elements' values; an element record
    (``task[2]``) holds one value of the task's declared return type.
    """
    spec: TaskSpec[..., Any] | None = graph.specs.get(name)
    if spec is not None:
        hint = declared_type(spec.fn)
        if hint is not None and spec.fan_out is not None:
            return types.GenericAlias(list, (hint,))
        return hint
    element = split_element(name) if name.endswith("]") else None
    if element is None:
        return None
    parent = graph.specs.get(element[0])
    return None if parent is None or parent.fan_out is None else declared_type(parent.fn)


def _label(hint: object) -> str:
    text = inspect.formatannotation(hint)
    return text.replace("typing.", "").replace("collections.abc.", "")


def _detail(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        import cattrs

        with contextlib.suppress(Exception):
            return "; ".join(cattrs.transform_error(exc))
    return f"{type(exc).__name__}: {exc}"


def to_stored(value: object, hint: object, task: str) -> Unstructured:
    """Unstructure ``value`` by its declared type ``hint`` into what a JSON store writes.

    The data is structured back at once, so a value that could be written but never read
    back fails now (its task fails) rather than on a later resume.

    Raises:
        SerializationError: cattrs cannot unstructure the value as ``hint``, or cannot
            structure the result back; the message names the task, the type and the fix.
    """
    converter = typed_converter()
    label = _label(hint)
    try:
        data = converter.unstructure(value, unstructure_as=hint)
        JsonSerializer().encode(data)  # every leaf must be storable
        converter.structure(data, typing.cast("Any", hint))  # and the whole must come back
    except Exception as exc:
        raise SerializationError(
            f"task {task!r} returns {label} (its declared return type), and this value of it "
            f"({type(value).__qualname__}) cannot be stored as JSON: {_detail(exc)}. Fix: "
            f"{_FIX}",
            value_type=label,
            path=getattr(exc, "path", "$"),
        ) from exc
    return Unstructured(label, data)


def from_stored(stored: Unstructured, hint: object, task: str) -> object:
    """Structure a stored :class:`Unstructured` back to the task's declared type ``hint``.

    Raises:
        SerializationError: the data does not fit ``hint`` (the task's return type changed
            since the value was stored, or the file was edited).
    """
    try:
        return typed_converter().structure(stored.data, typing.cast("Any", hint))
    except Exception as exc:
        label = _label(hint)
        raise SerializationError(
            f"task {task!r}: its stored value (stored as {stored.type_name}) cannot be "
            f"structured as its declared return type {label}: {_detail(exc)}",
            value_type=label,
        ) from exc


def restore_values(snapshot: Snapshot, graph: TaskGraph) -> Snapshot:
    """``snapshot`` with every stored typed value structured back to ``graph``'s declared types.

    A value that no longer fits its task's type (or whose task is no longer typed) turns its
    record into a FAILED one with error kind ``"serialization"`` saying why, so the task runs
    again on resume.

    Args:
        snapshot: a snapshot read from a store (``SqliteStateStore.load``, ``JournalStore.load``).
        graph: the graph whose tasks' return types to use.

    Returns:
        A snapshot whose values are the tasks' declared types (the same one if none was typed).
    """
    changed: dict[str, TaskRecord] = {}
    for name, record in snapshot.records.items():
        if type(record.value) is not Unstructured:
            continue
        changed[name] = restored_or_failed(record, record_type(graph, name))
    if not changed:
        return snapshot
    return attrs.evolve(snapshot, records={**snapshot.records, **changed})


def restore_readable(snapshot: Snapshot, graph: TaskGraph) -> Snapshot:
    """``snapshot`` with each stored typed value that fits ``graph``'s declared type rebuilt;
    one that does not stays as stored (for reports: the record itself is not judged)."""
    changed: dict[str, TaskRecord] = {}
    for name, record in snapshot.records.items():
        stored = record.value
        if type(stored) is not Unstructured:
            continue
        hint = record_type(graph, name)
        if hint is None:
            continue
        with contextlib.suppress(SerializationError):
            changed[name] = attrs.evolve(record, value=from_stored(stored, hint, name))
    if not changed:
        return snapshot
    return attrs.evolve(snapshot, records={**snapshot.records, **changed})


def restored_or_failed(record: TaskRecord, hint: object | None) -> TaskRecord:
    """``record`` restored by ``hint``, or a FAILED record that says why it cannot be."""
    stored = record.value
    assert type(stored) is Unstructured
    if hint is None:
        why = (
            f"its stored value is a typed value ({stored.type_name}) but the task declares no "
            "return type that holds a dataclass, attrs class, Enum, NamedTuple or TypedDict now"
        )
    else:
        try:
            return attrs.evolve(record, value=from_stored(stored, hint, record.name))
        except SerializationError as exc:
            why = str(exc)
    from flowplan.snapshot import ErrorInfo

    message = f"{why}; it is treated as not succeeded and runs again on resume"
    return TaskRecord(
        record.name,
        TaskStatus.FAILED,
        error=ErrorInfo("flowplan.errors.SerializationError", message, kind="serialization"),
        reason=message,
        root_cause=record.name,
        step_key=record.step_key,
    )


class RunTypes:
    """Which graph each run of a store belongs to, so a record's declared type can be found.

    A store binds a run's graph when the run begins and forgets it when the run finishes;
    :meth:`prepare` turns a typed record's value into its :class:`Unstructured` form.
    """

    def __init__(self) -> None:
        self._graphs: dict[str, TaskGraph] = {}
        self._lock = threading.Lock()

    def bind(self, run_id: str, graph: TaskGraph) -> None:
        with self._lock:
            self._graphs[run_id] = graph

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._graphs.pop(run_id, None)

    def prepare(self, run_id: str, record: TaskRecord, serializer: object) -> TaskRecord:
        """``record`` ready for ``serializer``: a typed value unstructured for a JSON store.

        Raises:
            SerializationError: a succeeded record's typed value cannot be stored (a value
                kept on a record that did not succeed is dropped instead).
        """
        if not record.has_value or not self._graphs or not isinstance(serializer, JsonSerializer):
            return record
        graph = self._graphs.get(run_id)
        hint = None if graph is None else record_type(graph, record.name)
        if hint is None or type(record.value) is Unstructured:
            return record
        try:
            return attrs.evolve(record, value=to_stored(record.value, hint, record.name))
        except SerializationError:
            if record.status is TaskStatus.SUCCEEDED:
                raise
            return attrs.evolve(record, value=None, has_value=False)


def stores_typed(serializer: object) -> bool:
    """Whether values given to ``serializer`` are unstructured first (a JSON serializer)."""
    return isinstance(serializer, JsonSerializer)
