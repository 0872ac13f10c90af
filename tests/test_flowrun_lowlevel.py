"""flowrun's lower-level public API on ``flowplan.engine``: serializers, specs, registries,
state stores — the behaviours flowrun 0.1.0's own tests pin down, plus custom backends and
serializers written only against flowrun's documented protocols."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
import sqlite3
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

    with sqlite3.connect(db) as conn:  # the bytes on disk are the user's format
        payloads = dict(conn.execute("SELECT name, payload FROM tasks WHERE run_id = ?", (run_id,)))
    assert json.loads(base64.b64decode(payloads["total"])) == 6

    reopened = flowrun.build_default_engine(
        state_store=flowrun.SqliteStateStore(db, serializer=Base64Json())
    )
    reopened.task(name="extract", dag="etl")(extract.fn)
    report = reopened.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["extract"]["result"] == {"rows": [1, 2, 3]}
    assert report["tasks"]["total"]["result"] == 6
    reopened.close()


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
