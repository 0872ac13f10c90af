"""flowrun's lower-level public API on ``flowplan.engine``: serializers, specs, registries,
state stores — the behaviours flowrun 0.1.0's own tests pin down, plus custom backends and
serializers written only against flowrun's documented protocols."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import flowplan.engine as flowrun
from flowplan.errors import InvalidOptionError

# -- serializers (flowrun's ResultSerializer: serialize / deserialize) -----------------------


class Base64Json:
    """A user serializer written to flowrun's protocol only: no dumps/loads."""

    def __init__(self) -> None:
        self.serialized: list[object] = []

    def serialize(self, obj: Any) -> bytes:
        self.serialized.append(obj)
        return base64.b64encode(json.dumps(obj).encode())

    def deserialize(self, data: bytes) -> Any:
        return json.loads(base64.b64decode(data))


def test_builtin_serializers_offer_flowruns_methods() -> None:
    json_ser, pickle_ser = flowrun.JsonSerializer(), flowrun.PickleSerializer()
    assert isinstance(json_ser, flowrun.ResultSerializer)
    assert isinstance(pickle_ser, flowrun.ResultSerializer)
    value = {"nums": [1, 2, 3], "flag": True}
    assert json_ser.deserialize(json_ser.serialize(value)) == value
    assert json.loads(json_ser.serialize(value)) == value  # plain data stays plain JSON
    with_set = {"set_data": {1, 2, 3}}
    data = pickle_ser.serialize(with_set)
    assert pickle.loads(data) == with_set
    assert pickle_ser.deserialize(data) == with_set
    assert flowrun.PickleSerializer(protocol=2).serialize(1)[:2] == b"\x80\x02"


def test_a_serializer_with_only_serialize_and_deserialize_plugs_into_sqlite(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    serializer = Base64Json()
    assert not hasattr(serializer, "dumps")
    engine = flowrun.build_default_engine(
        state_store=flowrun.SqliteStateStore(db, serializer=serializer)
    )

    @engine.task(name="extract", dag="etl")
    def extract() -> dict[str, list[int]]:
        return {"rows": [1, 2, 3]}

    @engine.task(name="total", dag="etl", deps=[extract])
    def total(extract: dict[str, list[int]]) -> int:
        return sum(extract["rows"])

    async def main() -> str:
        async with engine:
            return await engine.run_once("etl")

    run_id = asyncio.run(main())
    assert {"rows": [1, 2, 3]} in serializer.serialized
    assert isinstance(engine.state_store, flowrun.SqliteStateStore)
    engine.state_store.close()

    with closing(sqlite3.connect(db)) as conn, conn:  # the bytes on disk are the user's format
        payloads = dict(conn.execute("SELECT name, payload FROM tasks WHERE run_id = ?", (run_id,)))
    assert json.loads(base64.b64decode(payloads["total"])) == 6

    reopened_store = flowrun.SqliteStateStore(db, serializer=Base64Json())
    reopened = flowrun.build_default_engine(state_store=reopened_store)
    reopened.task(name="extract", dag="etl")(extract.fn)
    report = reopened.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["extract"]["result"] == {"rows": [1, 2, 3]}
    assert report["tasks"]["total"]["result"] == 6
    reopened.close()
    reopened_store.close()  # an engine never closes a store passed in


def test_a_user_serializer_that_cannot_encode_fails_only_its_task(tmp_path: Path) -> None:
    store = flowrun.SqliteStateStore(tmp_path / "runs.db", serializer=Base64Json())
    engine = flowrun.build_default_engine(state_store=store)

    @engine.task(name="fine", dag="d")
    def fine() -> int:
        return 1

    @engine.task(name="odd", dag="d")
    def odd() -> set[int]:
        return {1, 2}  # json.dumps refuses sets

    async def main() -> str:
        async with engine:
            return await engine.run_once("d")

    report = engine.get_run_report(asyncio.run(main()))
    store.close()
    assert report["tasks"]["fine"]["status"] == "SUCCESS"
    assert report["tasks"]["odd"]["status"] == "FAILED"
    error = report["tasks"]["odd"]["error"]
    assert "Base64Json.serialize cannot encode a set" in error


def test_a_serializer_returning_text_fails_the_task_with_the_reason(tmp_path: Path) -> None:
    class Texty:
        def serialize(self, obj: Any) -> bytes:
            return json.dumps(obj)  # type: ignore[return-value]  # the mistake under test

        def deserialize(self, data: bytes) -> Any:
            return json.loads(data)

    store = flowrun.SqliteStateStore(tmp_path / "runs.db", serializer=Texty())
    engine = flowrun.build_default_engine(state_store=store)

    @engine.task(name="one")
    def one() -> int:
        return 1

    async def main() -> str:
        async with engine:
            return await engine.run_once("default")

    report = engine.get_run_report(asyncio.run(main()))
    store.close()
    assert report["tasks"]["one"]["status"] == "FAILED"
    assert "Texty.serialize returned str, not bytes" in report["tasks"]["one"]["error"]


def test_a_serializer_with_neither_protocol_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match=r"serialize\(obj\) -> bytes") as caught:
        flowrun.SqliteStateStore(tmp_path / "x.db", serializer=object())  # type: ignore[arg-type]
    assert caught.value.option == "serializer"
    assert not (tmp_path / "x.db").exists()


