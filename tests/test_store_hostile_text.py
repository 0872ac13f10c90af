"""Hostile text in stores: strings UTF-8 cannot encode (lone surrogates) are stored, not fatal.

``os.fsdecode(b"\\xff")`` gives ``"\\udcff"``: file names, command lines and environment variables
that are not valid UTF-8 decode to such strings, so task names, errors, tracebacks, run ids and
values can hold them. Every store keeps them exactly (a reversible escape), a failed write
releases the database, and a batch with such text is written whole.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flowplan import Flow, Registry, TaskGraph, TaskStatus, execute, plan, task
from flowplan.cache import SqliteCache
from flowplan.errors import StoreError
from flowplan.keys import CacheKey
from flowplan.plan import Action
from flowplan.snapshot import TaskRecord
from flowplan.store import SqliteStateStore

BAD = os.fsdecode(b"caf\xe9-\xff")  # what a Latin-1 file name decodes to: two lone surrogates
assert BAD.encode("utf-8", "surrogateescape") == b"caf\xe9-\xff"


_JOURNAL_CALLS: list[str] = []


def _other_process_writes(db: Path) -> subprocess.CompletedProcess[str]:
    """A real second process opens the store and records a run (needs the write lock)."""
    script = textwrap.dedent(
        f"""
        from flowplan import TaskGraph, execute, plan, task
        from flowplan.store import SqliteStateStore

        @task
        def other() -> int:
            return 7

        with SqliteStateStore({str(db)!r}, busy_timeout_s=2.0) as store:
            done = execute(plan(TaskGraph.build([other])), store=store)
        print(done.value("other"))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _hostile_graph(calls: list[str]) -> tuple[TaskGraph, str]:
    @task(name=f"load-{BAD}")
    def load() -> dict[str, Any]:
        calls.append("load")
        return {BAD: [BAD, (BAD, b"\xff")], "plain": {BAD}}

    @task(depends_on=[load])
    def boom(**_: object) -> int:
        calls.append("boom")
        raise ValueError(f"cannot open {BAD}")

    return TaskGraph.build([load, boom]), load.name


@pytest.mark.parametrize("commit_every", [1, 10])
def test_hostile_text_is_stored_exactly_and_never_locks_the_database(
    registry: Registry, tmp_path: Path, commit_every: int
) -> None:
    db = tmp_path / "runs.db"
    calls: list[str] = []
    graph, load = _hostile_graph(calls)
    run_id = f"run-{BAD}"
    store = SqliteStateStore(db, commit_every=commit_every)
    result = execute(plan(graph, run_id=run_id), store=store)
    assert result.records["boom"].status is TaskStatus.FAILED

    other = _other_process_writes(db)  # the lock was released: another process can write
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "7"
    store.close()  # nothing left to fail

    with SqliteStateStore(db) as reopened:
        info = reopened.get_run(run_id)
        assert (info.run_id, info.status, info.tasks) == (run_id, "failed", (load, "boom"))
        assert run_id in [r.run_id for r in reopened.list_runs()]
        snapshot = reopened.load(run_id)
    stored = snapshot.records[load]
    assert stored.status is TaskStatus.SUCCEEDED  # the batch's success survived
    assert stored.value == {BAD: [BAD, (BAD, b"\xff")], "plain": {BAD}}
    error = snapshot.records["boom"].error
    assert error is not None
    assert error.message == f"cannot open {BAD}"  # exactly: the escape is reversible
    assert f"ValueError: cannot open {BAD}" in error.traceback

    resumed = plan(graph, snapshot)  # the hostile-named success is reused, never re-run
    assert resumed.decisions[load].action is Action.REUSE
    calls.clear()
    with SqliteStateStore(db, commit_every=commit_every) as again:
        execute(resumed, store=again)
    assert calls == ["boom"]


