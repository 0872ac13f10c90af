"""Edges checked by type at graph build (``TaskGraph.build(check_types=...)``, beartype)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, NewType, Protocol, TypeVar

import beartype.door
import pytest
import structlog

import flowplan
from flowplan import (
    Dependency,
    EdgeTypeError,
    Flow,
    GraphValidationError,
    InvalidOptionError,
    MissingExtraError,
    Registry,
    TaskGraph,
    TaskSpec,
    UnknownTaskError,
    _typecheck,
    task,
)
from flowplan.engine import build_default_engine

UserId = NewType("UserId", int)
T = TypeVar("T")


class Sized(Protocol):  # not runtime-checkable: beartype cannot judge it
    def size(self) -> int: ...


def _graph(produces: Callable[..., Any], consumes: Callable[..., Any], **options: Any) -> TaskGraph:
    """Build ``load → clean`` where ``clean`` receives ``load``'s value as ``load``."""
    check_types = options.pop("check_types", True)
    dep = Dependency("load", optional=options.pop("optional", False))
    load = TaskSpec("load", produces)
    clean = TaskSpec("clean", consumes, deps=(dep,), **options)
    return TaskGraph.build([load, clean], check_types=check_types)


def _edge_errors(excinfo: pytest.ExceptionInfo[GraphValidationError]) -> list[EdgeTypeError]:
    return [e for e in excinfo.value.exceptions if isinstance(e, EdgeTypeError)]


def _returns(hint: object) -> Callable[[], Any]:
    def produce() -> Any:
        return None

    produce.__annotations__ = {"return": hint}
    return produce


def _receives(hint: object) -> Callable[..., Any]:
    def consume(load: Any) -> None:
        return None

    consume.__annotations__ = {"load": hint, "return": None}
    return consume


# -- a mismatch is reported with the edge, both annotations and a fix -------------------------


def test_mismatch_names_the_edge_both_annotations_and_the_fix() -> None:
    def load() -> list[str]:
        return ["a"]

    def clean(load: dict[str, int]) -> int:
        return len(load)

    with pytest.raises(GraphValidationError) as excinfo:
        _graph(load, clean)
    (error,) = _edge_errors(excinfo)
    assert isinstance(error, TypeError)
    assert isinstance(error, flowplan.DefinitionError)
    assert (error.producer, error.consumer, error.parameter, error.task) == (
        "load",
        "clean",
        "load",
        "clean",
    )
    assert error.produced == list[str]
    assert error.expected == dict[str, int]
    assert error.gate is None
    assert str(error) == (
        'edge "load → clean": load returns list[str] but clean\'s parameter `load` expects '
        "dict[str, int]; change one of the annotations, or pass check_types=False to "
        "TaskGraph.build to skip this check"
    )


def test_type_mismatches_join_the_other_problems_in_one_group() -> None:
    def load() -> str:
        return "x"

    def clean(load: int, extra: int) -> int:
        return load + extra

    load_spec = TaskSpec("load", load)
    clean_spec = TaskSpec("clean", clean, deps=(Dependency("load"), Dependency("extra")))
    with pytest.raises(GraphValidationError) as excinfo:
        TaskGraph.build([load_spec, clean_spec])
    kinds = sorted(type(e).__name__ for e in excinfo.value.exceptions)
    assert kinds == ["EdgeTypeError", "UnknownTaskError"]
    assert any(isinstance(e, UnknownTaskError) for e in excinfo.value.exceptions)


def test_every_mismatching_edge_is_reported() -> None:
    def load() -> bytes:
        return b""

    def left(load: str) -> str:
        return load

    def right(load: int) -> int:
        return load

    specs = [
        TaskSpec("load", load),
        TaskSpec("left", left, deps=(Dependency("load"),)),
        TaskSpec("right", right, deps=(Dependency("load"),)),
    ]
    with pytest.raises(GraphValidationError) as excinfo:
        TaskGraph.build(specs)
    assert [(e.consumer, e.expected) for e in _edge_errors(excinfo)] == [
        ("left", str),
        ("right", int),
    ]


