"""Helpers of the reliability tests: run the scripted pipeline in real processes, kill it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowplan import TaskStatus
from flowplan.engine import SqliteStateStore

SCRIPTS = Path(__file__).parent / "_scripts"
PIPELINE = SCRIPTS / "reliability_pipeline.py"
TASKS = ("src", "a1", "a2", "a3", "a4", "join", "effect")
EXPECTED: dict[str, Any] = {
    "a1": 4,
    "a2": 5,
    "a3": 6,
    "a4": 7,
    "effect": 22,
    "join": {"total": 22, "parts": [4, 5, 6, 7]},
    "src": [1, 2],
}
PROCESS_LIMIT = 60.0  # seconds; a correct phase takes well under one


def lines(calls: Path, phase: str, event: str) -> list[str]:
    """The task names of ``event`` ("start"/"done") lines of ``phase`` in the calls file."""
    if not calls.exists():
        return []
    out = []
    for line in calls.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == phase and parts[1] == event:
            out.append(parts[2])
    return out


def run_phase(
    args: list[str], calls: Path, phase: str, kill_after: int | None
) -> dict[str, Any] | None:
    """Run the pipeline; SIGKILL it once ``kill_after`` bodies of ``phase`` finished.

    ``kill_after=0`` kills as soon as the first body starts. Returns the printed values, or
    ``None`` when the process was killed.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(PIPELINE), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + PROCESS_LIMIT
    if kill_after is not None:
        event = "start" if kill_after == 0 else "done"
        target = max(kill_after, 1)
        while proc.poll() is None and time.monotonic() < deadline:
            if len(lines(calls, phase, event)) >= target:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                return None
            time.sleep(0.002)
    out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def latest_sqlite(state: Path) -> tuple[str | None, set[str]]:
    """The latest run in a SQLite store and the tasks it recorded as succeeded."""
    if not state.exists():
        return None, set()
    with SqliteStateStore(state) as store:
        runs = store.list_runs()
        if not runs:
            return None, set()
        run_id = runs[-1].run_id
        snap = store.load(run_id)
    return run_id, {n for n, r in snap.records.items() if r.status is TaskStatus.SUCCEEDED}


def journalled(state: Path) -> set[str]:
    """The tasks with a complete line in a flowing journal."""
    if not state.exists():
        return set()
    names = set()
    for raw in state.read_bytes().split(b"\n"):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("task"), str):
            names.add(entry["task"])
    return names


def within(fn: Callable[[], Any], limit: float) -> Any:
    """Call ``fn`` on a daemon thread and return (or raise) what it did; fail the test if it
    still runs after ``limit`` seconds, instead of hanging the suite."""
    box: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller, KeyboardInterrupt included
            box.append((False, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    if not box:
        pytest.fail(f"still running after {limit:g}s: the run did not end promptly")
    ok, value = box[0]
    if not ok:
        raise value
    return value
