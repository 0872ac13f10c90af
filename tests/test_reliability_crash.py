"""Killed mid-run (SIGKILL, real processes, real files): nothing that succeeded is lost or run
twice; concurrent processes on one SQLite file; crash recovery owns only dead processes' rows."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flowplan import Registry, TaskGraph, TaskStatus, execute, plan, task
from flowplan.engine import SqliteStateStore
from reliability_helpers import (
    EXPECTED,
    PROCESS_LIMIT,
    TASKS,
    journalled,
    latest_sqlite,
    lines,
    run_phase,
)

# (kill the first run after N bodies finished, kill the first resume after M): None = no kill.
KILL_POINTS = {
    "core": [(0, 1), (2, None), (4, 0), (6, None)],
    "engine": [(1, 2), (5, None), (99, None)],
    "journal": [(0, None), (3, 1), (5, None), (99, None)],
}


def _scenario(mode: str, root: Path, first_kill: int, second_kill: int | None) -> None:
    """Run, kill, resume (maybe killed again), resume to the end; check every law."""
    state = root / ("journal.jsonl" if mode == "journal" else "state.db")
    calls = root / "calls.txt"
    kills: list[tuple[str, set[str]]] = []  # (phase, recorded succeeded after the kill)

    def recorded() -> tuple[str | None, set[str]]:
        if mode == "journal":
            return None, journalled(state)
        return latest_sqlite(state)

    phases = [("p1", first_kill), ("p2", second_kill), ("p3", None), ("p4", None)]
    final: dict[str, object] | None = None
    for index, (phase, kill) in enumerate(phases):
        prev_id, before = recorded()
        args = [mode, str(state), str(calls), phase]
        if mode == "core":
            args += [f"run-{phase}", *([prev_id] if prev_id else [])]
        elif mode == "engine":
            args += ["-", *([prev_id] if prev_id else [])]
            if not prev_id:
                args = args[:4]
        result = run_phase(args, calls, phase, kill)
        started = lines(calls, phase, "start")
        # succeeded work is never run again (its body is not called: no start line)
        assert not before.intersection(started), (phase, before, started)
        if result is None:
            kills.append((phase, recorded()[1]))
            continue
        # everything not recorded as succeeded ran again, and the values are the same
        assert set(TASKS) - before <= set(started), (phase, before, started)
        assert result == EXPECTED
        final = result
        if index == 3:  # resuming a finished run: everything reused, nothing called
            assert (before, started) == (set(TASKS), [])
    assert final == EXPECTED
    # at most once per recorded success, plus one per kill that caught the body mid-flight
    for name in TASKS:
        done = sum(lines(calls, phase, "done").count(name) for phase, _ in phases)
        window = sum(
            1
            for phase, after in kills
            if name in lines(calls, phase, "start") and name not in after
        )
        assert 1 <= done <= 1 + window, (name, done, window)


@pytest.mark.parametrize("mode", sorted(KILL_POINTS))
def test_a_killed_run_resumes_without_losing_or_repeating_work(mode: str, tmp_path: Path) -> None:
    points = KILL_POINTS[mode]
    with ThreadPoolExecutor(2) as pool:
        futures = []
        for i, (first, second) in enumerate(points):
            root = tmp_path / f"point-{i}"
            root.mkdir()
            futures.append(pool.submit(_scenario, mode, root, first, second))
        for future in futures:
            future.result()


def test_a_resumed_run_killed_before_it_resaved_reused_work_keeps_it(tmp_path: Path) -> None:
    """create_run writes reused records in its first commit: a kill right after loses nothing."""
    registry = Registry()

    @task(registry=registry)
    def first() -> int:
        return 1

    @task(depends_on=[first], registry=registry)
    def second(first: int) -> int:
        raise RuntimeError("not yet")

    graph = TaskGraph.build([first, second])
    db = tmp_path / "s.db"
    with SqliteStateStore(db) as store:
        snap = execute(plan(graph, run_id="r1"), store=store, fail_fast=False)
        assert snap["second"].status is TaskStatus.FAILED
        resumed = plan(graph, store.load("r1"), run_id="r2")
        store.create_run(resumed, dag_name=None)  # ... and the process dies here
        again = store.load("r2")
    assert again["first"].status is TaskStatus.SUCCEEDED
    assert again.value(first) == 1
    assert again["second"].status is TaskStatus.PENDING


_OWNER = """
import sys, time
from flowplan import Registry, TaskGraph, execute, plan, task
from flowplan.engine import SqliteStateStore

