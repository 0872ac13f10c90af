"""Large values in the SQLite store: peak memory stays near the value's own size.

A ``bytes``/``bytearray`` value is stored as itself (no base64, no JSON copies), and any
payload over ``LARGE_PAYLOAD`` is streamed into and out of the file with SQLite blob I/O, so
neither the store nor SQLite holds a second whole copy. Peak memory is measured in a child
process with ``resource.getrusage(...).ru_maxrss`` (the process's peak resident set).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowplan import Registry, TaskGraph, TaskStatus, execute, plan, task
from flowplan.plan import Action
from flowplan.store import PickleSerializer, SqliteStateStore
from flowplan.store._sqlite._rows import LARGE_PAYLOAD, SCHEMA_VERSION

MB = 1 << 20
SIZE_MB = 64

CHILD = """
import hashlib, json, os, resource, sys

from flowplan import TaskGraph, execute, plan, task
from flowplan.store import SqliteStateStore

size, db, commit_every = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])


def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


digest = {}


@task
def big() -> bytes:
    value = os.urandom(size)
    digest["made"] = hashlib.sha256(value).hexdigest()
    return value


graph = TaskGraph.build([big])
before = peak()
with SqliteStateStore(db, commit_every=commit_every) as store:
    run_id = execute(plan(graph), store=store).run_id
written = peak()
with SqliteStateStore(db) as store:
    loaded = store.load(run_id).records["big"].value
read = peak()
print(json.dumps({
    "before": before, "written": written, "read": read, "type": type(loaded).__name__,
    "same": hashlib.sha256(loaded).hexdigest() == digest["made"],
}))
"""


@pytest.mark.parametrize("commit_every", [1, 10])
def test_a_large_bytes_value_peaks_within_three_times_its_size(
    tmp_path: Path, commit_every: int
) -> None:
    size = SIZE_MB * MB
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    extra = [str(commit_every)]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(CHILD),
            str(size),
            str(tmp_path / "runs.db"),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["same"]
    assert seen["type"] == "bytes"
    # Peak over the process before the run, while it made, wrote, then read the value back
    # (the first value is still alive in the run's snapshot): within 3x of one value.
    assert seen["read"] - seen["before"] <= 3 * size, {
        k: seen[k] // MB for k in ("before", "written", "read")
    }


@pytest.mark.parametrize("commit_every", [1, 10])
@pytest.mark.parametrize("serializer", [None, PickleSerializer()], ids=["json", "pickle"])
def test_binary_and_large_values_round_trip_exactly(
    registry: Registry,
    tmp_path: Path,
    commit_every: int,
    serializer: PickleSerializer | None,
) -> None:
    values: dict[str, object] = {
        "small_bytes": b"\x00\xff",
        "small_bytearray": bytearray(b"\x01\x02"),
        "big_bytes": os.urandom(LARGE_PAYLOAD + 3),
        "big_bytearray": bytearray(os.urandom(LARGE_PAYLOAD * 2)),
        "big_text": "\u00e9" * (LARGE_PAYLOAD + 5),  # a large serialized payload
        "big_nested": {"blob": os.urandom(LARGE_PAYLOAD), "n": [1, (2, 3)]},
        "empty_bytes": b"",
    }
    specs = [task(name=name)(lambda v=value: v) for name, value in values.items()]
    graph = TaskGraph.build(specs)
    db = tmp_path / "runs.db"
    with SqliteStateStore(db, serializer=serializer, commit_every=commit_every) as store:
        first = execute(plan(graph, run_id="r1"), store=store)
    assert all(r.status is TaskStatus.SUCCEEDED for r in first.records.values())

    def check(run_id: str) -> None:
        with SqliteStateStore(db, serializer=serializer) as store:
            loaded = store.load(run_id)
        for name, value in values.items():
            got = loaded.records[name].value
            assert type(got) is type(value), name
            assert got == value, name

    check("r1")
    # A resume re-saves the reused records at run creation (large ones streamed too).
    with SqliteStateStore(db, serializer=serializer) as store:
        resumed = plan(graph, store.load("r1"), run_id="r2")
        assert all(d.action is Action.REUSE for d in resumed.decisions.values())
        store.create_run(resumed, dag_name=None)
    check("r2")
    # Running a run id again replaces its large values instead of piling them up.
    with SqliteStateStore(db, serializer=serializer, commit_every=commit_every) as store:
        execute(plan(graph, run_id="r1"), store=store)
    check("r1")
    conn = sqlite3.connect(db)
    try:
        counts = dict(conn.execute("SELECT run_id, COUNT(*) FROM task_values GROUP BY run_id"))
    finally:
        conn.close()
    large = 4  # big_bytes, big_bytearray, big_text, big_nested
    assert counts == {"r1": large, "r2": large}


def test_a_version_1_file_with_a_large_inline_payload_is_read_and_upgraded(
    registry: Registry, tmp_path: Path
) -> None:
    @task
    def text() -> str:
        return "x" * (LARGE_PAYLOAD * 2)

    db = tmp_path / "runs.db"
    with SqliteStateStore(db) as store:
        run_id = execute(plan(TaskGraph.build([text])), store=store).run_id
    # What flowplan wrote before task_values: the JSON payload inline, schema version 1.
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        payload = json.dumps("x" * (LARGE_PAYLOAD * 2)).encode()
        conn.execute("UPDATE tasks SET payload = ?, has_value = 1", (payload,))
        conn.execute("DELETE FROM task_values")
        conn.execute("UPDATE flowplan_schema SET version = 1")
    finally:
        conn.close()
    with SqliteStateStore(db) as store:
        assert store.load(run_id).records["text"].value == "x" * (LARGE_PAYLOAD * 2)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT version FROM flowplan_schema").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()