# -- what fits and what does not -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("produced", "expected"),
    [
        (list[int], Sequence[int]),
        (int, int | None),
        (int, Any),
        (Any, int),
        (bool, int),
        (int, float),  # PEP 484's numeric tower, as mypy
        (list[int], Sequence[float]),
        (float, complex),
        (Annotated[int, "meta"], int),
        (int, Annotated[int, "meta"]),
        (UserId, int),
        (Literal["a", "b"], str),
        (int | str, int | str | None),
        (dict[str, list[int]], Mapping[str, Sequence[int]]),
        (list[Any], list[int]),
        (None, int | None),
        (tuple[int, ...], Sequence[int]),  # beartype misjudges tuples: not checked
        (str, Iterable[str]),  # likewise str against an abc generic
        (dict, dict[str, int]),  # a bare generic: not checked
        (list[T], list[int]),  # type: ignore[valid-type]  # a TypeVar: not checked
        (int, T),
        (int, Sized),
        (3, int),  # not a type at all: not checked, never a crash
    ],
)
def test_assignable_or_undecidable_edges_pass(produced: object, expected: object) -> None:
    graph = _graph(_returns(produced), _receives(expected))
    assert graph.order == ("load", "clean")


@pytest.mark.parametrize(
    ("produced", "expected"),
    [
        (int | None, int),
        (int | str, int),
        (int, UserId),
        (list[str], list[int]),
        (Sequence[int], list[int]),
        (float, int),
        (str, Literal["a"]),
        (None, int),
        (dict[str, int], Mapping[str, str]),
        (Annotated[str, "meta"], int),
        (Annotated[str, ["unhashable"]], int),
    ],
)
def test_unassignable_edges_are_reported(produced: object, expected: object) -> None:
    with pytest.raises(GraphValidationError) as excinfo:
        _graph(_returns(produced), _receives(expected))
    (error,) = _edge_errors(excinfo)
    assert error.produced == (type(None) if produced is None else produced)
    assert error.expected == expected


# -- which ends are checked ----------------------------------------------------------------------


def test_unannotated_ends_are_not_checked() -> None:
    def bare_load():  # type: ignore[no-untyped-def]
        return "x"

    def bare_clean(load):  # type: ignore[no-untyped-def]
        return load

    def typed_load() -> str:
        return "x"

    def typed_clean(load: int) -> int:
        return load

    assert len(_graph(bare_load, typed_clean)) == 2
    assert len(_graph(typed_load, bare_clean)) == 2


def test_string_annotations_are_resolved_and_unresolvable_ones_skipped() -> None:
    class Local:  # not in the module's globals: its string annotation cannot be resolved
        pass

    def load() -> Local:
        return Local()

    def clean(load: int) -> int:
        return load

    assert len(_graph(load, clean)) == 2  # the return annotation cannot be resolved

    def load_str() -> str:  # a string under `from __future__ import annotations`
        return "x"

    def other() -> Local:
        return Local()

    def clean_two(load: int, other: Local) -> int:
        return load

    graph_error = None
    specs = [
        TaskSpec("load", load_str),
        TaskSpec("other", other),
        TaskSpec("clean", clean_two, deps=(Dependency("load"), Dependency("other"))),
    ]
    with pytest.raises(GraphValidationError) as excinfo:
        TaskGraph.build(specs)
    graph_error = _edge_errors(excinfo)
    assert [(e.parameter, e.produced, e.expected) for e in graph_error] == [("load", str, int)]


def test_async_producers_are_checked_by_their_awaited_type() -> None:
    async def load() -> list[str]:
        await asyncio.sleep(0)
        return ["a"]

    def fits(load: list[str]) -> int:
        return len(load)

    def clashes(load: str) -> str:
        return load

    assert len(_graph(load, fits)) == 2
    with pytest.raises(GraphValidationError) as excinfo:
        _graph(load, clashes)
    assert _edge_errors(excinfo)[0].produced == list[str]