SLOW_CALLS: list[int] = []  # module level: a closure's list would be part of the cache key


def test_caches_accept_flowruns_serializer_protocol() -> None:
    from flowplan import MemoryCache

    serializer = Base64Json()
    engine = flowrun.Engine(cache=MemoryCache(serializer=serializer))

    @engine.task(name="slow", cache=True)
    def slow() -> list[int]:
        SLOW_CALLS.append(1)
        return [1, 2]

    async def main() -> list[str]:
        async with engine:
            return [await engine.run_once("default") for _ in range(2)]

    _, second = asyncio.run(main())
    assert SLOW_CALLS == [1]  # the second run read the cached bytes back
    assert serializer.serialized == [[1, 2]]
    assert engine.get_run_report(second)["tasks"]["slow"]["result"] == [1, 2]


# -- state stores: flowrun's transition rules (its test_state_transitions, test_sqlite_store) -


@pytest.fixture(params=["InMemoryStateStore", "StateStore"])
def store(request: pytest.FixtureRequest) -> flowrun.InMemoryStateStore:
    cls: type[flowrun.InMemoryStateStore] = getattr(flowrun, request.param)
    return cls()


def test_the_in_memory_store_satisfies_the_protocol(store: flowrun.InMemoryStateStore) -> None:
    assert isinstance(store, flowrun.StateStoreProtocol)
    assert flowrun.StateStore is flowrun.InMemoryStateStore


def test_create_and_get_run(store: flowrun.InMemoryStateStore) -> None:
    created = store.create_run("r1", "dag", ["a", "b"])
    assert isinstance(created, flowrun.RunRecord)
    rec = store.get_run("r1")
    assert (rec.run_id, rec.dag_name, list(rec.tasks)) == ("r1", "dag", ["a", "b"])
    assert rec.tasks["a"] == flowrun.TaskRunRecord("a")  # PENDING, attempt 0, no times
    assert rec.tasks["a"].status == "PENDING"
    assert rec.finished_at is None
    assert rec.created_at > 0


@pytest.mark.parametrize(
    ("steps", "target"),
    [
        ((), "SUCCESS"),  # PENDING -> SUCCESS
        ((), "FAILED"),  # PENDING -> FAILED
        (("RUNNING", "SUCCESS"), "SUCCESS"),  # a double success
        (("RUNNING", "SUCCESS"), "RUNNING"),  # SUCCESS is final
        (("SKIPPED",), "RUNNING"),  # SKIPPED is final
        (("RUNNING",), "SKIPPED"),  # a running task is not skipped
        (("RUNNING",), "PENDING"),  # only a FAILED task is retried
    ],
)
def test_invalid_transitions_raise(
    store: flowrun.InMemoryStateStore, steps: tuple[str, ...], target: str
) -> None:
    store.create_run("r1", "dag", ["t1"])
    moves = {
        "RUNNING": lambda: store.mark_running("r1", "t1"),
        "SUCCESS": lambda: store.mark_success("r1", "t1", result="ok"),
        "FAILED": lambda: store.mark_failed("r1", "t1", err="boom"),
        "SKIPPED": lambda: store.mark_skipped("r1", "t1", reason="upstream"),
        "PENDING": lambda: store.mark_retry("r1", "t1"),
    }
    for step in steps:
        moves[step]()
    before = store.get_run("r1").tasks["t1"]
    with pytest.raises(RuntimeError, match="Invalid state transition for task 't1'") as caught:
        moves[target]()
    assert isinstance(caught.value, flowrun.InvalidTransitionError)
    assert (caught.value.current, caught.value.target) == (before.status, target)
    assert store.get_run("r1").tasks["t1"] == before  # nothing changed


