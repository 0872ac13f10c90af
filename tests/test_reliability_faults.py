"""Hostile task code, hostile state, interrupts and timeouts that must not leak."""

from __future__ import annotations

import _thread
import asyncio
import math
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from flowplan import (
    Dependency,
    FlowplanError,
    InlineExecutor,
    MemoryStore,
    Plan,
    RecordingHook,
    Registry,
    RunFinished,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TaskSucceeded,
    aexecute,
    execute,
    plan,
    task,
)
from flowplan.engine import SqliteStateStore
from flowplan.errors import StoreError
from flowplan.store import JournalStore
from reliability_helpers import within

INTERRUPT_BOUND = 20.0  # seconds: "the run ended at once", with room for a loaded machine
INTERRUPT_HANG = 120.0  # how long a sibling runs if nothing interrupts it


def _run(driver: str, the_plan: Plan, **options: Any) -> Snapshot:
    if driver == "sync":
        return execute(the_plan, **options)
    return asyncio.run(aexecute(the_plan, **options))


# -- BaseException from task code ---------------------------------------------------------


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("body", ["sync", "async"])
def test_base_exceptions_are_recorded_then_reraised_and_resume_works(
    registry: Registry, kind: type[BaseException], driver: str, body: str, tmp_path: Path
) -> None:
    interrupt = [True]

    @task
    def first() -> int:
        return 1

    if body == "async":

        @task(depends_on=[first])
        async def second(first: int) -> int:
            await asyncio.sleep(0)
            if interrupt[0]:
                raise kind
            return first + 1

    else:

        @task(depends_on=[first])
        def second(first: int) -> int:
            if interrupt[0]:
                raise kind
            return first + 1

    @task(depends_on=[second])
    def third(second: int) -> int:
        return second + 1

    graph = TaskGraph.build([first, second, third])
    with SqliteStateStore(tmp_path / "s.db") as store:
        with pytest.raises(kind) as caught:
            _run(driver, plan(graph, run_id="r1"), store=store)
        partial = caught.value.flowplan_snapshot  # type: ignore[attr-defined]
        stored = store.load("r1")
        for snap in (partial, stored):
            assert snap["first"].status is TaskStatus.SUCCEEDED
            assert snap["second"].status is TaskStatus.FAILED
            assert snap["third"].status in {TaskStatus.SKIPPED, TaskStatus.CANCELLED}
        interrupt[0] = False
        resumed = execute(plan(graph, stored, run_id="r2"), store=store)
    assert resumed.value(third) == 3
    assert resumed["first"].attempts == 1  # reused, not re-run


def test_recursion_error_is_an_ordinary_failure(registry: Registry) -> None:
    @task
    def deep() -> int:
        def down(n: int) -> int:
            return down(n + 1) + 1

        return down(0)

    snap = execute(plan(TaskGraph.build([deep])))
    assert snap["deep"].status is TaskStatus.FAILED
    assert snap["deep"].error is not None
    assert snap["deep"].error.type.endswith("RecursionError")


def test_an_unserializable_value_fails_only_its_task_in_a_durable_store(
    registry: Registry, tmp_path: Path
) -> None:
    @task
    def good() -> int:
        return 1

    @task
    def bad() -> object:
        return threading.Lock()

    with SqliteStateStore(tmp_path / "s.db") as store:
        snap = execute(plan(TaskGraph.build([good, bad]), run_id="r"), store=store, fail_fast=False)
        stored = store.load("r")
    assert snap["bad"].status is TaskStatus.FAILED
    assert snap["bad"].error is not None
    assert snap["bad"].error.kind == "serialization"
    assert stored.value("good") == 1


def test_values_are_passed_by_reference_and_stores_keep_the_value_at_success(
    registry: Registry, tmp_path: Path
) -> None:
    """Documented: values are not copied; a durable store holds the value as it succeeded."""

    @task
    def data() -> list[int]:
        return [1, 2]

    @task(depends_on=[data])
    def mutate(data: list[int]) -> int:
        data.append(3)
        return len(data)

    with SqliteStateStore(tmp_path / "s.db") as store:
        snap = execute(plan(TaskGraph.build([data, mutate]), run_id="r"), store=store)
        stored = store.load("r")
    assert snap.value(data) == [1, 2, 3]  # by reference: the in-memory value was mutated
    assert stored.value("data") == [1, 2]  # serialized when ``data`` succeeded


# -- interrupts in the driver --------------------------------------------------------------


