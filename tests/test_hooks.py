"""Tests for hooks: the event stream, structlog rendering, and error containment."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import CapturingLogger, capture_logs

from flowplan import (
    CallbackHook,
    Event,
    Hook,
    InlineExecutor,
    RecordingHook,
    Registry,
    RunFinished,
    RunStarted,
    StructlogHook,
    TaskGraph,
    TaskStarted,
    execute,
    plan,
    task,
)
from flowplan.hooks import HookDispatcher


@pytest.fixture
def graph(registry: Registry) -> TaskGraph:
    """One task of each fate: success, retry, skip, timeout (failure), cancellation."""
    release = threading.Event()
    outcomes = iter([True, False])

    @task
    def ok() -> int:
        return 1

    @task(when=lambda: False)
    def gated() -> None:
        pass

    @task(retry=1, retry_backoff_base_ms=0)
    def flaky() -> str:
        if next(outcomes):
            raise ValueError("bad input")
        return "fine"

    @task(timeout_s=0.05)
    def slow() -> None:
        release.wait(0.5)

    @task
    def later() -> None:
        pass

    return TaskGraph.build([ok, gated, flaky, slow, later])


def run(graph: TaskGraph, *hooks: Hook, run_id: str = "run-1") -> None:
    execute(plan(graph, run_id=run_id), executor=InlineExecutor(), hooks=hooks, fail_fast=True)


def test_structlog_hook_names_levels_and_fields(graph: TaskGraph) -> None:
    with capture_logs() as logs:
        run(graph, StructlogHook())
    names = [entry["event"] for entry in logs]
    assert names[0] == "run_started"
    assert names[-1] == "run_finished"
    assert set(names) == {
        "run_started",
        "task_started",
        "task_succeeded",
        "task_failed",
        "task_retrying",
        "task_skipped",
        "task_timed_out",
        "task_cancelled",
        "run_finished",
    }
    for entry in logs:
        assert entry["run_id"] == "run-1"
        assert entry["event"].islower()
        assert " " not in entry["event"]
        if entry["event"] not in ("run_started", "run_finished"):
            assert "task" in entry
    by_event: dict[str, list[MutableMapping[str, Any]]] = {}
    for entry in logs:
        by_event.setdefault(entry["event"], []).append(entry)

    (succeeded,) = [e for e in by_event["task_succeeded"] if e["task"] == "ok"]
    assert succeeded["attempt"] == 1
    assert succeeded["duration_ms"] >= 0
    assert succeeded["log_level"] == "info"
    (started,) = [e for e in by_event["task_started"] if e["task"] == "ok"]
    assert (started["attempt"], started["log_level"]) == (1, "info")

    (failed,) = by_event["task_failed"]
    assert (failed["task"], failed["attempt"], failed["log_level"]) == ("slow", 1, "error")
    assert (failed["error_type"], failed["error_kind"]) == (
        "flowplan.errors.TaskTimeoutError",
        "timeout",
    )
    assert failed["error"].startswith("TaskTimeoutError: task 'slow' attempt 1 exceeded")
    assert failed["reason"] == "timed out after 0.05s on attempt 1/1"
    assert failed["duration_ms"] >= 0

    (retrying,) = by_event["task_retrying"]
    assert (retrying["task"], retrying["attempt"], retrying["log_level"]) == (
        "flaky",
        1,
        "warning",
    )
    assert retrying["error"] == "ValueError: bad input"
    assert retrying["error_type"] == "ValueError"
    assert "exc_info" not in retrying  # a retry is no alert: no traceback
    assert retrying["delay_s"] == 0.0
    assert [e["attempt"] for e in by_event["task_succeeded"] if e["task"] == "flaky"] == [2]

    (timed_out,) = by_event["task_timed_out"]
    assert (timed_out["task"], timed_out["timeout_s"], timed_out["log_level"]) == (
        "slow",
        0.05,
        "warning",
    )

    (skipped,) = by_event["task_skipped"]
    assert (skipped["task"], skipped["root_cause"], skipped["log_level"]) == (
        "gated",
        "gated",
        "info",
    )
    (cancelled,) = by_event["task_cancelled"]
    assert (cancelled["task"], cancelled["root_cause"]) == ("later", "slow")

    (finished,) = by_event["run_finished"]
    assert finished["status"] == "failed"
    assert finished["log_level"] == "error"  # a failed run is an error, a succeeded one info
    assert finished["duration_ms"] >= 0
    assert (finished["succeeded"], finished["failed"]) == (2, 1)


def test_structlog_hook_excludes_events(graph: TaskGraph) -> None:
    with capture_logs() as logs:
        run(graph, StructlogHook(exclude=("task_started", "run_started")))
    names = {entry["event"] for entry in logs}
    assert "task_started" not in names
    assert "run_started" not in names
    assert "task_succeeded" in names


def test_structlog_hook_uses_the_logger_it_is_given(registry: Registry) -> None:
    @task
    def one() -> int:
        return 1

    logger = CapturingLogger()
    run(TaskGraph.build([one]), StructlogHook(logger))
    assert [(c.method_name, c.args[0]) for c in logger.calls] == [
        ("info", "run_started"),
        ("info", "task_started"),
        ("info", "task_succeeded"),
        ("info", "run_finished"),
    ]
    assert logger.calls[1].kwargs == {"run_id": "run-1", "task": "one", "attempt": 1}


def test_structlog_hook_renders_reused_and_released_events(registry: Registry) -> None:
    @task(retain_result=False)
    def big() -> list[int]:
        return [1]

    @task(depends_on=[big])
    def use(big: list[int]) -> int:
        return len(big)

    graph = TaskGraph.build([big, use])
    logger = CapturingLogger()
    first = execute(plan(graph), executor=InlineExecutor(), hooks=[StructlogHook(logger)])
    execute(
        plan(graph, first, overrides={"use": 5}),
        executor=InlineExecutor(),
        hooks=[StructlogHook(logger)],
    )
    names = [c.args[0] for c in logger.calls]
    assert "task_released" in names
    reused = [c.kwargs for c in logger.calls if c.args[0] == "task_reused"]
    assert {r["task"]: (r["cached"], r["overridden"]) for r in reused} == {
        "big": (False, False),
        "use": (False, True),
    }


def test_the_library_logs_nothing_without_hooks(
    graph: TaskGraph, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), capture_logs() as logs:
        run(graph)
    assert logs == []
    assert [r for r in caplog.records if r.name.startswith("flowplan")] == []


def test_the_library_never_configures_structlog() -> None:
    script = textwrap.dedent(
        """
        import structlog
        assert not structlog.is_configured()
        import flowplan
        from flowplan import InlineExecutor, Registry, StructlogHook, TaskGraph, execute, plan, task

        registry = Registry()

        @task(registry=registry)
        def one() -> int:
            return 1

        execute(plan(TaskGraph.build([one])), executor=InlineExecutor(), hooks=[StructlogHook()])
        print("configured" if structlog.is_configured() else "untouched")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "untouched"
    assert result.stdout.strip() == "untouched"  # stdout stays the program's own
    assert "task_succeeded" in result.stderr  # the default logger wrote the events to stderr