def test_optional_dependencies_and_lenient_triggers_deliver_none() -> None:
    def load() -> list[str]:
        return []

    def strict(load: list[str]) -> int:
        return len(load)

    def lenient(load: list[str] | None) -> int:
        return len(load or [])

    assert len(_graph(load, strict)) == 2
    assert len(_graph(load, lenient, optional=True)) == 2
    assert len(_graph(load, lenient, trigger="all_done")) == 2
    for options in ({"optional": True}, {"trigger": "all_done"}, {"trigger": "any_succeeded"}):
        with pytest.raises(GraphValidationError) as excinfo:
            _graph(load, strict, **options)
        (error,) = _edge_errors(excinfo)
        assert "list[str] (or None:" in str(error)


def test_receivers_without_named_injection_are_not_checked() -> None:
    def load() -> str:
        return "x"

    def collect(**values: int) -> int:
        return len(values)

    def whole(upstream: dict[str, int]) -> int:
        return len(upstream)

    def ordering(other: int = 0) -> int:
        return other

    assert len(_graph(load, collect)) == 2
    assert len(_graph(load, whole, upstream_param="upstream")) == 2
    load_spec = TaskSpec("load", load)
    after = TaskSpec("after", ordering, deps=(Dependency("load", ordering_only=True),))
    assert len(TaskGraph.build([load_spec, after], check_types=True)) == 2


def test_when_and_validate_gates_are_checked_too() -> None:
    def load() -> str:
        return "x"

    def clean(load: str) -> str:
        return load

    def gate(load: int) -> bool:
        return load > 0

    def fine_gate(load: str) -> bool:
        return bool(load)

    assert len(_graph(load, clean, when=fine_gate, validate=fine_gate)) == 2
    for option in ("when", "validate"):
        with pytest.raises(GraphValidationError) as excinfo:
            _graph(load, clean, **{option: gate})
        (error,) = _edge_errors(excinfo)
        assert error.gate == option
        assert f"clean's {option}= gate `load` expects int" in str(error)


def test_partial_bound_functions_keep_their_annotations() -> None:
    def load() -> str:
        return "x"

    def scaled(load: int, factor: int) -> int:
        return load * factor

    with pytest.raises(GraphValidationError) as excinfo:
        _graph(load, functools.partial(scaled, factor=2))
    assert _edge_errors(excinfo)[0].expected is int


# -- opting in and out ---------------------------------------------------------------------------


def _mismatched() -> list[TaskSpec[..., Any]]:
    def load() -> str:
        return "x"

    def clean(load: int) -> int:
        return load

    return [TaskSpec("load", load), TaskSpec("clean", clean, deps=(Dependency("load"),))]


def test_check_types_false_opts_out_for_the_graph() -> None:
    assert len(TaskGraph.build(_mismatched(), check_types=False)) == 2
    with pytest.raises(GraphValidationError):
        TaskGraph.build(_mismatched())  # the default checks when beartype is installed


def test_without_beartype_the_default_skips_and_true_explains_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_typecheck, "beartype_available", lambda: False)
    assert len(TaskGraph.build(_mismatched())) == 2
    with pytest.raises(MissingExtraError, match=r"pip install 'flowplan\[typecheck\]'") as exc:
        TaskGraph.build(_mismatched(), check_types=True)
    assert isinstance(exc.value, ImportError)
    assert (exc.value.extra, exc.value.package) == ("typecheck", "beartype")
    with pytest.raises(MissingExtraError):
        Flow(_mismatched()[1], check_types=True)


def test_a_bad_check_types_value_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match="check_types must be None, True or False") as e:
        TaskGraph.build(_mismatched(), check_types="yes")  # type: ignore[arg-type]
    assert (e.value.option, e.value.value) == ("check_types", "yes")