def test_running_success_and_failure_record_times_attempts_and_results(
    store: flowrun.InMemoryStateStore,
) -> None:
    store.create_run("r1", "dag", ["ok", "bad", "skip"])
    store.mark_running("r1", "ok")
    running = store.get_run("r1").tasks["ok"]
    assert (running.status, running.attempt) == ("RUNNING", 1)
    assert running.started_at is not None
    assert running.finished_at is None
    store.mark_success("r1", "ok", {"val": 42})
    ok = store.get_run("r1").tasks["ok"]
    assert (ok.status, ok.result, ok.error) == ("SUCCESS", {"val": 42}, None)
    assert ok.finished_at is not None
    assert ok.started_at is not None
    assert ok.finished_at >= ok.started_at

    store.mark_running("r1", "bad")
    store.mark_failed("r1", "bad", "oops")
    bad = store.get_run("r1").tasks["bad"]
    assert (bad.status, bad.error) == ("FAILED", "oops")
    assert bad.finished_at is not None

    store.mark_skipped("r1", "skip", "UPSTREAM_FAILED")
    skip = store.get_run("r1").tasks["skip"]
    assert (skip.status, skip.error, skip.attempt) == ("SKIPPED", "UPSTREAM_FAILED", 0)


def test_retry_resets_to_pending_and_counts_the_next_attempt(
    store: flowrun.InMemoryStateStore,
) -> None:
    store.create_run("r1", "dag", ["t"])
    store.mark_running("r1", "t")
    store.mark_failed("r1", "t", "err")
    store.mark_retry("r1", "t")
    tr = store.get_run("r1").tasks["t"]
    assert (tr.status, tr.error, tr.finished_at, tr.attempt) == ("PENDING", None, None, 1)
    store.mark_running("r1", "t")
    store.mark_success("r1", "t", 7)
    assert store.get_run("r1").tasks["t"].attempt == 2


def test_finalize_run_if_done_and_clear_result(store: flowrun.InMemoryStateStore) -> None:
    store.create_run("r1", "dag", ["a", "b"])
    store.mark_running("r1", "a")
    store.mark_success("r1", "a", "data")
    store.finalize_run_if_done("r1")
    assert store.get_run("r1").finished_at is None  # b is still PENDING
    store.clear_result("r1", "a")
    assert store.get_run("r1").tasks["a"].result is None
    assert store.get_run("r1").tasks["a"].status == "SUCCESS"
    store.mark_skipped("r1", "b", "skip")
    store.finalize_run_if_done("r1")
    assert store.get_run("r1").finished_at is not None


def test_resumed_runs_copy_successes_and_reset_the_rest(
    store: flowrun.InMemoryStateStore,
) -> None:
    store.create_run("r1", "dag", ["A", "B", "C"])
    store.mark_running("r1", "A")
    store.mark_success("r1", "A", "a-result")
    store.mark_running("r1", "B")
    store.mark_failed("r1", "B", "boom")
    first_a = store.get_run("r1").tasks["A"]

    store.create_resumed_run("r2", "r1", "dag", ["A", "B", "C"])
    r2 = store.get_run("r2")
    assert r2.tasks["A"] == first_a  # status, attempt, times and result copied
    assert r2.tasks["B"] == flowrun.TaskRunRecord("B")
    assert r2.tasks["C"].status == "PENDING"
    assert store.get_run("r1").tasks["B"].status == "FAILED"  # the old run is untouched

    store.create_resumed_run("r3", "r1", "dag", ["A", "B"], reset_tasks={"A"})
    assert store.get_run("r3").tasks["A"].status == "PENDING"


def test_unknown_runs_and_tasks_are_key_errors(store: flowrun.InMemoryStateStore) -> None:
    with pytest.raises(KeyError, match="no run 'nope'"):
        store.get_run("nope")
    store.create_run("r1", "dag", ["extract"])
    with pytest.raises(KeyError, match="did you mean 'extract'"):
        store.mark_running("r1", "extrct")
    with pytest.raises(
        KeyError, match="no run 'r2' in this InMemoryStateStore; known names are 'r1'"
    ):
        store.create_resumed_run("r2", "r2", "dag", ["extract"])


def test_a_read_run_never_changes_under_its_reader(store: flowrun.InMemoryStateStore) -> None:
    store.create_run("r1", "dag", ["t"])
    seen = store.get_run("r1")
    store.mark_running("r1", "t")
    assert seen.tasks["t"].status == "PENDING"
    seen.tasks["t"].status = "SUCCESS"  # a reader's edit does not bypass the rules
    with pytest.raises(RuntimeError, match="RUNNING -> RUNNING"):
        store.mark_running("r1", "t")