def test_keyboard_interrupt_in_the_main_thread_records_state_and_reraises(
    registry: Registry, tmp_path: Path
) -> None:
    release, started = threading.Event(), threading.Event()

    @task
    def quick() -> int:
        return 1

    @task
    def slow() -> int:
        started.set()
        release.wait(10)
        return 2

    @task(depends_on=[quick])
    def interrupter(quick: int) -> int:
        if not release.is_set():  # only the first run is interrupted
            started.wait(10)
            time.sleep(0.1)  # the driver has recorded ``slow`` as running by now
            _thread.interrupt_main()
        return quick

    @task(depends_on=[interrupter])
    def later(interrupter: int) -> int:
        return interrupter

    graph = TaskGraph.build([quick, slow, interrupter, later])
    recorder = RecordingHook()
    began = time.monotonic()
    with SqliteStateStore(tmp_path / "s.db") as store:
        with pytest.raises(KeyboardInterrupt) as caught:
            execute(plan(graph, run_id="r"), store=store, hooks=[recorder], max_workers=4)
        stored = store.load("r")
        assert store.get_run("r").status == "failed"
    release.set()
    assert time.monotonic() - began < 5  # never waited for ``slow``
    partial: Snapshot = caught.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert partial["slow"].status is TaskStatus.FAILED  # running → not succeeded
    assert partial["slow"].error is not None
    assert partial["slow"].error.kind == "interrupted"
    assert stored["slow"].status is TaskStatus.FAILED
    assert stored["quick"].status is TaskStatus.SUCCEEDED
    assert all(r.status.is_terminal for r in partial.records.values())
    assert isinstance(recorder.events[-1], RunFinished)
    resumed = execute(plan(graph, stored), executor=InlineExecutor())
    assert resumed["quick"].attempts == 1
    assert resumed.value(slow) == 2


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("driver", ["sync", "pool", "async"])
def test_an_interrupt_from_a_task_ends_the_run_at_once_and_interrupts_its_siblings(
    registry: Registry, kind: type[BaseException], driver: str, tmp_path: Path
) -> None:
    release, hanging_started = threading.Event(), threading.Event()
    recorder = RecordingHook()

    @task
    def quick() -> int:
        return 1

    @task
    def hanging() -> int:  # a sync sibling that would run for minutes
        hanging_started.set()
        release.wait(INTERRUPT_HANG)
        return 2

    @task
    async def waiting() -> int:  # an async sibling, as long
        while not release.is_set():
            await asyncio.sleep(0.02)
        return 3

    @task
    def interrupter() -> int:
        if not release.is_set():  # only the first run is interrupted
            assert hanging_started.wait(INTERRUPT_BOUND)
            deadline = time.monotonic() + INTERRUPT_BOUND  # quick really finished before
            while not any(
                isinstance(e, TaskSucceeded) and e.task == "quick" for e in list(recorder.events)
            ):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            raise kind
        return 4

    @task(depends_on=[hanging, waiting, interrupter])
    def after(hanging: int, waiting: int, interrupter: int) -> int:
        return hanging + waiting + interrupter

    graph = TaskGraph.build([quick, hanging, waiting, interrupter, after])
    pool = ThreadPoolExecutor(4)  # driver "pool": an executor of the caller's
    try:
        with SqliteStateStore(tmp_path / "s.db") as store:
            began = time.monotonic()
            with pytest.raises(kind) as caught:
                within(
                    lambda: _run(
                        "sync" if driver == "pool" else driver,
                        plan(graph, run_id="r1"),
                        store=store,
                        hooks=[recorder],
                        **({"executor": pool} if driver == "pool" else {"max_workers": 4}),
                    ),
                    INTERRUPT_BOUND,
                )
            assert time.monotonic() - began < INTERRUPT_BOUND  # never waited for the siblings
            stored = store.load("r1")
            assert store.get_run("r1").status == "failed"
            partial: Snapshot = caught.value.flowplan_snapshot  # type: ignore[attr-defined]
            for snap in (partial, stored):
                assert snap["quick"].status is TaskStatus.SUCCEEDED  # finished before the interrupt
                for name in ("interrupter", "hanging", "waiting"):  # not succeeded: they run again
                    record = snap[name]
                    assert record.status is TaskStatus.FAILED, name
                    assert record.error is not None
                    assert record.error.kind == "interrupted", name
                assert snap["after"].status in {TaskStatus.SKIPPED, TaskStatus.CANCELLED}
            assert isinstance(recorder.events[-1], RunFinished)
            release.set()
            resumed = execute(plan(graph, stored, run_id="r2"), store=store)
    finally:
        release.set()  # abandoned siblings end
        pool.shutdown(wait=False)
    assert resumed.value(after) == 9
    assert resumed["quick"].attempts == 1  # reused, not re-run


