"""Result caching across runs: keys with parts, explanations, strict mode, write-back."""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowplan import (
    Action,
    Dependency,
    Flow,
    InlineExecutor,
    InvalidOptionError,
    MemoryCache,
    PickleSerializer,
    ResultCache,
    Snapshot,
    SqliteCache,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    UnfingerprintableInputError,
    aexecute,
    execute,
    plan,
    task,
)
from flowplan.cache import describe_changes
from flowplan.keys import CacheKey


# -- helpers -----------------------------------------------------------------------------------
class Calls:
    """A call log closed over by test tasks. Its repr carries an address, so its contents are
    not part of a task's key (a closed-over list's contents would be: they change each call)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str) -> int:
        self.names.append(name)
        return len(self.names)


PIPELINE = """
CALLS = []

def clean(text):
    return text.strip()

def load():
    CALLS.append("load")
    return " Ada "

def tidy(load, suffix="!"):
    CALLS.append("tidy")
    return clean(load) + suffix

def shout(tidy):
    CALLS.append("shout")
    return tidy.upper()
"""


def _module(tmp_path: Path, source: str) -> types.ModuleType:
    """Import ``source`` as a fresh module (a simulated edit of the user's code)."""
    directory = tmp_path / f"edit{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    path = directory / "pipeline.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("flowplan_cache_pipeline", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _graph(
    module: types.ModuleType,
    *,
    cache_load: bool = True,
    version: str | None = None,
) -> TaskGraph:
    return TaskGraph.build(
        [
            TaskSpec("load", module.load, cache=cache_load),
            TaskSpec("tidy", module.tidy, deps=(Dependency("load"),), cache=True, version=version),
            TaskSpec("shout", module.shout, deps=(Dependency("tidy"),), effect="pure"),
        ]
    )


def _run(graph: TaskGraph, cache: ResultCache, **options: Any) -> Snapshot:
    return execute(plan(graph, cache=cache, **options), executor=InlineExecutor())


def _why(graph: TaskGraph, cache: ResultCache, name: str) -> str:
    return plan(graph, cache=cache).explain(name)


# -- hits ----------------------------------------------------------------------------------------
def test_a_second_run_reuses_every_cached_result(tmp_path: Path) -> None:
    module = _module(tmp_path, PIPELINE)
    cache = MemoryCache()
    first = _run(_graph(module), cache)
    assert module.CALLS == ["load", "tidy", "shout"]
    assert not any(record.cached for record in first.records.values())
    assert first["tidy"].reason == "cache miss: no cached result; result stored"

    planned = plan(_graph(module), cache=cache)
    assert planned.to_run == ()
    assert planned.action("shout") is Action.REUSE
    assert planned.explain("tidy").startswith("reuse tidy: cache hit (key ")
    second = execute(planned)
    assert module.CALLS == ["load", "tidy", "shout"]  # nothing ran again
    assert second.value("shout") == "ADA!"
    assert all(record.cached and record.attempts == 0 for record in second.records.values())


def test_a_file_cache_is_a_context_manager_that_closes_its_connection(tmp_path: Path) -> None:
    module = _module(tmp_path, PIPELINE)
    path = tmp_path / "cache.sqlite"
    with SqliteCache(path) as cache:
        _run(_graph(module), cache)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        cache.latest("tidy")  # the connection was closed on leaving the block
    cache.close()  # closing again is harmless
    with SqliteCache(path) as again:  # what was put is committed
        assert plan(_graph(module), cache=again).to_run == ()


@pytest.mark.parametrize("executor", ["inline", "threads", "asyncio"])
def test_run_time_lookups_when_inputs_come_from_an_uncached_task(
    tmp_path: Path, executor: str
) -> None:
    module = _module(tmp_path, PIPELINE)
    graph = _graph(module, cache_load=False)
    cache = MemoryCache()

    def run() -> Snapshot:
        the_plan = plan(graph, cache=cache)
        if executor == "asyncio":
            return asyncio.run(aexecute(the_plan))
        return execute(the_plan, executor=InlineExecutor() if executor == "inline" else None)

    run()
    explained = plan(graph, cache=cache).explain("tidy")
    assert explained == (
        "run tidy: no earlier record; cache looked up when its inputs are known "
        "(`load` comes from 'load', which is not cached)"
    )
    assert "upstream `tidy` is looked up at run time" in plan(graph, cache=cache).explain("shout")
    second = run()
    assert module.CALLS == ["load", "tidy", "shout", "load"]
    assert second["tidy"].cached
    assert second["shout"].cached
    assert second["tidy"].reason is not None
    assert second["tidy"].reason.startswith("cache hit")
    assert not second["load"].cached


def test_a_file_cache_is_shared_by_two_processes(tmp_path: Path) -> None:
    marker = tmp_path / "calls.txt"
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from flowplan import InlineExecutor, SqliteCache, TaskGraph, TaskSpec, execute, plan

            def square(n=12):
                with open({str(marker)!r}, "a") as f:
                    f.write("ran\\n")
                return n * n

            graph = TaskGraph.build([TaskSpec("square", square, cache=True)])
            cache = SqliteCache(sys.argv[1])
            the_plan = plan(graph, cache=cache)
            print(the_plan.explain("square"))
            snap = execute(the_plan, executor=InlineExecutor())
            print(snap.value("square"), snap["square"].cached)
            """
        ),
        encoding="utf-8",
    )
    database = tmp_path / "cache.sqlite"

    def run() -> str:
        done = subprocess.run(
            [sys.executable, str(script), str(database)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = run()
    assert "run square: no earlier record; cache miss: no cached result" in first
    assert "144 False" in first
    second = run()
    assert "reuse square: cache hit (key " in second
    assert "144 True" in second
    assert marker.read_text(encoding="utf-8").count("ran") == 1


def test_the_command_line_runs_and_explains_with_a_cache(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        textwrap.dedent(
            """
            from flowplan import Flow, Registry, task

            registry = Registry()

            @task(cache=True, registry=registry)
            def numbers() -> list[int]:
                return [1, 2, 3]

            @task(depends_on=[numbers], effect="pure", registry=registry)
            def total(numbers: list[int]) -> int:
                return sum(numbers)

            flow = Flow(total, registry=registry)
            """
        ),
        encoding="utf-8",
    )

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flowplan", *args, "--store", "runs.db", "--cache", "c.db"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = cli("explain", "pipe.py")
    assert "run numbers: no earlier record; cache miss: no cached result" in before
    assert not (tmp_path / "c.db").exists()  # explaining never creates the cache
    cli("run", "pipe.py")
    after = cli("explain", "pipe.py")
    assert "0 to run, 2 to reuse" in after
    assert "reuse total: cache hit (key " in after


# -- explained misses -----------------------------------------------------------------------------
def test_a_body_change_is_a_miss_naming_its_code(tmp_path: Path) -> None:
    cache = MemoryCache()
    _run(_graph(_module(tmp_path, PIPELINE)), cache)
    edited = _module(
        tmp_path,
        PIPELINE.replace("return clean(load) + suffix", 'return "~" + clean(load) + suffix'),
    )
    assert _why(_graph(edited), cache, "tidy") == (
        "run tidy: no earlier record; cache miss: its code changed"
    )
    assert _why(_graph(edited), cache, "load").startswith("reuse load: cache hit")
    assert _why(_graph(edited), cache, "shout") == (
        "run shout: no earlier record; cache miss: upstream `tidy` changed"
    )
    assert _run(_graph(edited), cache).value("shout") == "~ADA!"


def test_a_helper_change_is_a_miss_naming_the_helper(tmp_path: Path) -> None:
    cache = MemoryCache()
    _run(_graph(_module(tmp_path, PIPELINE)), cache)
    edited = _module(tmp_path, PIPELINE.replace("text.strip()", "text.strip().lower()"))
    graph = _graph(edited)
    assert _why(graph, cache, "tidy") == (
        "run tidy: no earlier record; cache miss: helper `clean()` changed"
    )
    snap = _run(graph, cache)
    assert snap.value("shout") == "ADA!"  # upper() again: shout runs, its input changed
    assert edited.CALLS == ["tidy", "shout"]
    assert snap["tidy"].reason == "cache miss: helper `clean()` changed; result stored"


def test_an_input_change_is_a_miss_naming_the_parameter(tmp_path: Path) -> None:
    cache = MemoryCache()
    _run(_graph(_module(tmp_path, PIPELINE)), cache)
    edited = _module(tmp_path, PIPELINE.replace('suffix="!"', 'suffix="?"'))
    assert _why(_graph(edited), cache, "tidy") == (
        "run tidy: no earlier record; cache miss: input `suffix` changed"
    )
    # An overridden (reused) upstream value is an input known at plan time.
    graph = _graph(_module(tmp_path, PIPELINE))
    planned = plan(graph, cache=cache, overrides={"load": " Bob "})
    assert (
        planned.explain("tidy") == "run tidy: no earlier record; cache miss: input `load` changed"
    )


def test_a_run_time_input_change_is_explained_on_the_record(tmp_path: Path) -> None:
    cache = MemoryCache()
    _run(_graph(_module(tmp_path, PIPELINE), cache_load=False), cache)
    edited = _module(tmp_path, PIPELINE.replace('return " Ada "', 'return " Bob "'))
    snap = _run(_graph(edited, cache_load=False), cache)
    assert snap.value("shout") == "BOB!"
    assert snap["tidy"].reason == "cache miss: input `load` changed; result stored"
    assert snap["shout"].reason == "cache miss: upstream `tidy` changed; result stored"


def test_an_upstream_change_is_a_miss_naming_the_upstream_task(tmp_path: Path) -> None:
    cache = MemoryCache()
    _run(_graph(_module(tmp_path, PIPELINE)), cache)
    edited = _module(tmp_path, PIPELINE.replace('return " Ada "', 'return " Bob "'))
    planned = plan(_graph(edited), cache=cache)
    assert planned.explain("load") == "run load: no earlier record; cache miss: its code changed"
    assert planned.explain("tidy") == (
        "run tidy: no earlier record; cache miss: upstream `load` changed"
    )
    assert execute(planned).value("shout") == "BOB!"


def test_a_version_change_is_a_miss_and_version_hides_code_edits(tmp_path: Path) -> None:
    cache = MemoryCache()
    _run(_graph(_module(tmp_path, PIPELINE), version="1"), cache)
    edited = _module(tmp_path, PIPELINE.replace("text.strip()", "text.strip().lower()"))
    assert _why(_graph(edited, version="1"), cache, "tidy").startswith("reuse tidy: cache hit")
    assert _why(_graph(edited, version="2"), cache, "tidy") == (
        "run tidy: no earlier record; cache miss: version changed"
    )


def test_the_run_context_is_an_input(registry: object) -> None:
    calls = Calls()

    def greet_fn(ctx: str) -> str:
        calls(ctx)
        return f"hi {ctx}"

    greet = TaskSpec("greet", greet_fn, context_param="ctx", cache=True)
    graph = TaskGraph.build([greet])
    cache = MemoryCache()
    explained = plan(graph, cache=cache).explain("greet")
    assert explained.endswith("(it receives the run's context as `ctx`)")
    snaps = [
        execute(plan(graph, cache=cache), context=ctx, executor=InlineExecutor())
        for ctx in ("ada", "ada", "bob")
    ]
    assert [snap.value(greet) for snap in snaps] == ["hi ada", "hi ada", "hi bob"]
    assert calls.names == ["ada", "bob"]
    assert snaps[1]["greet"].cached
    assert snaps[2]["greet"].reason == "cache miss: input `ctx` changed; result stored"


# -- what is not cached -------------------------------------------------------------------------
def test_strict_mode_refuses_an_input_without_a_fingerprint_at_plan_time(registry: object) -> None:
    @task(cache=True)
    def guarded(lock: object = threading.Lock()) -> int:
        return 1

    graph = TaskGraph.build([guarded])
    with pytest.raises(UnfingerprintableInputError) as caught:
        plan(graph, cache=MemoryCache(strict=True))
    error = caught.value
    assert isinstance(error, TypeError)
    assert (error.task, error.parameter, error.value_type) == ("guarded", "lock", "lock")
    message = str(error)
    assert "task 'guarded': input `lock` cannot be fingerprinted" in message
    assert "Fix: pass plain data" in message

    lenient = MemoryCache()
    planned = plan(graph, cache=lenient)
    assert planned.explain("guarded") == (
        "run guarded: no earlier record; not cached: input `lock` (lock) has no stable fingerprint"
    )
    snap = execute(planned, executor=InlineExecutor())
    assert snap.value(guarded) == 1
    assert snap["guarded"].reason is not None
    assert snap["guarded"].reason.startswith("not cached: input `lock`")
    assert len(lenient) == 0


def test_strict_mode_fails_a_task_whose_run_time_input_has_no_fingerprint(
    registry: object,
) -> None:
    calls = Calls()

    @task
    def source() -> object:
        return object()

    @task(cache=True, depends_on=[source])
    def consume(source: object) -> str:
        calls("consume")
        return "ok"

    graph = TaskGraph.build([source, consume])
    snap = execute(plan(graph, cache=MemoryCache(strict=True)), executor=InlineExecutor())
    record = snap["consume"]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "cache"
    assert "input `source` cannot be fingerprinted" in record.error.message
    assert calls.names == []
    lenient = execute(plan(graph, cache=MemoryCache()), executor=InlineExecutor())
    assert lenient.value(consume) == "ok"
    assert (
        lenient["consume"].reason == "not cached: input `source` (object) has no stable fingerprint"
    )


class _Point:
    def __init__(self, x: int) -> None:
        self.x = x


def test_an_unserializable_value_is_not_cached_and_never_fails_the_task(registry: object) -> None:
    calls = Calls()

    @task(cache=True)
    def make() -> _Point:
        calls("make")
        return _Point(3)

    @task(cache=True, depends_on=[make])
    def read(make: _Point) -> int:
        calls("read")
        return make.x

    graph = TaskGraph.build([make, read])
    cache = MemoryCache()
    for _ in range(2):
        snap = execute(plan(graph, cache=cache), executor=InlineExecutor())
        assert snap.value(read) == 3
        assert snap["make"].status is TaskStatus.SUCCEEDED
        assert snap["make"].reason is not None
        assert snap["make"].reason.startswith("not cached: its value cannot be serialized")
    # ``read`` is keyed by make's key (its value needs no fingerprint) and cached on the first run
    assert calls.names == ["make", "read", "make"]
    assert plan(graph, cache=cache).explain("make") == (
        "run make: no earlier record; cache miss: no cached result"
    )
    pickled = MemoryCache(serializer=PickleSerializer())
    execute(plan(graph, cache=pickled), executor=InlineExecutor())
    assert plan(graph, cache=pickled).action(make) is Action.REUSE


def test_cached_values_are_copies(registry: object) -> None:
    @task(cache=True)
    def items() -> list[int]:
        return [1, 2]

    cache = MemoryCache()
    graph = TaskGraph.build([items])
    execute(plan(graph, cache=cache))
    first = execute(plan(graph, cache=cache)).value(items)
    first.append(3)
    assert execute(plan(graph, cache=cache)).value(items) == [1, 2]


def test_rerun_skips_the_lookup_but_stores_the_new_result(registry: object) -> None:
    calls = Calls()

    @task(cache=True)
    def count() -> int:
        return calls("count")

    graph = TaskGraph.build([count])
    cache = MemoryCache()
    execute(plan(graph, cache=cache))
    assert plan(graph, cache=cache, rerun=[count]).explain("count") == "run count: rerun requested"
    assert execute(plan(graph, cache=cache, rerun=[count])).value(count) == 2
    assert execute(plan(graph, cache=cache)).value(count) == 2  # the rerun's result was stored


def test_tasks_without_cache_are_never_cached(registry: object) -> None:
    calls = Calls()

    @task
    def plain() -> int:
        calls("plain")
        return 1

    cache = MemoryCache()
    graph = TaskGraph.build([plain])
    for _ in range(2):
        assert execute(plan(graph, cache=cache)).value(plain) == 1
    assert len(calls.names) == 2
    assert len(cache) == 0
    assert plan(graph, cache=cache).explain("plain") == "run plain: no earlier record"


def test_a_long_chain_of_run_time_hits_does_not_recurse(registry: object) -> None:
    def step(**upstream: int) -> int:
        return sum(upstream.values()) + 1

    def start() -> int:
        return 0

    specs: list[TaskSpec[..., Any]] = [TaskSpec("t0", start)]
    specs += [
        TaskSpec(f"t{i}", step, deps=(Dependency(f"t{i - 1}"),), cache=True) for i in range(1, 1500)
    ]
    graph = TaskGraph.build(specs)
    cache = MemoryCache()
    execute(plan(graph, cache=cache), executor=InlineExecutor())
    snap = execute(plan(graph, cache=cache), executor=InlineExecutor())
    assert snap.value("t1499") == 1499
    assert sum(r.cached for r in snap.records.values()) == 1499


def test_flow_takes_a_cache(tmp_path: Path, registry: object) -> None:
    calls = Calls()

    @task(cache=True)
    def fetch() -> dict[str, int]:
        calls("fetch")
        return {"a": 1}

    database = tmp_path / "flow-cache.sqlite"
    for _ in range(2):
        with SqliteCache(database) as cache:
            flow = Flow(fetch, cache=cache, max_workers=1)
            assert flow.run()["fetch"].value == {"a": 1}
    assert calls.names == ["fetch"]
    with pytest.raises(InvalidOptionError, match="cache must implement ResultCache"):
        Flow(fetch, cache="cache.sqlite")  # type: ignore[arg-type]


def test_the_engine_takes_a_cache() -> None:
    from flowplan.engine import Engine

    calls = Calls()
    cache = MemoryCache()
    engine = Engine(cache=cache, max_workers=2)

    @engine.task(dag="etl", cache=True)
    def extract() -> list[int]:
        calls("extract")
        return [1, 2, 3]

    @engine.task(dag="etl", deps=["extract"], effect="pure")
    def total(extract: list[int]) -> int:
        calls("total")
        return sum(extract)

    try:
        first = asyncio.run(engine.run_once("etl"))
        second = asyncio.run(engine.run_once("etl"))
        snap = engine.state_store.load(second)
        assert snap.value("total") == 6
        assert snap["total"].cached
        assert engine.state_store.load(first)["total"].reason == (
            "cache miss: no cached result; result stored"
        )
        assert calls.names == ["extract", "total"]
    finally:
        engine.close()
    with pytest.raises(InvalidOptionError, match="cache must implement ResultCache"):
        Engine(cache=object())  # type: ignore[arg-type]


# -- keys and explanations (properties) ---------------------------------------------------------
_PART_NAMES = st.sampled_from(
    ["code", "helper:clean", "helper:load", "input:x", "input:y", "upstream:load", "gate:when"]
)
_PARTS = st.dictionaries(_PART_NAMES, st.sampled_from(["a", "b", "c"]), min_size=1)


@settings(max_examples=200, deadline=None)
@given(old=_PARTS, new=_PARTS)
def test_explanations_name_exactly_the_parts_that_differ(
    old: dict[str, str], new: dict[str, str]
) -> None:
    said = describe_changes(old, new)
    labels = {"code": "its code", "helper": "helper `{}()`", "gate": "gate `{}`"}
    labels |= {"input": "input `{}`", "upstream": "upstream `{}`"}
    for part in set(old) | set(new):
        kind, _, name = part.partition(":")
        mentioned = labels[kind].format(name) in said
        assert mentioned == (old.get(part) != new.get(part)), (part, said)
    assert (CacheKey(old).digest == CacheKey(new).digest) == (old == new)


@settings(max_examples=50, deadline=None)
@given(parts=_PARTS)
def test_key_digests_ignore_part_order(parts: dict[str, str]) -> None:
    reordered = dict(reversed(list(parts.items())))
    assert CacheKey(parts).digest == CacheKey(reordered).digest
    assert describe_changes(None, parts) == "no cached result"


def _add(**upstream: int) -> int:
    return sum(upstream.values()) + 1


@st.composite
def _dags(draw: st.DrawFn) -> tuple[list[list[int]], list[bool]]:
    size = draw(st.integers(1, 8))
    parents = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(size)
    ]
    cached = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return parents, cached


def _random_graph(parents: list[list[int]], cached: list[bool], bumped: int | None) -> TaskGraph:
    return TaskGraph.build(
        [
            TaskSpec(
                f"t{i}",
                _add,
                deps=tuple(Dependency(f"t{p}") for p in ps),
                cache=cached[i],
                version="2" if i == bumped else "1",
            )
            for i, ps in enumerate(parents)
        ]
    )


@settings(max_examples=30, deadline=None)
@given(dag=_dags(), data=st.data())
def test_cached_runs_agree_with_uncached_runs(
    dag: tuple[list[list[int]], list[bool]], data: st.DataObject
) -> None:
    parents, cached = dag
    graph = _random_graph(parents, cached, None)
    expected = execute(plan(graph), executor=InlineExecutor())
    cache = MemoryCache()
    execute(plan(graph, cache=cache), executor=InlineExecutor())
    again = execute(plan(graph, cache=cache), executor=InlineExecutor())
    for name, record in again.records.items():
        assert record.value == expected.value(name)
        assert record.cached == cached[int(name[1:])]  # every eligible task is a hit
    # A version bump misses exactly that task; descendants reading it by key miss too.
    bumped = data.draw(st.integers(0, len(parents) - 1))
    planned = plan(_random_graph(parents, cached, bumped), cache=cache)
    snap = execute(planned, executor=InlineExecutor())
    for name, record in snap.records.items():
        assert record.value == expected.value(name)
    assert not snap[f"t{bumped}"].cached
    if cached[bumped]:  # explained at plan time, or on the record when looked up at run time
        said = f"{planned.explain(f't{bumped}')} {snap[f't{bumped}'].reason}"
        assert "cache miss: version changed" in said


def test_a_cache_needs_the_protocol_methods() -> None:
    assert isinstance(MemoryCache(), ResultCache)
    assert not isinstance(object(), ResultCache)
