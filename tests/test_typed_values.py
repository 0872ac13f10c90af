"""Typed task values survive every durable store: journal, SQLite store, result cache, CLI.

A task's declared return type decides how its value is stored: dataclasses, attrs classes,
enums, named tuples and typed dicts (and containers of them) are unstructured to JSON with
cattrs and structured back to the declared type when reused — no pickle, and nothing named by
a file is imported. Untyped and ``Any``-typed values keep the tagged JSON format.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import attrs
import pytest

from flowplan import (
    Flow,
    MemoryCache,
    SqliteCache,
    StepState,
    TaskGraph,
    TaskStatus,
    execute,
    plan,
    task,
)
from flowplan.errors import SerializationError
from flowplan.store import JsonSerializer, SqliteStateStore, Unstructured, restore_values


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float
    seen: dt.date


@attrs.frozen
class Segment:
    start: Point
    end: Point
    tags: frozenset[str]


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Pair(NamedTuple):
    left: int
    color: Color


class Summary(TypedDict):
    count: int
    first: Point


class Opaque:
    """A plain class: cattrs has no way to structure it."""

    def __init__(self, value: int) -> None:
        self.value = value


@dataclasses.dataclass
class Holder:
    inner: Opaque


P1 = Point(1, 2.5, dt.date(2024, 1, 2))
P2 = Point(-3, 0.0, dt.date(1999, 12, 31))
SEGMENT = Segment(P1, P2, frozenset({"a", "b"}))

KINDS: list[tuple[str, object, object]] = [
    ("dataclass", Point, P1),
    ("attrs", Segment, SEGMENT),
    ("enum", Color, Color.BLUE),
    ("namedtuple", Pair, Pair(4, Color.RED)),
    ("typeddict", Summary, Summary(count=2, first=P2)),
    ("nested", dict[str, list[Segment]], {"k": [SEGMENT, SEGMENT], "e": []}),
    ("tuple-of-namedtuples", tuple[Pair, ...], (Pair(1, Color.RED), Pair(2, Color.BLUE))),
    ("optional-none", Point | None, None),
    ("optional-value", Point | None, P2),
    ("dict-int-keys", dict[int, Color], {1: Color.RED, 2: Color.BLUE}),
]


def _typed_task(hint: object, value: object, calls: list[str]) -> Any:
    """A task named ``make`` declaring ``-> hint`` and returning ``value``."""

    def make() -> Any:
        calls.append("make")
        return value

    make.__annotations__["return"] = hint
    return task(name="make")(make)


def _consumer(make_task: Any, seen: list[object]) -> Any:
    @task(depends_on=[make_task])
    def use(make: Any) -> int:
        seen.append(make)
        return 1

    return use


@pytest.mark.parametrize(
    ("hint", "value"), [(h, v) for _, h, v in KINDS], ids=[k[0] for k in KINDS]
)
def test_sqlite_store_round_trip_per_kind(tmp_path: Path, hint: object, value: object) -> None:
    calls: list[str] = []
    make = _typed_task(hint, value, calls)
    graph = TaskGraph.build([make], check_types=False)
    with SqliteStateStore(tmp_path / "runs.db") as store:
        first = execute(plan(graph), store=store)
        assert first["make"].status is TaskStatus.SUCCEEDED, first["make"].error
        stored = store.load(first.run_id)["make"].value
        assert type(stored) is Unstructured  # as the file holds it: plain data, no class
        resumed = execute(plan(graph, store.load(first.run_id)), store=store)
    assert calls == ["make"]  # reused, not run again
    assert resumed["make"].value == value
    assert type(resumed["make"].value) is type(value)
    assert restore_values(store_snapshot(tmp_path, first.run_id), graph)["make"].value == value


def store_snapshot(tmp_path: Path, run_id: str) -> Any:
    with SqliteStateStore(tmp_path / "runs.db") as store:
        return store.load(run_id)


@pytest.mark.parametrize(
    ("hint", "value"), [(h, v) for _, h, v in KINDS], ids=[k[0] for k in KINDS]
)
def test_journal_round_trip_per_kind(tmp_path: Path, hint: object, value: object) -> None:
    journal = tmp_path / "journal.jsonl"
    calls: list[str] = []
    seen: list[object] = []
    make = _typed_task(hint, value, calls)
    Flow(make, journal_path=journal).run()
    line = json.loads(journal.read_text().splitlines()[0])
    assert line["value"]["__flowplan__"] == "typed"
    again = _typed_task(hint, value, calls)
    results = Flow(_consumer(again, seen), journal_path=journal).run()
    assert calls == ["make"]
    assert results["make"].cached
    assert seen == [value]
    assert type(seen[0]) is type(value)


@pytest.mark.parametrize("cache_kind", ["memory", "sqlite"])
def test_result_cache_round_trip(
    tmp_path: Path, cache_kind: str, request: pytest.FixtureRequest
) -> None:
    cache = MemoryCache() if cache_kind == "memory" else SqliteCache(tmp_path / "cache.db")
    if isinstance(cache, SqliteCache):
        request.addfinalizer(cache.close)
    calls: list[str] = []
    seen: list[object] = []

    def build() -> Any:
        @task(cache=True)
        def make() -> list[Segment]:
            calls.append("make")
            return [SEGMENT]

        return _consumer(make, seen)

    Flow(build(), cache=cache).run()
    results = Flow(build(), cache=cache).run()
    assert calls == ["make"]
    assert results["make"].cached
    assert seen == [[SEGMENT], [SEGMENT]]
    assert type(seen[1][0]) is Segment  # type: ignore[index]


def test_a_typed_input_is_fingerprinted_for_a_cached_consumer(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache = SqliteCache(tmp_path / "cache.db")
    request.addfinalizer(cache.close)
    calls: list[str] = []

    def build(x: int) -> Any:
        @task
        def make() -> Point:
            return Point(x, 1.0, dt.date(2020, 1, 1))

        @task(depends_on=[make], cache=True)
        def use(make: Point) -> int:
            calls.append("use")
            return make.x

        return use

    assert Flow(build(1), cache=cache).run()["use"].value == 1
    assert Flow(build(1), cache=cache).run()["use"].cached  # same input: a hit
    assert Flow(build(2), cache=cache).run()["use"].value == 2  # another input: a miss
    assert calls == ["use", "use"]


def test_untyped_values_keep_the_tagged_format(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    value = {"a": (1, 2), "b": {3}}

    @task
    def plain() -> dict[str, Any]:
        return value

    Flow(plain, journal_path=journal).run()
    line = json.loads(journal.read_text())
    assert line["value"] == JsonSerializer().encode(value)


def test_an_untyped_dataclass_fails_only_its_task_and_says_to_declare_the_type(
    tmp_path: Path,
) -> None:
    @task
    def untyped():  # type: ignore[no-untyped-def]
        return P1

    @task
    def sibling() -> int:
        return 1

    results = Flow(untyped, sibling, journal_path=tmp_path / "j.jsonl", fail_fast=False).run()
    assert results["sibling"].state is StepState.SUCCEEDED
    assert results["untyped"].state is StepState.FAILED
    assert isinstance(results["untyped"].error, SerializationError)
    message = str(results["untyped"].error)
    assert "Point" in message
    assert "declare the task's return type" in message


@pytest.mark.parametrize("store_kind", ["journal", "sqlite"])
def test_a_type_cattrs_cannot_structure_fails_only_its_task(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    @task
    def bad() -> Holder:
        return Holder(Opaque(1))

    @task
    def sibling() -> Point:
        return P1

    if store_kind == "journal":
        flow = Flow(bad, sibling, journal_path=tmp_path / "j.jsonl", fail_fast=False)
    else:
        store = SqliteStateStore(tmp_path / "r.db")
        request.addfinalizer(store.close)
        flow = Flow(bad, sibling, store=store, fail_fast=False)
    results = flow.run()
    assert results["sibling"].state is StepState.SUCCEEDED
    assert results["bad"].state is StepState.FAILED
    error = results["bad"].error
    assert isinstance(error, SerializationError)
    message = str(error)
    assert "task 'bad' returns" in message
    assert "Holder" in message
    assert "Opaque" in message
    assert "Fix:" in message
    assert "PickleSerializer" in message
    assert error.value_type.endswith("Holder")


def test_a_stored_value_that_no_longer_fits_its_type_runs_the_task_again(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    calls: list[str] = []
    Flow(_typed_task(Point, P1, calls), journal_path=journal).run()
    changed = _typed_task(Pair, Pair(1, Color.RED), calls)  # the declared type changed
    flow = Flow(changed, journal_path=journal)
    results = flow.run()
    assert calls == ["make", "make"]
    assert results["make"].value == Pair(1, Color.RED)
    assert not results["make"].cached


def test_the_file_names_no_class_that_is_ever_imported(tmp_path: Path) -> None:
    """A hostile type name in the file is only a label: the declared type is used."""
    journal = tmp_path / "journal.jsonl"
    calls: list[str] = []
    Flow(_typed_task(Point, P1, calls), journal_path=journal).run()
    text = journal.read_text().replace("test_typed_values.Point", "os.system")
    assert "os.system" in text
    journal.write_text(text)
    seen: list[object] = []
    Flow(_consumer(_typed_task(Point, P1, calls), seen), journal_path=journal).run()
    assert calls == ["make"]
    assert seen == [P1]


def test_fan_out_elements_keep_their_type_on_resume(tmp_path: Path) -> None:
    calls: list[int] = []
    failed: list[bool] = []

    @task
    def items() -> list[int]:
        return [1, 2, 3]

    @task(depends_on=[items], fan_out=items)
    def each(items: int) -> Point:
        calls.append(items)
        if items == 3 and not failed:  # elements run in any order: fail the third one once
            failed.append(True)
            raise RuntimeError("the third element fails once")
        return Point(items, 0.5, dt.date(2020, 1, items))

    graph = TaskGraph.from_terminals(each)
    with SqliteStateStore(tmp_path / "runs.db") as store:
        first = execute(plan(graph), store=store)
        assert first["each"].status is TaskStatus.FAILED
        resumed = execute(plan(graph, store.load(first.run_id)), store=store)
        again = execute(plan(graph, store.load(resumed.run_id)), store=store)
    assert sorted(calls[:3]) == [1, 2, 3]
    assert calls[3:] == [3]  # elements 1 and 2 were reused with their type
    assert resumed["each"].value == [Point(i, 0.5, dt.date(2020, 1, i)) for i in (1, 2, 3)]
    assert all(type(p) is Point for p in again["each"].value)


# -- across a real process boundary ------------------------------------------------------------

PROGRAM = """
import dataclasses, datetime as dt, enum, os, sys
from pathlib import Path
from typing import NamedTuple, TypedDict