class _BrokenStore(MemoryStore):
    """A store whose disk fills up after a few writes."""

    def __init__(self, writes: int) -> None:
        super().__init__()
        self.writes = writes

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        self.writes -= 1
        if self.writes < 0:
            raise StoreError("disk full")
        super().save_record(run_id, record)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_store_that_fails_ends_the_run_with_a_clear_error(
    registry: Registry, driver: str
) -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a

    recorder = RecordingHook()
    the_plan = plan(TaskGraph.build([a, b]))
    before = set(threading.enumerate())
    with pytest.raises(StoreError, match="disk full") as caught:
        _run(driver, the_plan, store=_BrokenStore(2), hooks=[recorder])
    assert isinstance(recorder.events[-1], RunFinished)
    partial: Snapshot = caught.value.flowplan_snapshot  # type: ignore[attr-defined]
    assert all(r.status.is_terminal for r in partial.records.values())
    deadline = time.monotonic() + 5  # no worker of this run keeps running
    while set(threading.enumerate()) - before:
        assert time.monotonic() < deadline, set(threading.enumerate()) - before
        time.sleep(0.01)


# -- timeouts that do not leak -------------------------------------------------------------


@pytest.mark.parametrize("idempotent", [False, True])
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_retry_never_overlaps_its_abandoned_attempt_unless_idempotent(
    registry: Registry, idempotent: bool, driver: str
) -> None:
    lock = threading.Lock()
    running, overlaps = [0], [0]

    @task(timeout_s=0.05, retry=1, retry_backoff_base_ms=0, idempotent=idempotent)
    def slow() -> int:
        with lock:
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return 1

    the_plan = plan(TaskGraph.build([slow]))
    began = time.monotonic()
    snap = _run(driver, the_plan)
    elapsed = time.monotonic() - began
    assert snap["slow"].status is TaskStatus.FAILED
    assert snap["slow"].attempts == 2
    if idempotent:
        assert overlaps[0] == 2  # the retry started at once
        assert elapsed < 0.19
    else:
        assert overlaps[0] == 1  # the retry waited for the abandoned attempt
        assert elapsed >= 0.2
    time.sleep(0.25)  # let abandoned attempts end before the next test


def test_a_hanging_task_with_a_timeout_lets_the_process_exit_promptly(tmp_path: Path) -> None:
    script = tmp_path / "hang.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading, time
            from flowplan import Registry, TaskGraph, execute, plan, task
            registry = Registry()

            @task(timeout_s=0.1, registry=registry)
            def hang() -> None:
                threading.Event().wait()

            began = time.monotonic()
            snap = execute(plan(TaskGraph.build([hang])))
            print(snap["hang"].status.value, round(time.monotonic() - began, 1))
            """
        ),
        encoding="utf-8",
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    status, took = done.stdout.split()
    assert status == "failed"
    assert float(took) < 1.0  # about the timeout
    assert time.monotonic() - began < 10  # interpreter start-up included; no blocked exit


# -- corrupt and hostile state -------------------------------------------------------------


class _Marker:
    """Unpickling this creates a marker file: proof that a payload was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.touch, (Path(self.path),))


def _flowplan_db(tmp_path: Path, registry: Registry) -> tuple[Path, TaskGraph]:
    @task
    def one() -> int:
        return 1

    @task
    def two() -> int:
        return 2

    graph = TaskGraph.build([one, two])
    db = tmp_path / "s.db"
    with SqliteStateStore(db) as store:
        execute(plan(graph, run_id="r"), store=store)
    return db, graph


def test_a_pickle_payload_is_never_unpickled_by_the_json_store(
    registry: Registry, tmp_path: Path
) -> None:
    db, graph = _flowplan_db(tmp_path, registry)
    marker = tmp_path / "unpickled"
    with closing(sqlite3.connect(db)) as conn, conn:
        payload = pickle.dumps(_Marker(str(marker)))
        conn.execute("UPDATE tasks SET payload = ? WHERE name = 'one'", (payload,))
    with SqliteStateStore(db) as store:
        snap = store.load("r")
        assert not marker.exists()
        assert snap["one"].status is TaskStatus.FAILED  # documented fallback: runs again
        assert snap["two"].value == 2  # other results are kept
        resumed = execute(plan(graph, snap), executor=InlineExecutor())
    assert resumed.value("one") == 1
    assert resumed["two"].attempts == 1
    assert not marker.exists()


def test_a_pickle_line_in_the_journal_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "j.jsonl"
    journal = JournalStore(path)
    done = TaskRecord("a", TaskStatus.SUCCEEDED, 1, value=5, has_value=True, step_key="k")
    journal.save_record("r", done)
    with path.open("ab") as handle:
        handle.write(pickle.dumps(_Marker(str(marker))) + b"\n")
        handle.write(b'{"format": 1, "key": "k2", "value": {"__flowplan__": ["nope"]}\n')
        handle.write(b"\x00\xff garbage\n{truncated")
    assert JournalStore(path).load({"a": "k", "b": "k2"}).value("a") == 5
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"this is not a database at all" * 100, "not a database"),
        (b"SQLite format 3\x00" + b"\x00" * 84, "cannot open"),
    ],
)
def test_a_file_that_is_not_a_store_is_a_clear_error_and_left_alone(
    tmp_path: Path, content: bytes, needle: str
) -> None:
    db = tmp_path / "x.db"
    db.write_bytes(content)
    with pytest.raises(StoreError, match=needle):
        SqliteStateStore(db)
    assert db.read_bytes() == content