def test_from_terminals_flow_and_engine_pass_the_option_through() -> None:
    registry = Registry()

    @task(registry=registry)
    def load() -> str:
        return "x"

    @task(depends_on=[load], registry=registry)
    def clean(load: int) -> int:
        return load

    with pytest.raises(GraphValidationError):
        TaskGraph.from_terminals(clean, registry=registry)
    assert len(TaskGraph.from_terminals(clean, registry=registry, check_types=False)) == 2

    logger = structlog.testing.CapturingLogger()
    with pytest.raises(GraphValidationError):
        Flow(clean, registry=registry, logger=logger).run()
    results = Flow(clean, registry=registry, logger=logger, check_types=False).run()
    assert results["clean"].value == "x"  # unchecked: the str flows through

    for check_types, fails in ((None, True), (False, False)):
        engine = build_default_engine(check_types=check_types)
        try:

            @engine.task(name="load")
            def engine_load() -> str:
                return "x"

            @engine.task(name="clean", deps=["load"])
            def engine_clean(load: int) -> int:
                return load

            if fails:
                with pytest.raises(GraphValidationError) as excinfo:
                    engine.graph("default")
                assert _edge_errors(excinfo)[0].consumer == "clean"
            else:
                assert len(engine.graph("default")) == 2
        finally:
            engine.close()


# -- cost: verdicts are cached, so huge graphs from a few functions stay cheap -------------------


def test_verdicts_are_computed_once_per_pair_of_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = beartype.door.is_subhint

    def counting(sub: object, sup: object) -> bool:
        calls.append((sub, sup))
        return real(sub, sup)

    monkeypatch.setattr(beartype.door, "is_subhint", counting)
    _typecheck._cached_verdict.cache_clear()

    def first() -> list[bytes]:
        return []

    def step(prev: Sequence[bytes]) -> list[bytes]:
        return list(prev)

    chain = [TaskSpec("prev", first)] + [
        TaskSpec(f"n{i}", step, deps=(Dependency("prev"),)) for i in range(2_000)
    ]
    assert len(TaskGraph.build(chain)) == 2_001
    assert len(calls) == 1


def test_a_fanned_out_producer_delivers_a_list_and_its_element_is_not_checked() -> None:
    def rows() -> list[str]:
        return ["a", "bb"]

    def measure(rows: str) -> int:  # receives one element: not checked against list[str]
        return len(rows)

    def total(measure: list[int]) -> int:
        return sum(measure)

    def wrong(measure: int) -> int:
        return measure

    def build(consumer: Callable[..., int]) -> TaskGraph:
        return TaskGraph.build(
            [
                TaskSpec("rows", rows),
                TaskSpec("measure", measure, deps=(Dependency("rows"),), fan_out="rows"),
                TaskSpec("total", consumer, deps=(Dependency("measure"),)),
            ],
            check_types=True,
        )

    assert build(total).order == ("rows", "measure", "total")
    with pytest.raises(GraphValidationError) as excinfo:
        build(wrong)
    (error,) = _edge_errors(excinfo)
    assert (error.producer, error.produced, error.expected) == ("measure", list[int], int)


def test_closures_made_per_task_share_one_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    import typing

    resolved: list[object] = []
    real = typing.get_type_hints

    def counting(obj: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        resolved.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", counting)

    def first() -> list[int]:
        return []

    def make(i: int) -> Callable[..., int]:
        def leaf(first: Sequence[str]) -> int:  # a mismatch in every one of the closures
            return i

        return leaf

    specs: list[TaskSpec[..., Any]] = [TaskSpec("first", first)]
    specs += [TaskSpec(f"leaf{i}", make(i), deps=(Dependency("first"),)) for i in range(500)]
    with pytest.raises(GraphValidationError) as excinfo:
        TaskGraph.build(specs)
    assert len(_edge_errors(excinfo)) == 500
    assert len(resolved) == 2  # `first` and one of the 500 closures