# -- TaskSpec and TaskRegistry (flowrun's test_registry, test_task_decorator) ----------------


def _noop() -> None:
    return None


def test_registry_collection_protocol() -> None:
    reg = flowrun.TaskRegistry()
    assert len(reg) == 0
    spec_a = flowrun.TaskSpec(name="a", func=_noop)
    reg.register(spec_a)
    reg.register(flowrun.TaskSpec(name="b", func=_noop))
    assert "a" in reg
    assert "missing" not in reg
    assert len(reg) == 2
    assert sorted(reg) == ["a", "b"]
    assert reg["a"] is spec_a
    assert reg.get("a") is spec_a
    assert "a" in repr(reg)
    assert "b" in repr(reg)


def test_registry_lookups_and_duplicates_fail_like_flowrun() -> None:
    reg = flowrun.TaskRegistry()
    with pytest.raises(KeyError, match="not registered"):
        reg.get("nope")
    reg.register(flowrun.TaskSpec(name="dup", func=_noop))
    with pytest.raises(ValueError, match="Duplicate task name: 'dup'"):
        reg.register(flowrun.TaskSpec(name="dup", func=_noop))
    with pytest.raises(KeyError, match="did you mean 'dup'"):
        reg["dpu"]


def test_registry_task_specs_is_read_only_and_clear_empties_it() -> None:
    reg = flowrun.TaskRegistry()
    reg.register(flowrun.TaskSpec(name="a", func=_noop))
    view = reg.task_specs
    assert list(view) == ["a"]
    assert view["a"].name == "a"
    with pytest.raises(TypeError):
        view["b"] = flowrun.TaskSpec(name="b", func=_noop)  # type: ignore[index]
    reg.clear()
    assert len(reg) == 0
    assert "a" not in reg
    assert dict(reg.task_specs) == {}


def test_activation_is_per_context_and_the_default_engine_activates_nothing() -> None:
    reg = flowrun.TaskRegistry()
    token = reg.activate()
    try:
        assert flowrun.TaskRegistry.active() is reg
    finally:
        flowrun.TaskRegistry.deactivate(token)
    with pytest.raises(LookupError, match="No active"):
        flowrun.TaskRegistry.active()
    flowrun.build_default_engine().close()
    with pytest.raises(LookupError, match="No active"):
        flowrun.TaskRegistry.active()


def test_a_task_spec_has_flowruns_fields_and_reads_flags_from_the_signature() -> None:
    @dataclass(frozen=True)
    class Deps:
        base: str

    def plain() -> int:
        return 1

    def with_context(context: flowrun.RunContext[Deps], extract: int) -> int:
        return extract

    def optional_context(extract: int, ctx: flowrun.RunContext[Deps] | None = None) -> int:
        return extract

    def combine(upstream: dict[str, object]) -> object:
        return upstream

    async def fetch() -> int:
        return 1

    spec = flowrun.TaskSpec(name="plain", func=plain)
    assert (spec.deps, spec.timeout_s, spec.retries, spec.retain_result, spec.dag) == (
        [], 30.0, 0, True, None
    )  # fmt: skip
    assert (spec.accepts_context, spec.requires_context, spec.accepts_upstream) == (
        False, False, False
    )  # fmt: skip
    needs = flowrun.TaskSpec(name="t", func=with_context, deps=["extract", "other"])
    assert (needs.accepts_context, needs.requires_context) == (True, True)
    assert needs.named_deps == ["extract"]  # "other" orders the task only
    maybe = flowrun.TaskSpec(name="t", func=optional_context, deps=["extract"])
    assert (maybe.accepts_context, maybe.requires_context) == (True, False)
    up = flowrun.TaskSpec(name="c", func=combine, deps=["a", "b"])
    assert (up.accepts_upstream, up.named_deps) == (True, [])
    assert flowrun.TaskSpec(name="f", func=fetch).is_async()
    assert not spec.is_async()
    with pytest.raises(InvalidOptionError, match=r"write deps=\['a'\]"):
        flowrun.TaskSpec(
            name="x", func=plain, deps="a"
        )  # a str is an Iterable[str]: refused when built