def test_a_newer_schema_and_garbage_rows_keep_other_results(
    registry: Registry, tmp_path: Path
) -> None:
    db, _ = _flowplan_db(tmp_path, registry)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "UPDATE tasks SET retry_delays = 'not json', status = 'bogus' WHERE name='one'"
        )
    with SqliteStateStore(db) as store:
        snap = store.load("r")
    assert snap["one"].status is TaskStatus.FAILED
    assert snap["two"].value == 2
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("INSERT INTO flowplan_schema (version) VALUES (999)")
    with pytest.raises(StoreError, match="newer"):
        SqliteStateStore(db)


# -- bad definitions -----------------------------------------------------------------------


def _spec(name: str, fn: Callable[..., Any], *deps: str, **options: Any) -> TaskSpec[..., Any]:
    return TaskSpec(name=name, fn=fn, deps=tuple(Dependency(d) for d in deps), **options)


def _fan_in() -> list[TaskSpec[..., Any]]:
    def leaf() -> int:
        return 1

    leaves = [_spec(f"leaf{i}", leaf) for i in range(10_000)]

    def sink(**deps: int) -> int:
        return sum(deps.values())

    return [*leaves, _spec("sink", sink, *(s.name for s in leaves), "missing")]


BAD_GRAPHS: dict[str, tuple[Callable[[], list[TaskSpec[..., Any]]], list[str]]] = {
    "cycle": (
        lambda: [_spec("a", lambda b: b, "b"), _spec("b", lambda a: a, "a")],
        ["cycle", "a -> b -> a", "remove one"],  # from the first task declared
    ),
    "self-loop": (lambda: [_spec("a", lambda a: a, "a")], ["cycle", "a -> a", "remove one"]),
    "duplicate": (
        lambda: [_spec("a", lambda: 1), _spec("a", lambda: 2)],
        ["named 'a'", "another name"],
    ),
    "unknown dep": (
        lambda: [_spec("load", lambda: 1), _spec("b", lambda lod: lod, "lod")],
        ["'lod'", "'b'", "load"],
    ),
    "wrong parameter": (
        lambda: [_spec("a", lambda: 1), _spec("b", lambda x: x, "a")],
        ["'b'", "'a'", "parameter"],
    ),
    "bad gate": (
        lambda: [_spec("a", lambda: 1), _spec("b", lambda a: a, "a", when=lambda zz: zz)],
        ["'b'", "when"],
    ),
    "huge fan-in": (_fan_in, ["'sink'", "'missing'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_GRAPHS))
def test_malformed_graphs_get_errors_that_name_the_task_and_the_fix(case: str) -> None:
    build, needles = BAD_GRAPHS[case]
    began = time.monotonic()
    with pytest.raises(FlowplanError) as caught:
        TaskGraph.build(build())
    text = str(caught.value) + "".join(str(e) for e in getattr(caught.value, "exceptions", ()))
    for needle in needles:
        assert needle.lower() in text.lower(), (needle, text[:2000])
    assert time.monotonic() - began < 10


BAD_OPTIONS: dict[str, tuple[Callable[[], object], list[str]]] = {
    "not callable": (lambda: task(name="x")(42), ["42", "function"]),  # type: ignore[arg-type]
    "negative retry": (lambda: task(retry=-1)(lambda: 1), ["retr", "-1"]),
    "nan timeout": (lambda: task(timeout_s=math.nan, name="t")(lambda: 1), ["'t'", "nan"]),
    "inf timeout": (lambda: task(timeout_s=math.inf, name="t")(lambda: 1), ["'t'", "inf"]),
    "negative timeout": (lambda: task(timeout_s=-1, name="t")(lambda: 1), ["'t'", "-1"]),
    "nan backoff": (lambda: task(retry_backoff_base_ms=math.nan)(lambda: 1), ["nan"]),
    "gate not callable": (lambda: task(when=3, name="g")(lambda: 1), ["'g'", "when"]),  # type: ignore[call-overload]
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_options_get_errors_that_name_the_task_and_the_value(
    registry: Registry, case: str
) -> None:
    build, needles = BAD_OPTIONS[case]
    with pytest.raises(FlowplanError) as caught:
        build()
    for needle in needles:
        assert needle.lower() in str(caught.value).lower(), (needle, str(caught.value))