def test_hooks_are_protocols_and_helpers(registry: Registry) -> None:
    @task
    def one() -> int:
        return 1

    seen: list[Event] = []
    recorder = RecordingHook()
    callback = CallbackHook(seen.append)
    assert isinstance(recorder, Hook)
    assert isinstance(callback, Hook)
    assert isinstance(StructlogHook(), Hook)
    run(TaskGraph.build([one]), recorder, callback)
    assert seen == recorder.events
    assert isinstance(seen[0], RunStarted)
    assert isinstance(seen[1], TaskStarted)
    assert isinstance(seen[-1], RunFinished)


def test_dispatcher_reports_each_raising_hook_once(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    class Broken:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_event(self, event: Event) -> None:
            calls.append(self.name)
            raise RuntimeError(f"{self.name} broke")

    good = RecordingHook()
    dispatch = HookDispatcher([Broken("a"), good, Broken("b")])
    assert dispatch
    assert not HookDispatcher([])
    event = RunStarted("r", 0.0, ())
    with caplog.at_level(logging.ERROR, logger="flowplan"):
        for _ in range(3):
            dispatch(event)
    assert calls == ["a", "b"] * 3  # still called every time
    assert good.events == [event] * 3
    assert len(caplog.records) == 2
    assert "a broke" in caplog.text
    assert "b broke" in caplog.text
    assert all(r.levelno == logging.ERROR for r in caplog.records)


def test_structlog_is_not_touched_by_running_in_process(graph: TaskGraph) -> None:
    calls: list[Any] = []
    original = structlog.configure

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))
        original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(structlog, "configure", spy)
        mp.setattr(structlog, "configure_once", spy)
        run(graph, StructlogHook(CapturingLogger()))
    assert calls == []