import attrs

from flowplan import Flow, task
from flowplan.store import SqliteStateStore

HERE = Path(__file__).parent


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    when: dt.datetime


@attrs.frozen
class Box:
    corner: Point
    label: str | None


class Kind(enum.Enum):
    A = "a"


class Row(NamedTuple):
    kind: Kind
    box: Box


class Doc(TypedDict):
    rows: list[Row]


def log(name):
    with open(HERE / "calls.txt", "a") as f:
        f.write(name + "\\n")


@task
def produce() -> Doc:
    log("produce")
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    return Doc(rows=[Row(Kind.A, Box(Point(1, when), None)), Row(Kind.A, Box(Point(2, when), "x"))])


@task(depends_on=[produce])
def consume(produce: Doc) -> str:
    log("consume")
    if (HERE / "broken.flag").exists():
        raise RuntimeError("consume is broken")
    row = produce["rows"][1]
    assert type(row) is Row and type(row.box) is Box and type(row.box.corner) is Point, row
    assert row.kind is Kind.A and row.box.corner.when.tzinfo is not None, row
    return f"{row.kind.value}:{row.box.corner.x}:{row.box.label}"


if sys.argv[1] == "journal":
    flow = Flow(consume, journal_path=HERE / "journal.jsonl")
    print(flow.run()["consume"].value)