db, name, marker = sys.argv[1], sys.argv[2], sys.argv[3]
registry = Registry()

@task(registry=registry, name=name)
def work() -> int:
    open(marker, "w").close()
    time.sleep(float(sys.argv[4]))
    return 1

with SqliteStateStore(db, busy_timeout_s=30) as store:
    execute(plan(TaskGraph.build([work]), run_id=name), store=store)
print("finished")
"""


def _running(db: Path, name: str) -> bool:
    with SqliteStateStore(db) as store:
        try:
            return store.load(name)[name].status is TaskStatus.RUNNING
        except LookupError:
            return False


def test_recover_fails_only_the_dead_process_tasks(tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(_OWNER, encoding="utf-8")
    db = tmp_path / "shared.db"
    SqliteStateStore(db).close()
    procs = {}
    for name, hold in (("doomed", "600"), ("alive", "3")):
        marker = tmp_path / f"{name}.started"
        procs[name] = subprocess.Popen(
            [sys.executable, str(script), str(db), name, str(marker), hold],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    deadline = time.monotonic() + 30
    # a body may start a moment before its RUNNING row commits: wait for both rows
    while not all(_running(db, name) for name in procs):
        assert time.monotonic() < deadline, "the owners never started"
        time.sleep(0.01)
    procs["doomed"].send_signal(signal.SIGKILL)
    procs["doomed"].communicate()
    with SqliteStateStore(db, recover=True) as store:
        doomed, alive = store.load("doomed")["doomed"], store.load("alive")["alive"]
        assert doomed.status is TaskStatus.FAILED
        assert doomed.error is not None
        assert "PROCESS_CRASH" in doomed.error.message
        assert alive.status is TaskStatus.RUNNING  # a live process's task is never touched
        assert store.get_run("alive").status == "running"
        assert store.get_run("doomed").status == "failed"
    out, err = procs["alive"].communicate(timeout=60)
    assert (procs["alive"].returncode, out.strip()) == (0, "finished"), err
    with SqliteStateStore(db, recover=True) as store:
        assert store.load("alive")["alive"].status is TaskStatus.SUCCEEDED
        assert store.get_run("alive").status == "succeeded"


_SOAK = """
import sys
from flowplan import Registry, TaskGraph, execute, plan, task, InlineExecutor
from flowplan.engine import SqliteStateStore

db, worker, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
registry = Registry()

@task(registry=registry)
def a() -> int:
    return 1

@task(depends_on=[a], registry=registry)
def b(a: int) -> int:
    return a + 1

@task(depends_on=[a, b], registry=registry)
def c(a: int, b: int) -> tuple[int, int]:
    return (a, b)

graph = TaskGraph.build([a, b, c])
with SqliteStateStore(db) as store:
    for i in range(runs):
        execute(plan(graph, run_id=f"{worker}-{i}"), store=store, executor=InlineExecutor())
