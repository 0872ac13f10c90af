"""Tests for flowplan.store._serializers (JSON and pickle result serializers)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import pathlib
import pickle
import threading
import zoneinfo
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowplan.store._serializers import (
    DecodeError,
    JsonSerializer,
    JsonValue,
    PickleSerializer,
    ResultSerializer,
    SerializationError,
    _parse,
    _write,
)

J = JsonSerializer()


@attrs.frozen
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Box:
    size: int


class Color(enum.IntEnum):
    RED = 1


class Utc2(dt.tzinfo):
    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=2)

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, d: dt.datetime | None) -> str:
        return "UTC+2"


# --- exact, type-preserving equality (nan == nan, -0.0 != 0.0, Decimal exponent kept) -------


def same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, decimal.Decimal) and isinstance(b, decimal.Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, dt.datetime | dt.time) and isinstance(b, dt.datetime | dt.time):
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.fold == b.fold
            and type(a.tzinfo) is type(b.tzinfo)
            and a.tzinfo == b.tzinfo
            and (a.tzinfo is None or a.tzinfo.tzname(None) == b.tzinfo.tzname(None))  # type: ignore[union-attr]
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):  # insertion order is kept, so compare in order
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, set | frozenset) and isinstance(b, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    return a == b


def roundtrip(value: object) -> object:
    return J.loads(J.dumps(value))


# --- strategies -------------------------------------------------------------------------------


def big_int(parts: tuple[int, int, bool]) -> int:
    bits, low, negative = parts
    return (-1 if negative else 1) * ((1 << bits) + low)


timezones = st.none() | st.timezones() | st.just(dt.UTC)
timezones |= st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)).map(
    dt.timezone
)
hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.tuples(st.integers(2040, 9000), st.integers(), st.booleans()).map(big_int)
    | st.floats()
    | st.text()
    | st.binary()
    | st.datetimes(timezones=timezones)
    | st.dates()
    | st.times(timezones=timezones)
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.sampled_from([decimal.Decimal("NaN"), decimal.Decimal("-NaN")])
    | st.uuids()
    | st.text().map(pathlib.PurePosixPath)
    | st.text().map(pathlib.PureWindowsPath)
    | st.text().map(pathlib.Path)
)
hashables = st.recursive(
    hashable_leaves,
    lambda c: st.lists(c, max_size=3).map(tuple) | st.frozensets(c, max_size=3),
    max_leaves=8,
)
leaves = hashable_leaves | st.binary().map(bytearray) | st.decimals()  # + sNaN
values = st.recursive(
    leaves,
    lambda c: (
        st.lists(c, max_size=4)
        | st.lists(c, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=3), c, max_size=4)
        | st.dictionaries(st.sampled_from(["__flowplan__", "v", "x"]), c, max_size=3)
        | st.dictionaries(hashables, c, max_size=3)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=20,
)
plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=3), c, max_size=4),
    max_leaves=20,
)


# --- round trips ------------------------------------------------------------------------------


@settings(max_examples=300)
@given(values)
def test_roundtrip_preserves_type_and_value(value: object) -> None:
    assert same(roundtrip(value), value)
    assert same(J.decode(J.encode(value)), value)


@given(values)
def test_encode_tree_embeds_in_a_json_line(value: object) -> None:
    line = json.dumps({"task": "t", "value": J.encode(value)}, allow_nan=False)
    assert same(J.decode(json.loads(line)["value"]), value)


@given(plain_json)
def test_plain_data_is_plain_compact_json(value: JsonValue) -> None:
    data = J.dumps(value)
    assert json.loads(data) == value
    assert data == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@given(values)
def test_output_is_strict_utf8_json(value: object) -> None:
    def refuse(name: str) -> object:
        raise AssertionError(f"non-standard constant {name}")

    json.loads(J.dumps(value).decode("utf-8"), parse_constant=refuse)


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        -0.0,
        2**2048,
        pytest.param(-(10**5000), id="int-beyond-str-digits-limit"),
        "lone \udc80 surrogate",
        dt.datetime(
            2021, 11, 7, 1, 30, 0, 999999, tzinfo=zoneinfo.ZoneInfo("America/New_York"), fold=1
        ),
        dt.datetime(2020, 1, 2, 3, 4, 5, 6),
        dt.time(23, 59, 59, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3, microseconds=5), "X")),
        decimal.Decimal("-sNaN7"),
        decimal.Decimal("1.500E+3"),
        {(1, 2): {frozenset({(3, "a")}): [b"\x00"]}},
        {1: "int key", "1": "str key", 1.5: "float key", False: "bool key"},
        [{"__flowplan__": "tuple", "v": [1, 2]}, ({"__flowplan__": 1},)],
    ],
)
def test_edge_values_roundtrip(value: object) -> None:
    assert same(roundtrip(value), value)


def test_nan_is_tagged_not_a_bare_constant() -> None:
    assert J.dumps([math.nan, -math.inf]) == (
        b'[{"__flowplan__":"float","v":"nan"},{"__flowplan__":"float","v":"-inf"}]'
    )


def test_non_ascii_is_written_as_utf8() -> None:
    assert J.dumps({"é": "日本"}) == '{"é":"日本"}'.encode()


# --- determinism ------------------------------------------------------------------------------


@given(st.sets(hashables, max_size=8))
def test_equal_sets_give_equal_bytes(items: set[object]) -> None:
    rebuilt: set[object] = set()
    for item in reversed(list(items)):  # same elements, different insertion order
        rebuilt.add(item)
    assert J.dumps(items) == J.dumps(rebuilt)
    assert J.dumps(frozenset(items)) == J.dumps(frozenset(rebuilt))


def test_set_order_does_not_depend_on_insertion_history() -> None:
    first, second = {8}, {16}  # 8 and 16 collide in a small set: insertion order decides
    first.add(16)
    second.add(8)
    assert first == second
    assert list(first) != list(second)
    assert J.dumps({"s": first}) == J.dumps({"s": second})
    assert J.dumps((frozenset(first),)) == J.dumps((frozenset(second),))


@given(values)
def test_deep_copies_give_equal_bytes(value: object) -> None:
    assert J.dumps(value) == J.dumps(copy.deepcopy(value))


# --- collision safety -------------------------------------------------------------------------


def test_user_dict_with_reserved_key_is_escaped() -> None:
    lookalike = {"__flowplan__": "tuple", "v": [1, 2]}
    result = roundtrip(lookalike)
    assert type(result) is dict
    assert result == lookalike
    assert json.loads(J.dumps(lookalike))["__flowplan__"] == "dict"


def test_non_str_keys_survive_with_their_types() -> None:
    value = {1: "a", (2, 3): "b", None: "c", 1.5: "d"}
    result = roundtrip(value)
    assert isinstance(result, dict)
    assert [type(k) for k in result] == [int, tuple, type(None), float]


# --- unsupported values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name", "path"),
    [
        (Point(1, 2), "test_serializers.Point", "$"),
        ([1, {"a": (2, Box(3))}], "test_serializers.Box", '$[1]["a"][1]'),
        ({Point(0, 0): 1}, "test_serializers.Point", "$.keys()[0]"),
        ({(1, 2): [object()]}, "object", "$[(1, 2)][0]"),
        ([{frozenset({Color.RED})}], "test_serializers.Color", "$[0]{*}{*}"),
        ({"f": lambda: 1}, "function", '$["f"]'),
        ([dt.datetime(2020, 1, 1, tzinfo=Utc2())], "datetime.datetime", "$[0]"),
    ],
)
def test_unsupported_values_fail_with_type_and_path(
    value: object, type_name: str, path: str
) -> None:
    with pytest.raises(SerializationError) as info:
        J.dumps(value)
    err = info.value
    assert (err.value_type, err.path) == (type_name, path)
    message = str(err)
    assert type_name in message
    assert f" at {path}:" in message
    assert "attrs.asdict()" in message
    assert "PickleSerializer()" in message
    assert isinstance(err, ValueError)


def test_unsupported_tzinfo_is_explained() -> None:
    with pytest.raises(SerializationError, match=r"tzinfo test_serializers\.Utc2"):
        J.encode(dt.time(1, tzinfo=Utc2()))


def test_self_containing_value_is_rejected() -> None:
    loop: list[object] = [1]
    loop.append({"again": loop})
    with pytest.raises(SerializationError, match="contains itself") as info:
        J.dumps(loop)
    assert info.value.path == '$[1]["again"]'


def test_shared_but_acyclic_references_are_fine() -> None:
    shared = [1, 2]
    assert roundtrip([shared, shared, (shared,)]) == [[1, 2], [1, 2], ([1, 2],)]


# --- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[1,]",
        b'{"a":1,}',
        b"[1] [2]",
        b"NaN",
        b"[Infinity]",
        b"\xff\xfe",
        b'{"a" 1}',
        b"{1:2}",
        pytest.param(b"[" * 5000 + b"{" + b"[" * 5000, id="deep-non-string-key"),
        pytest.param(b"[" * 5000 + b"]" * 4999, id="deep-unclosed"),
        b'{"__flowplan__":"nope","v":1}',
        b'{"__flowplan__":"tuple"}',
        b'{"__flowplan__":"tuple","v":[],"x":1}',
        b'{"__flowplan__":7,"v":[]}',
        b'{"__flowplan__":"tuple","v":1}',
        b'{"__flowplan__":"set","v":[[1]]}',
        b'{"__flowplan__":"dict","v":[[1]]}',
        b'{"__flowplan__":"dict","v":[[[],1]]}',
        b'{"__flowplan__":"bytes","v":"!!"}',
        b'{"__flowplan__":"int","v":5}',
        b'{"__flowplan__":"float","v":"1.5"}',
        b'{"__flowplan__":"decimal","v":"abc"}',
        b'{"__flowplan__":"timedelta","v":[0,90000,0]}',
        b'{"__flowplan__":"timedelta","v":[0.5,0,0]}',
        b'{"__flowplan__":"datetime","v":["x",null,0]}',
        b'{"__flowplan__":"datetime","v":["2020-01-01T00:00:00",["zone","No/Such"],0]}',
        b'{"__flowplan__":"datetime","v":["2020-01-01T00:00:00",["utc"],0]}',
        b'{"__flowplan__":"time","v":["10:00",null,2]}',
        b'{"__flowplan__":"uuid","v":"not-a-uuid"}',
        pickle.dumps((1, 2)),
    ],
)
def test_malformed_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"^cannot load stored result") as info:
        J.loads(data)
    assert isinstance(info.value, SerializationError)
    assert not isinstance(info.value, json.JSONDecodeError)


def test_decode_error_names_the_location() -> None:
    with pytest.raises(DecodeError, match=r"unknown tag 'nope' at \$\[1\]\[\"k\"\]") as info:
        J.loads(b'[0,{"k":{"__flowplan__":"nope","v":1}}]')
    assert info.value.path == '$[1]["k"]'


def test_decode_rejects_non_json_trees() -> None:
    with pytest.raises(DecodeError, match="not a JSON value: tuple"):
        J.decode([(1, 2)])  # type: ignore[list-item]


class _Trap:
    fired = False

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_Trap.fire, ())

    @staticmethod
    def fire() -> None:
        _Trap.fired = True


def test_json_loads_never_unpickles() -> None:
    payload = PickleSerializer().dumps(_Trap())
    with pytest.raises(DecodeError):
        J.loads(payload)
    assert not _Trap.fired
    PickleSerializer().loads(payload)  # the pickle really was live
    assert _Trap.fired


# --- deep nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [5_000, 20_000])
@pytest.mark.parametrize("kind", ["list", "tuple", "dict", "tagged-dict", "frozenset", "set-pair"])
def test_deep_nesting_roundtrips_without_recursion(depth: int, kind: str) -> None:
    wraps: dict[str, Callable[[object], object]] = {
        "list": lambda x: [x],
        "tuple": lambda x: (x,),
        "dict": lambda x: {"k": x},
        "tagged-dict": lambda x: {(1,): x},
        "frozenset": lambda x: frozenset({x}),
        "set-pair": lambda x: frozenset({x, "leaf"}),  # sorting must not rescan the subtree
    }
    wrap = wraps[kind]
    value: object = 0
    for _ in range(depth):
        value = wrap(value)
    node = J.loads(J.dumps(value))
    for _ in range(depth):  # walk down iteratively: == itself would recurse
        assert type(node) is type(value)
        assert isinstance(node, list | tuple | dict | frozenset)
        children = list(node.values()) if isinstance(node, dict) else list(node)
        node = next(x for x in children if x != "leaf")
    assert node == 0


def test_deep_encode_tree_decodes() -> None:
    value: object = "bottom"
    for _ in range(5_000):
        value = ({"k": [value]},)
    node = J.decode(J.encode(value))
    for _ in range(5_000):
        assert type(node) is tuple
        node = node[0]["k"][0]
    assert node == "bottom"


@given(values)
def test_iterative_writer_and_parser_match_the_json_module(value: object) -> None:
    tree = J.encode(value)
    text = json.dumps(tree, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert _write(tree) == text
    assert _parse(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        *["", "[", "[1,]", '{"a":1,}', "[1] 2", "NaN", "{1:2}", '{"a" 1}', '"\x01"'],
        pytest.param("{" + "[" * 5000, id="deep-non-string-key"),
    ],
)
def test_iterative_parser_rejects_what_json_rejects(text: str) -> None:
    def no_constants(name: str) -> object:
        raise ValueError(name)

    with pytest.raises(ValueError):
        json.loads(text, parse_constant=no_constants)
    with pytest.raises(ValueError):
        _parse(text)


# --- pickle -----------------------------------------------------------------------------------


def test_pickle_roundtrips_what_json_refuses() -> None:
    value = {"p": Point(1, 2), "b": Box(3), "c": Color.RED}
    assert PickleSerializer().loads(PickleSerializer().dumps(value)) == value


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_protocol_is_used(protocol: int) -> None:
    data = PickleSerializer(protocol=protocol).dumps([1])
    assert (data[:2] == bytes([0x80, protocol])) is (protocol >= 2)
    assert PickleSerializer().loads(data) == [1]


@pytest.mark.parametrize("protocol", [-1, pickle.HIGHEST_PROTOCOL + 1])
def test_pickle_protocol_is_validated(protocol: int) -> None:
    with pytest.raises(ValueError, match="protocol must be"):
        PickleSerializer(protocol=protocol)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"f": lambda: 1}, "lambda"),
        ([threading.Lock()], "_thread.lock"),
    ],
)
def test_pickle_dump_failures_are_serialization_errors(value: object, shown: str) -> None:
    with pytest.raises(
        SerializationError, match=f"^cannot pickle {type(value).__name__}: "
    ) as info:
        PickleSerializer().dumps(value)
    assert shown in str(info.value)


@pytest.mark.parametrize("data", [b"garbage", pickle.dumps(list(range(50)))[:-5], b""])
def test_pickle_load_failures_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError, match="not a valid pickle"):
        PickleSerializer().loads(data)


def test_pickle_docstring_warns_about_code_execution() -> None:
    assert "arbitrary code" in (PickleSerializer.__doc__ or "")


# --- protocol and value semantics ----------------------------------------------------------


def test_both_serializers_satisfy_the_protocol() -> None:
    serializers: list[ResultSerializer] = [JsonSerializer(), PickleSerializer()]
    for serializer in serializers:
        assert isinstance(serializer, ResultSerializer)
        assert serializer.loads(serializer.dumps((1, {2}))) == (1, {2})


def test_serializers_are_frozen_values() -> None:
    assert JsonSerializer() == JsonSerializer()
    assert PickleSerializer(protocol=2) == PickleSerializer(protocol=2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        PickleSerializer().protocol = 1  # type: ignore[misc]