def test_decorated_tasks_read_back_as_flowrun_specs() -> None:
    engine = flowrun.build_default_engine()

    @engine.task(name="extract", dag="etl")
    def extract(context: flowrun.RunContext[int]) -> list[int]:
        return [context.deps]

    @engine.task(name="load", dag="etl", deps=[extract, "side"], retries=2, timeout_s=5)
    def load(extract: list[int]) -> int:
        return sum(extract)

    @engine.task(name="side", dag="etl", retain_result=False)
    def side() -> None:
        return None

    spec = engine.registry["load"]
    assert isinstance(spec, flowrun.TaskSpec)
    assert spec.func is load.fn
    assert (spec.name, spec.deps, spec.named_deps) == ("load", ["extract", "side"], ["extract"])
    assert (spec.retries, spec.timeout_s, spec.dag, spec.retain_result) == (2, 5, "etl", True)
    assert engine.registry["side"].retain_result is False
    first = engine.registry["extract"]
    assert (first.accepts_context, first.requires_context, first.timeout_s) == (True, True, None)
    assert engine.registry.get("extract") is first  # one view per task
    assert engine.registry.spec("load") is load  # the core spec the engine runs
    engine.close()


def test_hand_built_specs_register_and_run() -> None:
    registry = flowrun.TaskRegistry()
    calls: list[str] = []

    def extract() -> list[int]:
        calls.append("extract")
        return [1, 2, 3]

    def total(extract: list[int]) -> int:
        calls.append("total")
        return sum(extract)

    def combine(upstream: dict[str, object]) -> list[str]:
        return sorted(upstream)

    registry.register(flowrun.TaskSpec(name="extract", func=extract, dag="etl"))
    registry.register(flowrun.TaskSpec(name="total", func=total, deps=["extract"], dag="etl"))
    registry.register(
        flowrun.TaskSpec(name="combine", func=combine, deps=["extract", "total"]), dag="etl"
    )
    engine = flowrun.build_default_engine(registry=registry)
    assert engine.list_tasks("etl") == ["extract", "total", "combine"]

    async def main() -> str:
        async with engine:
            return await engine.run_once("etl")

    report = engine.get_run_report(asyncio.run(main()))
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["total"]["result"] == 6
    assert report["tasks"]["combine"]["result"] == ["extract", "total"]
    assert calls == ["extract", "total"]
    assert registry.spec("total").timeout_s == 30.0  # flowrun's TaskSpec default


def test_a_hand_built_spec_is_checked_like_a_decorated_task() -> None:
    registry = flowrun.TaskRegistry()
    with pytest.raises(InvalidOptionError, match="retries must be a whole number >= 0"):
        registry.register(flowrun.TaskSpec(name="t", func=_noop, retries=-1))
    assert len(registry) == 0


# -- a user's own backend, written only against flowrun's documented protocol ----------------

_ALLOWED = {
    "PENDING": {"RUNNING", "SKIPPED"},
    "RUNNING": {"SUCCESS", "FAILED"},
    "FAILED": {"PENDING"},
    "SUCCESS": set(),
    "SKIPPED": set(),
}


