"""Abandoned (timed-out) attempts belong to the task's lineage: a resume never overlaps one.

A sync attempt on a thread cannot be killed: on timeout it is abandoned and may go on
running. A retry of the task waits for it (unless the task says running twice is harmless);
so does a resume of the run in the same process, whichever run id it carries.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import flowplan
from flowplan import TaskGraph, TaskStatus, aexecute, execute, plan, task

OUTLIVES_S = 1.5  # how long the first attempt runs on after its 0.2 s timeout


class Body:
    """A sync body whose first call outlives its timeout; records each call's span."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.overlapped: list[int] = []
        self.spans: dict[int, tuple[float, float]] = {}
        self.calls = 0

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            call = self.calls
            self.running += 1
            if self.running > 1:
                self.overlapped.append(call)
        started = time.monotonic()
        try:
            if call == 1:
                time.sleep(OUTLIVES_S)
            return f"call {call}"
        finally:
            with self.lock:
                self.running -= 1
                self.spans[call] = (started, time.monotonic())


def _graph(body: Body, **options: Any) -> TaskGraph:
    @task(timeout_s=0.2, **options)
    def slow() -> str:
        return body()

    return TaskGraph.build([slow])


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_a_resume_never_overlaps_the_abandoned_attempt_of_its_run(
    registry: flowplan.Registry, driver: str
) -> None:
    body = Body()
    graph = _graph(body)

    def run(planned: flowplan.Plan) -> flowplan.Snapshot:
        if driver == "asyncio":
            return asyncio.run(asyncio.wait_for(aexecute(planned), timeout=60))
        return execute(planned)

    first = run(plan(graph))
    record = first["slow"]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.kind == "timeout"
    assert body.calls == 1  # still running, abandoned

    second = run(plan(graph, first))  # resumed at once, in this process, under a new run id
    assert second.run_id != first.run_id
    assert second.value("slow") == "call 2"
    assert body.overlapped == []
    assert body.spans[2][0] >= body.spans[1][1]  # started after the abandoned attempt ended

    # and a resume of that resume belongs to the same lineage too
    assert plan(graph, second).lineage_id == first.run_id


def test_an_idempotent_task_may_resume_beside_its_abandoned_attempt(
    registry: flowplan.Registry,
) -> None:
    body = Body()
    graph = _graph(body, effect="idempotent")
    first = execute(plan(graph))
    assert first["slow"].status is TaskStatus.FAILED
    started = time.monotonic()
    second = execute(plan(graph, first))
    assert second.value("slow") == "call 2"
    assert time.monotonic() - started < OUTLIVES_S  # did not wait: running twice is harmless
    assert body.overlapped == [2]


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_reconcile_waits_for_the_abandoned_attempt_before_asking(
    registry: flowplan.Registry, driver: str
) -> None:
    provider: list[str] = []  # what the payment provider recorded
    calls: list[int] = []

    def find_charge() -> str | flowplan.NotDoneType:
        return provider[0] if provider else flowplan.NotDone

    @task(timeout_s=0.2, effect="at_most_once", reconcile=find_charge)
    def charge() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            time.sleep(OUTLIVES_S)  # slow provider: the attempt times out, then goes through
        provider.append(f"ch_{len(calls)}")
        return provider[-1]

    def run(planned: flowplan.Plan) -> flowplan.Snapshot:
        if driver == "asyncio":
            return asyncio.run(asyncio.wait_for(aexecute(planned), timeout=60))
        return execute(planned)

    graph = TaskGraph.build([charge])
    first = run(plan(graph))
    assert first["charge"].status is TaskStatus.IN_DOUBT
    # resumed at once: asking the provider now would find nothing and charge again
    second = run(plan(graph, first))
    assert second.value(charge) == "ch_1"
    assert provider == ["ch_1"]
    assert calls == [1]


def _careful(marker: str, log: str) -> str:
    """Runs in a child process: the first call outlives its timeout; each call logs its span."""
    first = not Path(marker).exists()
    Path(marker).write_text("started")
    started = time.time()
    if first:
        time.sleep(OUTLIVES_S + 0.5)
    with Path(log).open("a") as out:
        out.write(f"{'first' if first else 'again'} {started!r} {time.time()!r}\n")
    return "first" if first else "again"


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_a_resume_on_a_process_pool_waits_for_the_abandoned_attempt(
    registry: flowplan.Registry, tmp_path: Path, driver: str
) -> None:
    # a stdlib ProcessPoolExecutor cannot stop a running attempt: it is abandoned, running on
    marker, log = str(tmp_path / "marker"), str(tmp_path / "log")

    @task(timeout_s=0.5)
    def careful() -> str:
        return _careful(marker, log)

    graph = TaskGraph.build([careful])
    with ProcessPoolExecutor(2) as pool:

        def run(planned: flowplan.Plan) -> flowplan.Snapshot:
            if driver == "asyncio":
                return asyncio.run(asyncio.wait_for(aexecute(planned, executor=pool), 60))
            return execute(planned, executor=pool)

        first = run(plan(graph))
        assert first["careful"].status is TaskStatus.FAILED
        second = run(plan(graph, first))
        assert second.value(careful) == "again"
    lines = Path(log).read_text().splitlines()
    spans = {kind: (float(a), float(b)) for kind, a, b in (line.split() for line in lines)}
    assert spans["again"][0] >= spans["first"][1]  # started after the abandoned one ended


def _charge(marker: str, provider: str) -> str:
    """Runs in a child process: the first charge goes through after its attempt timed out."""
    first = not Path(marker).exists()
    Path(marker).write_text("started")
    if first:
        time.sleep(OUTLIVES_S)
    with Path(provider).open("a") as out:
        out.write("charged\n")
    return "charged"


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_reconcile_on_a_process_pool_waits_for_the_abandoned_attempt(
    registry: flowplan.Registry, tmp_path: Path, driver: str
) -> None:
    marker, provider = str(tmp_path / "marker"), tmp_path / "provider"

    def find_charge() -> str | flowplan.NotDoneType:
        return "charged" if provider.exists() else flowplan.NotDone

    @task(timeout_s=0.3, effect="at_most_once", reconcile=find_charge)
    def charge() -> str:
        return _charge(marker, str(provider))

    graph = TaskGraph.build([charge])
    with ProcessPoolExecutor(2) as pool:

        def run(planned: flowplan.Plan) -> flowplan.Snapshot:
            if driver == "asyncio":
                return asyncio.run(asyncio.wait_for(aexecute(planned, executor=pool), 60))
            return execute(planned, executor=pool)

        first = run(plan(graph))
        assert first["charge"].status is TaskStatus.IN_DOUBT
        second = run(plan(graph, first))  # at once: the charge is still going through
        assert second.value(charge) == "charged"
    assert provider.read_text().splitlines() == ["charged"]  # charged once