def test_escaped_text_is_a_blob_and_ordinary_text_stays_text(
    registry: Registry, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    graph, load = _hostile_graph([])
    with SqliteStateStore(db) as store:
        execute(plan(graph, run_id="plain-id"), store=store)
    conn = sqlite3.connect(db)
    try:
        types = dict(conn.execute("SELECT typeof(name), name FROM tasks").fetchall())
        message = conn.execute("SELECT error_message FROM tasks WHERE name = 'boom'").fetchone()
    finally:
        conn.close()
    assert types["text"] == "boom"
    assert types["blob"] == load.encode("utf-8", "surrogatepass")
    assert message == (f"cannot open {BAD}".encode("utf-8", "surrogatepass"),)


def test_hostile_run_metadata_round_trips_and_finds_its_rows(
    registry: Registry, tmp_path: Path
) -> None:
    graph, load = _hostile_graph([])
    planned = plan(graph, run_id=BAD)
    with SqliteStateStore(tmp_path / "runs.db") as store:
        store.create_run(planned, dag_name=f"dag-{BAD}", targets=[load], resumed_from=BAD * 2)
        store.save_record(BAD, TaskRecord(load, TaskStatus.RUNNING, 1, started_at=1.0))
        info = store.get_run(BAD)
        assert (info.dag_name, info.targets, info.resumed_from) == (f"dag-{BAD}", (load,), BAD * 2)
        assert [r.run_id for r in store.list_runs(dag_name=f"dag-{BAD}")] == [BAD]
        assert store.load(BAD).records[load].status is TaskStatus.RUNNING  # the start found its row
        assert len(store.load(BAD).records) == 2  # one row per task: no duplicate


def test_a_failed_batch_write_rolls_back_releases_the_lock_and_keeps_the_other_records(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    store = SqliteStateStore(db, commit_every=10)
    good = TaskRecord("good", TaskStatus.SUCCEEDED, 1, value=[1, 2], has_value=True)
    unwritable = TaskRecord("huge", TaskStatus.FAILED, attempts=2**70)  # no SQLite INTEGER
    store.save_record("r1", good)
    store.save_record("r1", unwritable)
    with pytest.raises(StoreError, match=r"'huge'.*cannot be written") as caught:
        store.flush()
    assert caught.value.__cause__ is not None
    assert caught.value.path == str(db)
    other = _other_process_writes(db)
    assert other.returncode == 0, other.stderr
    store.flush()  # not poisoned: nothing is left to fail
    store.close()
    conn = sqlite3.connect(db)
    try:
        names = conn.execute("SELECT name, status FROM tasks WHERE run_id = 'r1'").fetchall()
    finally:
        conn.close()
    assert names == [("good", "succeeded")]


def test_the_journal_keeps_hostile_names_and_values(registry: Registry, tmp_path: Path) -> None:
    journal = tmp_path / "flow.jsonl"
    _JOURNAL_CALLS.clear()

    @task(name=f"load-{BAD}")
    def load() -> dict[str, Any]:
        _JOURNAL_CALLS.append("load")  # a global: a closure's data would change the step key
        return {BAD: (BAD, b"\xff")}

    first = Flow(load, journal_path=journal)
    first.run()
    again = Flow(load, journal_path=journal)
    assert again.run()[load.name].cached
    assert _JOURNAL_CALLS == ["load"]  # read back from the journal, not run again
    assert again.value(load) == first.value(load) == {BAD: (BAD, b"\xff")}


def test_the_result_cache_keeps_hostile_task_names(tmp_path: Path) -> None:
    cache = SqliteCache(tmp_path / "cache.db")
    key = CacheKey({"code": "c0de", f"input:{BAD}": "1234"})
    cache.put(BAD, key, [BAD])
    cached = cache.get(BAD, key.digest)
    assert cached is not None
    assert (cached.task, cached.value) == (BAD, [BAD])
    assert cache.latest(BAD) == dict(key.parts)
    cache.close()


CLI_PIPELINE = """
import os
from pathlib import Path

from flowplan import task


@task
def extract() -> str:
    return os.fsdecode(b"caf\\xe9-\\xff")


@task(depends_on=[extract])
def transform(extract: str) -> str:
    if (Path(__file__).parent / "broken.flag").exists():
        raise RuntimeError(f"cannot open {extract}")
    return extract.upper()
"""


def test_the_cli_runs_shows_and_resumes_in_a_directory_whose_name_is_not_utf8(
    tmp_path: Path,
) -> None:
    project = tmp_path / os.fsdecode(b"proj-\xff")  # cwd and the recorded workdir
    project.mkdir()
    (project / "pipeline.py").write_text(CLI_PIPELINE)
    (project / "broken.flag").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "FLOWPLAN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env["PYTHONIOENCODING"] = "utf-8:strict"  # as under a UTF-8 locale (not C/POSIX)

    def flowplan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowplan", *args],
            cwd=project,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=60,
        )

    failed = flowplan("run", "pipeline.py")
    assert failed.returncode == 1, failed.stderr
    shown = flowplan("show", "last")
    assert shown.returncode == 0, shown.stderr
    assert "RuntimeError: cannot open caf\\udce9-\\udcff" in shown.stdout  # escaped to print
    (project / "broken.flag").unlink()
    resumed = flowplan("resume", "last")
    assert resumed.returncode == 0, resumed.stderr
    assert "1 succeeded, 1 reused" in resumed.stdout
    listed = flowplan("runs")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 3


def test_the_cli_run_book_gives_back_hostile_targets_workdirs_and_deps(tmp_path: Path) -> None:
    from flowplan._cli_runs import read_deps, read_target, record_deps, record_target

    book = str(tmp_path / "runs.db")
    SqliteStateStore(book).close()
    record_target(book, "r1", f"{BAD}/pipeline.py", f"dag-{BAD}")
    record_deps(book, "r1", f"{BAD}/deps.py:make_deps")
    target = read_target(book, "r1")
    assert target is not None
    assert (target[0], target[2]) == (f"{BAD}/pipeline.py", f"dag-{BAD}")
    assert read_deps(book, "r1") == f"{BAD}/deps.py:make_deps"