class DictBackend:
    """Keeps runs as plain dicts (as a Redis hash would), enforcing flowrun's transitions and
    logging every call; imports nothing from flowplan but flowrun's record types."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, ...]] = []

    def _task(self, run_id: str, task: str, target: str) -> dict[str, Any]:
        row: dict[str, Any] = self.data[run_id]["tasks"][task]
        if target not in _ALLOWED[row["status"]]:
            raise RuntimeError(
                f"Invalid state transition for task {task!r}: {row['status']} -> {target}"
            )
        row["status"] = target
        return row

    def create_run(self, run_id: str, dag_name: str, task_names: list[str]) -> flowrun.RunRecord:
        self.calls.append(("create_run", run_id, dag_name, *task_names))
        self.data[run_id] = {
            "dag": dag_name,
            "created": time.time(),
            "finished": None,
            "tasks": {t: _row() for t in task_names},
        }
        return self.get_run(run_id)

    def create_resumed_run(
        self,
        run_id: str,
        prev_run_id: str,
        dag_name: str,
        task_names: list[str],
        reset_tasks: set[str] | None = None,
    ) -> flowrun.RunRecord:
        self.calls.append(("create_resumed_run", run_id, prev_run_id, *sorted(reset_tasks or ())))
        prev = self.data[prev_run_id]["tasks"]
        tasks = {}
        for t in task_names:
            keep = t in prev and prev[t]["status"] == "SUCCESS" and t not in (reset_tasks or ())
            tasks[t] = dict(prev[t]) if keep else _row()
        self.data[run_id] = {
            "dag": dag_name,
            "created": time.time(),
            "finished": None,
            "tasks": tasks,
        }
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> flowrun.RunRecord:
        run = self.data[run_id]  # KeyError when unknown, as the protocol says
        return flowrun.RunRecord(
            run_id=run_id,
            dag_name=run["dag"],
            tasks={t: flowrun.TaskRunRecord(task_name=t, **row) for t, row in run["tasks"].items()},
            created_at=run["created"],
            finished_at=run["finished"],
        )

    def mark_running(self, run_id: str, task_name: str) -> None:
        self.calls.append(("mark_running", task_name))
        row = self._task(run_id, task_name, "RUNNING")
        row["started_at"] = time.time()
        row["attempt"] += 1

    def mark_success(self, run_id: str, task_name: str, result: object) -> None:
        self.calls.append(("mark_success", task_name))
        row = self._task(run_id, task_name, "SUCCESS")
        row.update(result=result, finished_at=time.time())

    def mark_failed(self, run_id: str, task_name: str, err: str) -> None:
        self.calls.append(("mark_failed", task_name))
        self._task(run_id, task_name, "FAILED").update(error=err, finished_at=time.time())

    def mark_skipped(self, run_id: str, task_name: str, reason: str) -> None:
        self.calls.append(("mark_skipped", task_name))
        self._task(run_id, task_name, "SKIPPED").update(error=reason, finished_at=time.time())

    def mark_retry(self, run_id: str, task_name: str) -> None:
        self.calls.append(("mark_retry", task_name))
        self._task(run_id, task_name, "PENDING").update(error=None, finished_at=None)

    def clear_result(self, run_id: str, task_name: str) -> None:
        self.calls.append(("clear_result", task_name))
        self.data[run_id]["tasks"][task_name]["result"] = None

    def finalize_run_if_done(self, run_id: str) -> None:
        self.calls.append(("finalize_run_if_done", run_id))
        run = self.data[run_id]
        if all(r["status"] in ("SUCCESS", "FAILED", "SKIPPED") for r in run["tasks"].values()):
            run["finished"] = time.time()

    def task_calls(self, task: str) -> list[str]:
        return [c[0] for c in self.calls if c[1:] == (task,)]


def _row() -> dict[str, Any]:
    return {
        "attempt": 0,
        "status": "PENDING",
        "started_at": None,
        "finished_at": None,
        "error": None,
        "result": None,
    }


BROKEN: set[str] = set()  # tasks that fail while named here
RAN: list[str] = []


def _etl(engine: flowrun.Engine) -> None:
    flaky_attempts: list[int] = []

    @engine.task(name="extract", dag="etl", retain_result=False)
    def extract() -> list[int]:
        RAN.append("extract")
        return [1, 2, 3]

    @engine.task(name="transform", dag="etl", deps=[extract], retries=1)
    def transform(extract: list[int]) -> int:
        RAN.append("transform")
        flaky_attempts.append(1)
        if len(flaky_attempts) == 1:
            raise ConnectionError("flaky network")
        return sum(extract)

    @engine.task(name="load", dag="etl", deps=[transform])
    def load(transform: int) -> str:
        RAN.append("load")
        return f"loaded {transform}"

    @engine.task(name="side", dag="etl")
    def side() -> int:
        RAN.append("side")
        if "side" in BROKEN:
            raise RuntimeError("side broke")
        return 1

    @engine.task(name="after_side", dag="etl", deps=[side])
    def after_side(side: int) -> int:
        RAN.append("after_side")
        return side + 1


def _run(engine: flowrun.Engine, call: Any) -> str:
    async def main() -> str:
        result: str = await call
        return result

    return asyncio.run(main())


@pytest.fixture
def backend() -> DictBackend:
    BROKEN.clear()
    RAN.clear()
    return DictBackend()


def test_a_users_backend_drives_the_engine_and_feeds_the_report(backend: DictBackend) -> None:
    assert isinstance(backend, flowrun.StateStoreProtocol)
    engine = flowrun.build_default_engine(state_store=backend)
    _etl(engine)
    BROKEN.add("side")

    run_id = _run(engine, engine.run_once("etl"))

    row = backend.data[run_id]["tasks"]
    assert backend.calls[0] == ("create_run", run_id, "etl", *engine.list_tasks("etl"))
    assert backend.task_calls("transform") == [  # a retry, through flowrun's transitions
        "mark_running", "mark_failed", "mark_retry", "mark_running", "mark_success"
    ]  # fmt: skip
    assert row["transform"]["attempt"] == 2
    assert row["transform"]["result"] == 6
    assert row["side"]["status"] == "FAILED"
    assert row["side"]["error"] == "RuntimeError: side broke"
    assert row["after_side"]["status"] == "SKIPPED"
    assert "side" in row["after_side"]["error"]
    assert backend.task_calls("after_side") == ["mark_skipped"]
    assert row["extract"]["status"] == "SUCCESS"
    assert row["extract"]["result"] is None  # retain_result=False: cleared once consumed
    assert "clear_result" in backend.task_calls("extract")
    assert backend.calls[-1] == ("finalize_run_if_done", run_id)
    assert backend.data[run_id]["finished"] is not None

    report = engine.get_run_report(run_id)
    assert report["status"] == "FAILED"
    assert report["dag_name"] == "etl"
    assert report["created_at"] == backend.data[run_id]["created"]
    assert report["finished_at"] == backend.data[run_id]["finished"]
    assert report["tasks"]["transform"] == {
        "status": "SUCCESS",
        "attempt": 2,
        "started_at": row["transform"]["started_at"],
        "finished_at": row["transform"]["finished_at"],
        "error": None,
        "result": 6,
    }
    assert report["tasks"]["side"]["error"] == "RuntimeError: side broke"
    assert report["tasks"]["after_side"]["status"] == "SKIPPED"
    assert report["tasks"]["load"]["result"] == "loaded 6"
    engine.close()


def test_resume_with_a_users_backend_reuses_what_succeeded(backend: DictBackend) -> None:
    engine = flowrun.build_default_engine(state_store=backend)
    _etl(engine)
    BROKEN.add("side")
    first = _run(engine, engine.run_once("etl"))
    BROKEN.clear()
    RAN.clear()

    second = _run(engine, engine.resume(first))

    assert ("create_resumed_run", second, first, "after_side", "side") in backend.calls
    assert RAN == ["side", "after_side"]
    rows = backend.data[second]["tasks"]
    assert rows["load"] == backend.data[first]["tasks"]["load"]  # copied by the backend
    report = engine.get_run_report(second)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["after_side"]["result"] == 2

    RAN.clear()
    third = _run(engine, engine.resume(second, from_tasks=["load"]))
    assert RAN == ["load"]
    assert engine.get_run_report(third)["tasks"]["load"]["attempt"] == 1
    engine.close()


def test_runs_made_elsewhere_in_a_users_backend_report_and_resume(backend: DictBackend) -> None:
    """flowrun's own resume test: a run written straight into the store, then resumed."""
    backend.create_run("old", "diamond", ["A", "B", "C", "D"])
    backend.mark_running("old", "A")
    backend.mark_success("old", "A", "a-ok")
    backend.mark_running("old", "B")
    backend.mark_failed("old", "B", "boom")
    backend.mark_skipped("old", "C", "UPSTREAM_FAILED")
    backend.mark_skipped("old", "D", "UPSTREAM_FAILED")
    backend.finalize_run_if_done("old")

    registry = flowrun.TaskRegistry()
    ran: list[str] = []

    def step(name: str, *deps: str) -> None:
        def body(**values: object) -> str:
            ran.append(name)
            return f"{name.lower()}-ok"

        registry.register(flowrun.TaskSpec(name=name, func=body, deps=list(deps), dag="diamond"))

    step("A")
    step("B", "A")
    step("C", "A")
    step("D", "B", "C")
    engine = flowrun.build_default_engine(state_store=backend, registry=registry)

    old = engine.get_run_report("old")
    assert old["status"] == "FAILED"
    assert old["tasks"]["B"]["error"] == "boom"  # the text the store kept, as it is
    assert old["tasks"]["C"]["error"] == "UPSTREAM_FAILED"
    assert old["tasks"]["A"]["result"] == "a-ok"

    new = _run(engine, engine.resume("old"))
    assert sorted(ran) == ["B", "C", "D"]
    report = engine.get_run_report(new)
    assert report["status"] == "SUCCESS"
    assert {n: t["status"] for n, t in report["tasks"].items()} == dict.fromkeys("ABCD", "SUCCESS")
    assert report["tasks"]["A"]["result"] == "a-ok"
    engine.close()


