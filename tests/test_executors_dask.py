"""DaskExecutor against a real LocalCluster: same snapshots, retries after a killed worker."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import distributed
import pytest

import flowplan
from flowplan import (
    DaskExecutor,
    InvalidOptionError,
    TaskGraph,
    TaskStatus,
    aexecute,
    execute,
    plan,
    task,
)
from remote_helpers import EXPECTED, dag, summary


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    """Two single-threaded worker processes; a killed worker's task is not rerun by Dask
    (``allowed-failures: 0``), so flowplan's own retry is what recovers it."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(  # type: ignore[no-untyped-call]  # distributed: untyped
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=50,
        ) as cluster,
        distributed.Client(cluster) as dask_client,  # type: ignore[no-untyped-call]
    ):
        _warm(dask_client)
        yield dask_client


def _warm(client: distributed.Client) -> None:
    """Import flowplan on every worker, so a first attempt's import never eats a timeout."""
    client.run(importlib.import_module, "flowplan._remote")


def test_the_same_dag_gives_the_same_snapshot_on_dask(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    graph, _ = dag()
    snapshot = execute(plan(graph), executor=DaskExecutor(client), fail_fast=False)
    assert summary(snapshot) == EXPECTED


def test_the_same_dag_on_dask_under_asyncio(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    graph, _ = dag()
    snapshot = asyncio.run(aexecute(plan(graph), executor=DaskExecutor(client), fail_fast=False))
    assert summary(snapshot) == EXPECTED


def test_task_parameters_named_like_dask_keywords_do_not_clash(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    @task
    def key() -> str:
        return "k"

    @task(depends_on=[key])
    def pure(key: str) -> str:
        return key + "p"

    snapshot = execute(plan(TaskGraph.build([key, pure])), executor=DaskExecutor(client))
    assert snapshot.value(pure) == "kp"


def test_a_retry_is_never_a_cached_failure(
    client: distributed.Client, registry: flowplan.Registry, tmp_path: Path
) -> None:
    marker = tmp_path / "tried"

    @task(retry=1, retry_backoff_base_ms=0)
    def once_failing() -> int:
        if not marker.exists():
            marker.write_text("1")
            raise RuntimeError("first")
        return 7

    snapshot = execute(plan(TaskGraph.build([once_failing])), executor=DaskExecutor(client))
    assert snapshot.value(once_failing) == 7
    assert snapshot.records["once_failing"].attempts == 2


def test_a_timed_out_attempt_is_recorded_timed_out(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    @task(timeout_s=0.3, idempotent=True)
    def slow() -> int:
        time.sleep(1)
        return 1

    snapshot = execute(plan(TaskGraph.build([slow])), executor=DaskExecutor(client))
    error = snapshot.records["slow"].error
    assert error is not None
    assert error.kind == "timeout"


def test_a_killed_worker_leads_to_a_retry_not_a_hang(
    client: distributed.Client, registry: flowplan.Registry, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"

    @task(retry=1, retry_backoff_base_ms=0, timeout_s=20)
    def victim() -> str:
        attempt = flowplan.current_attempt()
        assert attempt is not None
        if attempt.attempt == 1:
            pid_file.write_text(str(os.getpid()))
            time.sleep(15)
        return f"attempt {attempt.attempt}"

    def killer() -> None:
        deadline = time.monotonic() + 15
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    started = time.perf_counter()
    snapshot = execute(plan(TaskGraph.build([victim])), executor=DaskExecutor(client))
    thread.join()
    assert time.perf_counter() - started < 15  # never waited out the sleep or the timeout
    record = snapshot.records["victim"]
    assert record.status is TaskStatus.SUCCEEDED, record.error
    assert record.value == "attempt 2"
    assert record.attempts == 2
    client.wait_for_workers(2, timeout=30)  # the nanny restarts it for the next tests
    _warm(client)


def test_a_retry_waits_for_its_abandoned_attempt_unless_idempotent(
    client: distributed.Client, registry: flowplan.Registry, tmp_path: Path
) -> None:
    ended, retried = tmp_path / "ended", tmp_path / "retried"

    @task(timeout_s=0.3, retry=1, retry_backoff_base_ms=0)
    def careful() -> int:
        attempt = flowplan.current_attempt()
        assert attempt is not None
        if attempt.attempt == 1:
            time.sleep(1)
            ended.write_text(repr(time.time()))
            return 1
        retried.write_text(repr(time.time()))
        return 2

    snapshot = execute(plan(TaskGraph.build([careful])), executor=DaskExecutor(client))
    assert snapshot.value(careful) == 2
    assert float(retried.read_text()) >= float(ended.read_text())  # never overlapped


# -- keep_values_on_cluster: big values reach their consumers worker to worker -------------------

BIG = 256 * 1024  # bytes: above the kept-value threshold (64 KiB pickled)


def _recording(executor: DaskExecutor) -> list[tuple[str, int, int]]:
    """Record each keeping submission: trampoline name, payload size, cluster futures passed."""
    calls: list[tuple[str, int, int]] = []
    submit = executor.submit_keeping

    def spy(fn: Any, /, *args: Any) -> tuple[Any, Any]:
        futures = sum(isinstance(a, distributed.Future) for a in args)
        calls.append((fn.__name__, len(args[0]), futures))
        return submit(fn, *args)

    executor.submit_keeping = spy  # type: ignore[method-assign]
    return calls


def test_kept_values_reach_consumers_as_cluster_futures(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    @task
    def produce() -> bytes:
        return b"x" * BIG

    @task
    def small() -> int:
        return 5

    @task(depends_on=[produce, small], retry=1, retry_backoff_base_ms=0)
    def consume(produce: bytes, small: int) -> tuple[int, int]:
        attempt = flowplan.current_attempt()
        assert attempt is not None
        if attempt.attempt == 1:
            raise ConnectionError("the retry gets the kept value again")
        return len(produce), small

    executor = DaskExecutor(client, keep_values_on_cluster=True)
    calls = _recording(executor)
    snapshot = execute(plan(TaskGraph.build([produce, small, consume])), executor=executor)
    assert snapshot.value(consume) == (BIG, 5)
    assert snapshot.value(produce) == b"x" * BIG  # the driver still records every value
    assert snapshot.records["consume"].attempts == 2
    by_trampoline = sorted(calls)
    assert [c[0] for c in by_trampoline] == ["run_attempt"] * 2 + ["run_attempt_with"] * 2
    for _, payload_size, futures in by_trampoline[2:]:  # both attempts of consume
        assert futures == 1  # produce's result, not small's (small values travel inline)
        assert payload_size < BIG // 4  # the big value is not in the payload


def test_without_the_option_values_go_through_the_driver(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    @task
    def produce() -> bytes:
        return b"y" * BIG

    @task(depends_on=[produce])
    def consume(produce: bytes) -> int:
        return len(produce)

    executor = DaskExecutor(client)
    assert executor.keep_values_on_cluster is False
    calls = _recording(executor)
    snapshot = execute(plan(TaskGraph.build([produce, consume])), executor=executor)
    assert snapshot.value(consume) == BIG
    assert calls == []  # never the keeping path


def test_overridden_and_reused_values_travel_inline(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    @task
    def produce() -> bytes:
        return b"z" * BIG

    @task(depends_on=[produce])
    def consume(produce: bytes) -> int:
        return produce.count(b"o")

    graph = TaskGraph.build([produce, consume])
    executor = DaskExecutor(client, keep_values_on_cluster=True)
    calls = _recording(executor)
    snapshot = execute(plan(graph, overrides={produce: b"o" * BIG}), executor=executor)
    assert snapshot.value(consume) == BIG
    assert [(name, futures) for name, _, futures in calls] == [("run_attempt", 0)]


def test_kept_values_fill_the_upstream_dict_parameter(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    from flowplan import engine

    eng = engine.Engine()
    try:

        @eng.task(dag="d")
        def produce() -> bytes:
            return b"u" * BIG

        @eng.task(dag="d")
        def tiny() -> str:
            return "t"

        @eng.task(dag="d", deps=[produce, tiny])
        def consume(upstream: dict[str, Any]) -> tuple[int, str]:
            return len(upstream["produce"]), upstream["tiny"]

        graph = eng.graph("d")
    finally:
        eng.close()
    executor = DaskExecutor(client, keep_values_on_cluster=True)
    calls = _recording(executor)
    snapshot = execute(plan(graph), executor=executor)
    assert snapshot.value("consume") == (BIG, "t")
    assert ("run_attempt_with", 1) in [(name, futures) for name, _, futures in calls]


def test_the_async_driver_sends_values_through_the_driver(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    @task
    def produce() -> bytes:
        return b"a" * BIG

    @task(depends_on=[produce])
    def consume(produce: bytes) -> int:
        return len(produce)

    executor = DaskExecutor(client, keep_values_on_cluster=True)
    snapshot = asyncio.run(aexecute(plan(TaskGraph.build([produce, consume])), executor=executor))
    assert snapshot.value(consume) == BIG


def test_bad_dask_options_are_clear_errors(client: distributed.Client) -> None:
    with pytest.raises(InvalidOptionError, match=r"needs a distributed.Client, got 'localhost'"):
        DaskExecutor("localhost")
    with pytest.raises(InvalidOptionError, match="keep_values_on_cluster must be True or False"):
        DaskExecutor(client, keep_values_on_cluster="yes")  # type: ignore[arg-type]


def test_the_attempt_span_is_current_on_a_dask_worker(
    client: distributed.Client, registry: flowplan.Registry
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_helpers
    from flowplan import TaskSpec
    from flowplan.observe import OpenTelemetryHook

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    graph = TaskGraph.build([TaskSpec("ids", otel_helpers.span_ids)])
    for run in (execute, lambda p, **kw: asyncio.run(aexecute(p, **kw))):
        exporter.clear()
        snapshot = run(
            plan(graph), executor=DaskExecutor(client), hooks=[OpenTelemetryHook(provider)]
        )
        (span,) = [s for s in exporter.get_finished_spans() if s.name == "ids"]
        assert span.context is not None
        assert snapshot.value("ids") == (span.context.trace_id, span.context.span_id)
    provider.shutdown()