elif sys.argv[1] == "sqlite-run":
    flow = Flow(consume, store=SqliteStateStore(HERE / "runs.db"))
    results = flow.run()
    print(results["consume"].state.value, flow.snapshot.run_id)
else:
    from flowplan import TaskGraph, execute, plan

    graph = TaskGraph.from_terminals(consume)
    with SqliteStateStore(HERE / "runs.db") as store:
        run = execute(plan(graph, store.load(sys.argv[2])), store=store)
    print(run["consume"].value, type(run["produce"].value["rows"][0].box.corner).__name__)
"""


def _program(tmp_path: Path, *args: str) -> str:
    script = tmp_path / "program.py"
    if not script.exists():
        script.write_text(textwrap.dedent(PROGRAM))
    done = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls.txt").read_text().split()


def test_journal_across_processes(tmp_path: Path) -> None:
    (tmp_path / "broken.flag").write_text("")
    assert _program(tmp_path, "journal") == "None"  # consume failed; produce was journalled
    (tmp_path / "broken.flag").unlink()
    assert _program(tmp_path, "journal") == "a:2:x"
    assert _calls(tmp_path) == ["produce", "consume", "consume"]  # produce replayed, typed


def test_sqlite_store_across_processes(tmp_path: Path) -> None:
    (tmp_path / "broken.flag").write_text("")
    state, run_id = _program(tmp_path, "sqlite-run").split()
    assert state == "failed"
    (tmp_path / "broken.flag").unlink()
    assert _program(tmp_path, "sqlite-resume", run_id) == "a:2:x Point"
    assert _calls(tmp_path) == ["produce", "consume", "consume"]


def test_cli_run_and_resume_with_typed_values(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(
        textwrap.dedent(PROGRAM).split('\nif sys.argv[1] == "journal":')[0]
    )
    (tmp_path / "broken.flag").write_text("")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "FLOWPLAN_STORE"}
        return subprocess.run(
            [sys.executable, "-m", "flowplan", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )

    failed = cli("run", "pipeline.py")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "consume is broken" in failed.stdout
    assert "cannot serialize" not in failed.stdout
    (tmp_path / "broken.flag").unlink()
    resumed = cli("resume", "last")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 reused" in resumed.stdout
    assert _calls(tmp_path) == ["produce", "consume", "consume"]


def test_import_flowplan_does_not_import_cattrs() -> None:
    code = "import sys, flowplan, flowplan.store, flowplan.engine; print('cattrs' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_engine_run_report_and_resume_give_the_declared_type(tmp_path: Path) -> None:
    import asyncio

    from flowplan.engine import build_default_engine

    store = SqliteStateStore(tmp_path / "runs.db")
    engine = build_default_engine(state_store=store)
    seen: list[object] = []

    @engine.task(name="make", dag="typed")
    def make() -> list[Segment]:
        return [SEGMENT]

    @engine.task(name="use", dag="typed", deps=[make])
    def use(make: list[Segment]) -> int:
        seen.append(make)
        if len(seen) == 1:
            raise RuntimeError("use fails once")
        return len(make)

    try:
        first = asyncio.run(engine.run_once("typed"))
        report = engine.get_run_report(first)
        assert report["tasks"]["make"]["result"] == [SEGMENT]
        assert type(report["tasks"]["make"]["result"][0]) is Segment
        second = asyncio.run(engine.resume(first))
        assert engine.get_run_report(second)["tasks"]["use"]["result"] == 1
        assert type(seen[1][0]) is Segment  # type: ignore[index]  # reused, rebuilt
    finally:
        engine.close()
        store.close()


def test_a_class_local_to_a_function_is_resolved_through_the_closure(tmp_path: Path) -> None:
    """This module postpones annotations, so ``-> Local`` is the text "Local" at run time."""
    journal = tmp_path / "journal.jsonl"

    @dataclasses.dataclass(frozen=True)
    class Local:
        x: int

    seen: list[object] = []

    def build(version: int) -> Any:
        @task
        def make() -> Local:
            return Local(3)

        @task(depends_on=[make], version=str(version))  # a new version: it runs again
        def use(make: Local) -> int:
            seen.append(make)
            return make.x

        return use

    first = Flow(build(1), journal_path=journal).run()
    assert first["make"].state is StepState.SUCCEEDED, first["make"].error
    second = Flow(build(2), journal_path=journal).run()
    assert second["make"].cached
    assert seen == [Local(3), Local(3)]
    assert type(seen[1]) is Local