def test_flowruns_in_memory_store_drives_the_engine() -> None:
    store = flowrun.InMemoryStateStore()
    engine = flowrun.build_default_engine(state_store=store)

    @engine.task(name="a", dag="d", retries=1)
    def a() -> int:
        return 1

    @engine.task(name="b", dag="d", deps=[a])
    def b(a: int) -> int:
        return a + 1

    run_id = _run(engine, engine.run_once("d"))
    record = store.get_run(run_id)
    assert {n: (t.status, t.result) for n, t in record.tasks.items()} == {
        "a": ("SUCCESS", 1),
        "b": ("SUCCESS", 2),
    }
    assert record.finished_at is not None
    assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    with pytest.raises(KeyError, match="no run 'missing'"):
        engine.get_run_report("missing")
    engine.close()


def test_a_state_store_of_neither_kind_is_refused_with_what_it_lacks() -> None:
    class Half:
        def create_run(self, run_id: str, dag_name: str, task_names: list[str]) -> None: ...

        def get_run(self, run_id: str) -> None: ...

    with pytest.raises(InvalidOptionError, match="lacks create_resumed_run, mark_running") as e:
        flowrun.build_default_engine(state_store=Half())  # type: ignore[arg-type]
    assert e.value.option == "state_store"


def test_flowplan_features_reach_a_flowrun_store_in_flowruns_words(backend: DictBackend) -> None:
    """Fan-out, gates, detached tasks and timeouts end in flowrun's five statuses, through
    valid transitions only (the backend raises on any other)."""
    engine = flowrun.build_default_engine(state_store=backend)

    @engine.task(name="rows", dag="d")
    def rows() -> list[int]:
        return [1, 2, 3]

    @engine.task(name="double", dag="d", deps=[rows], fan_out=rows)
    def double(rows: int) -> int:
        if rows == 2:
            raise ValueError("two")
        return rows * 2

    @engine.task(name="gated", dag="d", when=lambda: False)
    def gated() -> int:
        return 1

    @engine.task(name="after_gate", dag="d", deps=[gated])
    def after_gate(gated: int) -> int:
        return gated

    @engine.task(name="background", dag="d", detached=True, deps=[rows])
    def background(rows: list[int]) -> int:
        raise RuntimeError("background broke")

    @engine.task(name="slow", dag="d", timeout_s=0.2)
    async def slow() -> int:
        await asyncio.sleep(30)
        return 1

    run_id = _run(engine, engine.run_once("d"))
    rows_ = backend.data[run_id]["tasks"]
    assert set(rows_) == {"rows", "double", "gated", "after_gate", "background", "slow"}
    assert {n: r["status"] for n, r in rows_.items()} == {
        "rows": "SUCCESS",
        "double": "FAILED",
        "gated": "SKIPPED",
        "after_gate": "SKIPPED",
        "background": "FAILED",
        "slow": "FAILED",
    }
    assert "'double[1]'" in rows_["double"]["error"]
    assert rows_["gated"]["error"] == "when() returned a falsy value"
    assert rows_["slow"]["error"].startswith("TaskTimeoutError: task 'slow' attempt 1 exceeded")
    assert engine.get_run_report(run_id)["status"] == "FAILED"
    engine.close()