def _json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_final_failure_logs_at_error_with_its_traceback_through_real_processors(
    registry: Registry,
) -> None:
    """``task_failed`` is an error with ``error_type``, ``error`` and ``exc_info``, so
    structlog's own ``dict_tracebacks``/``format_exc_info`` render the traceback; a retry that
    will be retried stays a warning; a failed run ends with an error."""
    attempts: list[int] = []

    def parse_row(row: str) -> int:
        return int(row)

    @task(retry=1, retry_backoff_base_ms=0)
    def load() -> int:
        attempts.append(1)
        if len(attempts) % 2:  # each run: the first attempt fails, the retry fails for good
            raise ConnectionError("flaky network")
        return parse_row("not a number")

    @task(depends_on=[load])
    def report(load: int) -> int:
        return load

    graph = TaskGraph.build([load, report])
    out = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
    )
    execute(plan(graph, run_id="r"), executor=InlineExecutor(), hooks=[StructlogHook(logger)])
    lines = {line["event"]: line for line in _json_lines(out)}
    retrying = lines["task_retrying"]
    assert (retrying["level"], retrying["error_type"]) == ("warning", "ConnectionError")
    assert "exception" not in retrying
    failed = lines["task_failed"]
    assert failed["level"] == "error"
    assert failed["error_type"] == "ValueError"
    assert failed["error"] == "ValueError: invalid literal for int() with base 10: 'not a number'"
    assert failed["error_kind"] == "error"
    (trace,) = failed["exception"]  # dict_tracebacks: one structured exception
    assert trace["exc_type"] == "ValueError"
    assert [frame["name"] for frame in trace["frames"]][-2:] == ["load", "parse_row"]
    finished = lines["run_finished"]
    assert (finished["level"], finished["status"], finished["skipped"]) == ("error", "failed", 1)

    text = io.StringIO()
    plain = structlog.wrap_logger(
        structlog.PrintLogger(text),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(),
        ],
    )
    execute(plan(graph), executor=InlineExecutor(), hooks=[StructlogHook(plain)])
    (failed_line,) = [line for line in text.getvalue().splitlines() if "task_failed" in line]
    assert "Traceback (most recent call last)" in failed_line
    assert "in parse_row" in failed_line


def test_a_succeeded_run_finishes_at_info_and_elements_name_their_parent(
    registry: Registry,
) -> None:
    @task
    def rows() -> list[int]:
        return [1, 0, 2]

    @task(depends_on=[rows], fan_out=rows)
    def invert(rows: int) -> float:
        return 1 / rows

    graph = TaskGraph.build([rows, invert])
    with capture_logs() as logs:
        execute(
            plan(graph, run_id="r"),
            executor=InlineExecutor(),
            hooks=[StructlogHook()],
            fail_fast=False,
        )
    (bad,) = [e for e in logs if e["event"] == "task_failed" and e["task"] == "invert[1]"]
    assert (bad["parent_task"], bad["element_index"], bad["log_level"]) == ("invert", 1, "error")
    assert bad["error_type"] == "ZeroDivisionError"
    assert isinstance(bad["exc_info"], ZeroDivisionError)
    started = [e for e in logs if e["event"] == "task_started" and "parent_task" in e]
    assert sorted((e["parent_task"], e["element_index"]) for e in started) == [
        ("invert", 0),
        ("invert", 1),
        ("invert", 2),
    ]
    assert all("parent_task" not in e for e in logs if e.get("task") in ("rows", "invert"))

    @task
    def fine() -> int:
        return 1

    with capture_logs() as logs:
        execute(plan(TaskGraph.build([fine])), executor=InlineExecutor(), hooks=[StructlogHook()])
    assert logs[-1]["event"] == "run_finished"
    assert (logs[-1]["status"], logs[-1]["log_level"]) == ("succeeded", "info")


def test_run_finished_counts_reused_tasks_as_reused(registry: Registry) -> None:
    @task
    def source() -> int:
        return 1

    @task(depends_on=[source])
    def sink(source: int) -> int:
        if not sink_ok:
            raise RuntimeError("not yet")
        return source

    sink_ok = False
    graph = TaskGraph.build([source, sink])
    first = execute(plan(graph), executor=InlineExecutor())
    sink_ok = True
    with capture_logs() as logs:
        execute(plan(graph, first), executor=InlineExecutor(), hooks=[StructlogHook()])
    finished = logs[-1]
    assert (finished["event"], finished["log_level"]) == ("run_finished", "info")
    assert (finished["succeeded"], finished["reused"]) == (1, 1)
    with capture_logs() as logs:
        execute(
            plan(graph, overrides={"source": 5}), executor=InlineExecutor(), hooks=[StructlogHook()]
        )
    assert (logs[-1]["succeeded"], logs[-1]["reused"]) == (1, 1)  # an override is reused too