print("ok")
"""


@pytest.mark.slow
def test_four_processes_two_hundred_runs_each_on_one_file(tmp_path: Path) -> None:
    script = tmp_path / "soak.py"
    script.write_text(textwrap.dedent(_SOAK), encoding="utf-8")
    db = tmp_path / "soak.db"
    SqliteStateStore(db).close()
    workers, runs = 4, 200
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), f"w{w}", str(runs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err  # never "database is locked"
        assert out.strip() == "ok"
        assert "locked" not in err
    with SqliteStateStore(db) as store:
        infos = store.list_runs()
        assert len(infos) == workers * runs
        for info in infos:
            assert info.status == "succeeded"
            snap = store.load(info.run_id)
            assert {n: r.status for n, r in snap.records.items()} == dict.fromkeys(
                "abc", TaskStatus.SUCCEEDED
            )
            assert snap.value("c") == (1, 2)


# -- orphans: a child process running an attempt dies with its SIGKILLed parent --------------

ORPHAN = Path(__file__).parent / "_scripts" / "orphan_pipeline.py"


def _process_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an orphan's zombie may linger unreaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def _orphan_phase(
    mode: str, root: Path, run_id: str, prev: str | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "ORPHAN_DELAY": "4"}
    args = [mode, str(root / "state.db"), str(root / "effect.txt"), run_id]
    return subprocess.Popen(
        [sys.executable, str(ORPHAN), *args, *([prev] if prev else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for liveness")
@pytest.mark.parametrize("mode", ["isolated", "executor"])
def test_a_child_dies_with_its_killed_parent_and_the_effect_happens_once(
    mode: str, tmp_path: Path
) -> None:
    """SIGKILL the driver while its child sleeps before the effect: the child dies at once
    (no effect), and the resume (reconcile: not done) performs the effect exactly once."""
    effect, pid_file = tmp_path / "effect.txt", tmp_path / "effect.txt.pid"
    parent = _orphan_phase(mode, tmp_path, "first")
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text(encoding="utf-8")):
        assert parent.poll() is None, parent.communicate()
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    child = int(pid_file.read_text(encoding="utf-8"))
    assert child != parent.pid
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)  # not communicate(): a surviving child holds its stdout open
    deadline = time.monotonic() + 3  # the effect comes 4 s after the child started
    while _process_running(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _process_running(child), "the orphaned child outlived its killed parent"
    time.sleep(5)  # had it survived, the orphan would have charged by now
    assert not effect.exists()
    parent.communicate(timeout=30)
    pid_file.unlink()
    resumed = _orphan_phase(mode, tmp_path, "second", "first")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert out.strip() == "succeeded"
    assert len(effect.read_text(encoding="utf-8").splitlines()) == 1


# -- ownership: one live owner per lineage of runs ---------------------------------------------

OWNED = Path(__file__).parent / "_scripts" / "owner_pipeline.py"
OWNED_EFFECTS = ("charge", "notify", "step0", "step1", "step2", "step3", "step4", "step5")


def _owner_process(root: Path, run_id: str, prev: str | None, **env: str) -> subprocess.Popen[str]:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env}
    args = [str(root / "state.db"), str(root / "effects.txt"), run_id, *([prev] if prev else [])]
    return subprocess.Popen(
        [sys.executable, str(OWNED), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )


def _finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=PROCESS_LIMIT)
    assert proc.returncode in (0, 3), err
    return proc.returncode, out.strip()


def _effects(root: Path) -> list[str]:
    path = root / "effects.txt"
    if not path.exists():
        return []
    return sorted(line.split()[0] for line in path.read_text(encoding="utf-8").splitlines())


def _failed_first_run(root: Path) -> None:
    """Run ``first``: ``gate`` fails, so every effect is left for a resume."""
    code, out = _finished(_owner_process(root, "first", None))
    assert (code, out.split()[:2]) == (0, ["ran", "failed"])
    assert _effects(root) == []
    (root / "effects.txt.ok").touch()  # the "fix": resumes succeed now


def _task_running(db: Path, run_id: str, name: str) -> bool:
    with SqliteStateStore(db) as store:
        return store.load(run_id)[name].status is TaskStatus.RUNNING


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + PROCESS_LIMIT
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def test_three_processes_racing_to_resume_one_run_run_it_once(tmp_path: Path) -> None:
    """Three processes resume the same failed run at the same moment: exactly one runs its
    tasks (each effect, the at-most-once and the detached one included, happens once); the
    other two get RunOwnedError naming the owner."""
    _failed_first_run(tmp_path)
    go = tmp_path / "go"
    procs = [
        _owner_process(tmp_path, f"resume-{i}", "first", OWNER_GO=str(go), OWNER_STEP="0.5")
        for i in range(3)
    ]
    deadline = time.monotonic() + PROCESS_LIMIT
    while len(list(tmp_path.glob("go.ready.*"))) < len(procs):  # all imported, store open
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "the resumers never got ready"
        time.sleep(0.01)
    go.touch()
    results = sorted(_finished(proc) for proc in procs)
    assert [code for code, _ in results] == [0, 3, 3], results
    assert results[0][1] == "ran succeeded"
    for _, out in results[1:]:
        assert out.startswith("owned: run 'resume-")
        assert "is live in live process" in out
        assert "kill" in out  # how to take over a hung owner
    assert _effects(tmp_path) == sorted(OWNED_EFFECTS)


def test_a_killed_owner_is_taken_over_and_a_live_one_is_not(tmp_path: Path) -> None:
    """While the resuming process lives, a second resume is refused; once it is SIGKILLed,
    the next resume takes its run over and finishes it, repeating no recorded effect."""
    _failed_first_run(tmp_path)
    owner = _owner_process(tmp_path, "second", "first", OWNER_HOLD="600")
    _wait_for(tmp_path / "effects.txt.holding", owner)
    code, out = _finished(_owner_process(tmp_path, "third", "second"))
    assert code == 3
    assert f"is live in live process {owner.pid} on this host" in out
    owner.send_signal(signal.SIGKILL)
    owner.communicate(timeout=30)
    code, out = _finished(_owner_process(tmp_path, "fourth", "second"))
    assert (code, out) == (0, "ran succeeded")
    assert _effects(tmp_path) == sorted(OWNED_EFFECTS)  # charge (recorded) was not repeated


def test_recover_never_touches_a_run_resumed_under_its_own_id(tmp_path: Path) -> None:
    """The first owner of run ``first`` is SIGKILLed; another process resumes it under the
    same id. ``recover=True`` elsewhere must see the new, live owner: it fails nothing."""
    (tmp_path / "effects.txt.ok").touch()
    first = _owner_process(tmp_path, "first", None, OWNER_HOLD="600")
    _wait_for(tmp_path / "effects.txt.holding", first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    (tmp_path / "effects.txt.holding").unlink()
    again = _owner_process(tmp_path, "first", "first", OWNER_HOLD="600")
    _wait_for(tmp_path / "effects.txt.holding", again)
    db = tmp_path / "state.db"
    deadline = time.monotonic() + PROCESS_LIMIT
    while not _task_running(db, "first", "step0") and time.monotonic() < deadline:
        time.sleep(0.01)  # its RUNNING row may commit a moment after the body starts
    try:
        with SqliteStateStore(db, recover=True) as store:
            assert store.recover() == ()
            assert store.get_run("first").status == "running"
            assert store.load("first")["step0"].status is TaskStatus.RUNNING
    finally:
        again.send_signal(signal.SIGKILL)
        again.communicate(timeout=30)
    with SqliteStateStore(db, recover=True) as store:  # now it is dead: recovered
        assert store.get_run("first").status == "failed"
        assert store.load("first")["step0"].status is TaskStatus.FAILED


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for liveness")
@pytest.mark.parametrize("mode", ["isolated", "executor"])
def test_a_resume_waits_for_a_live_child_of_a_dead_owner(mode: str, tmp_path: Path) -> None:
    """The child process of an at-most-once attempt is recorded before the attempt reaches
    it. Where a child can outlive its killed parent (no death signal), a resume must not start
    while it lives: it is refused, naming the child; once the child is gone it runs."""
    effect, pid_file = tmp_path / "effect.txt", tmp_path / "effect.txt.pid"
    parent = _orphan_phase(mode, tmp_path, "first")
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text(encoding="utf-8")):
        assert parent.poll() is None, parent.communicate()
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    child = int(pid_file.read_text(encoding="utf-8"))
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    parent.communicate(timeout=30)
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    try:  # the store knew which process ran the attempt
        recorded = conn.execute("SELECT lineage_id, task, attempt, pid FROM attempt_processes")
        assert recorded.fetchall() == [("first", "charge", 1, child)]
    finally:
        conn.close()
    # A child that outlived its parent, as it can where there is no death signal: a real live
    # process recorded the way the driver records one.
    survivor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with SqliteStateStore(db) as store:
            store.note_attempt_process("first", "charge", 1, survivor.pid)
        code, out = _finished_orphan(_orphan_phase(mode, tmp_path, "second", "first"))
        assert code == 3
        assert f"still runs in process {survivor.pid}" in out
        assert "task 'charge'" in out
        assert f"kill {survivor.pid}" in out
    finally:
        survivor.kill()
        survivor.wait(timeout=30)
    code, out = _finished_orphan(_orphan_phase(mode, tmp_path, "third", "first"))
    assert (code, out) == (0, "succeeded")  # reconcile: not done, so it ran
    assert len(effect.read_text(encoding="utf-8").splitlines()) == 1


def _finished_orphan(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 3), err
    return proc.returncode, out.strip()