def test_a_released_value_read_back_by_another_engine_is_never_fed_as_none(
    backend: DictBackend,
) -> None:
    """A flowrun store keeps a cleared result as ``None``; an engine that did not make the run
    must not hand that ``None`` downstream on resume."""

    def build(effect: Any) -> flowrun.Engine:
        engine = flowrun.build_default_engine(state_store=backend)

        @engine.task(name="extract", dag="d", retain_result=False, effect=effect)
        def extract() -> list[int]:
            RAN.append("extract")
            return [1, 2]

        @engine.task(name="total", dag="d", deps=[extract])
        def total(extract: list[int]) -> int:
            return sum(extract)

        return engine

    maker = build(None)
    first = _run(maker, maker.run_once("d"))
    assert backend.data[first]["tasks"]["extract"]["result"] is None  # cleared once consumed

    other = build(None)  # another process: it did not see the value released
    refused = _run(other, other.resume(first, from_tasks=["total"]))
    report = other.get_run_report(refused)
    assert "its value was released (retain_result=False)" in report["tasks"]["extract"]["error"]
    assert report["tasks"]["total"]["status"] == "SKIPPED"  # never called with None

    RAN.clear()
    pure = build("pure")  # running it again is harmless: it is run again
    rerun = _run(pure, pure.resume(first, from_tasks=["total"]))
    assert RAN == ["extract"]
    assert pure.get_run_report(rerun)["tasks"]["total"]["result"] == 3
