"""Hooks that say which events they want (``WantsEvents``), and ``Flow`` under a logger that
filters events out: the run's outcome never depends on who listens."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
import structlog

from flowplan import (
    Flow,
    InlineExecutor,
    RecordingHook,
    StepResult,
    StepState,
    StructlogHook,
    TaskGraph,
    execute,
    plan,
    task,
)
from flowplan._machine import _Run
from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskEvent,
    TaskFailed,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from flowplan.hooks import HookDispatcher, WantsEvents
from flowplan.snapshot import Snapshot, TaskRecord
from flowplan.spec import TaskSpec


def _filtering(level: int) -> tuple[Any, structlog.testing.CapturingLogger]:
    """A structlog logger that drops events below ``level``, and the sink it writes to."""
    sink = structlog.testing.CapturingLogger()
    logger = structlog.wrap_logger(
        sink, wrapper_class=structlog.make_filtering_bound_logger(level), processors=[]
    )
    return logger, sink


class _Wanting:
    """A hook that wants only ``kinds`` and records what it is given."""

    def __init__(self, kinds: Iterable[type[Event]] | None) -> None:
        self.kinds = kinds
        self.asked = 0
        self.events: list[Event] = []

    def wanted_events(self) -> Iterable[type[Event]] | None:
        self.asked += 1
        return self.kinds

    def on_event(self, event: Event) -> None:
        self.events.append(event)


def _pipeline(tries: dict[str, int] | None = None) -> list[TaskSpec[..., Any]]:
    """Successes, a retry that then succeeds, a failure and the skip it causes; ``tries``
    counts the calls of ``source`` and ``flaky``."""
    tries = {} if tries is None else tries
    lock = threading.Lock()

    @task
    def source() -> int:
        with lock:
            tries["source"] = tries.get("source", 0) + 1
        return 1

    @task(depends_on=[source], retry=2, retry_backoff_base_ms=0)
    def flaky(source: int) -> int:
        with lock:
            tries["flaky"] = tries.get("flaky", 0) + 1
            if tries["flaky"] == 1:
                raise ConnectionError("first try fails")
        return source + 1

    @task(depends_on=[source])
    def broken(source: int) -> int:
        raise ValueError(f"bad row {source}")

    @task(depends_on=[broken])
    def after_broken(broken: int) -> int:
        return broken

    @task(depends_on=[source, flaky])
    def total(source: int, flaky: int) -> int:
        return source + flaky

    @task(depends_on=[total])
    def last(total: int) -> int:
        return total * 10

    return [source, flaky, broken, after_broken, total, last]


def _outcome(record: TaskRecord) -> dict[str, Any]:
    """Every field of a record but its times (and the error's live object and traceback)."""
    fields = attrs.asdict(record, recurse=False)
    for name in ("started_at", "finished_at", "duration_ms", "error"):
        del fields[name]
    error = record.error
    fields["error"] = None if error is None else (error.type, error.message, error.kind)
    return fields


def _outcomes(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    return {name: _outcome(record) for name, record in snapshot.records.items()}


def test_the_dispatcher_gives_each_hook_only_what_it_wants() -> None:
    failures = _Wanting([TaskFailed])
    task_events = _Wanting([TaskEvent])  # type: ignore[list-item]  # a union: its members
    everything = RecordingHook()
    dispatch = HookDispatcher([failures, task_events, everything])
    started = TaskStarted("r", 0.0, "t", 1)
    failed = TaskFailed("r", 0.0, "t", 1, None, "boom")  # type: ignore[arg-type]
    finished = RunFinished("r", 0.0, "failed", (), 0.0)
    for event in (started, failed, finished):
        dispatch(event)
    assert failures.events == [failed]
    assert task_events.events == [started, failed]
    assert everything.events == [started, failed, finished]
    assert dispatch.wants(TaskStarted)
    assert dispatch.wants(RunFinished)
    assert failures.asked == 1  # once per dispatcher (a run), not per event


def test_hooks_wanting_nothing_leave_the_dispatcher_empty() -> None:
    dispatch = HookDispatcher([_Wanting(())])
    assert not dispatch
    assert not dispatch.wants(TaskFailed)


def test_a_hook_whose_wanted_events_fails_gets_every_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(_Wanting):
        def wanted_events(self) -> Iterable[type[Event]] | None:
            raise RuntimeError("cannot tell")

    class Wrong(_Wanting):
        def wanted_events(self) -> Iterable[type[Event]] | None:
            return ["task_failed"]  # type: ignore[list-item]

    broken, wrong = Broken(None), Wrong(None)
    with caplog.at_level(logging.ERROR, logger="flowplan"):
        dispatch = HookDispatcher([broken, wrong])
    assert "cannot tell" in caplog.text
    assert "must give event types, got 'task_failed'" in caplog.text
    started = TaskStarted("r", 0.0, "t", 1)
    dispatch(started)
    assert broken.events == [started]
    assert wrong.events == [started]


def test_structlog_hook_wants_what_its_logger_lets_through() -> None:
    assert isinstance(StructlogHook(), WantsEvents)
    warning, _ = _filtering(logging.WARNING)
    wanted = StructlogHook(warning).wanted_events()
    assert wanted is not None
    assert TaskStarted not in wanted
    assert TaskSucceeded not in wanted
    assert TaskSkipped not in wanted
    assert RunStarted not in wanted
    assert {TaskFailed, TaskRetrying, RunFinished} <= wanted  # error/warning; failed run: error
    error, _ = _filtering(logging.ERROR)
    wanted = StructlogHook(error).wanted_events()
    assert wanted is not None
    assert TaskRetrying not in wanted
    assert TaskFailed in wanted
    info, _ = _filtering(logging.INFO)
    assert StructlogHook(info).wanted_events() == StructlogHook(info).wanted_events()
    assert TaskStarted in (StructlogHook(info).wanted_events() or ())
    # A logger that cannot say: everything not excluded.
    assert StructlogHook(structlog.testing.CapturingLogger()).wanted_events() is None
    excluding = StructlogHook(structlog.testing.CapturingLogger(), exclude=("task_started",))
    assert TaskStarted not in (excluding.wanted_events() or {TaskStarted})


def test_a_run_whose_hooks_want_no_task_successes_is_quiet() -> None:
    the_plan = plan(TaskGraph.build(_pipeline()))
    filtered, _ = _filtering(logging.WARNING)
    shown, _ = _filtering(logging.INFO)
    common: dict[str, Any] = {"fail_fast": False, "store": None, "context": None}
    quiet = _Run(the_plan, hooks=[StructlogHook(filtered)], clock=float, **common)
    loud = _Run(the_plan, hooks=[StructlogHook(shown)], clock=float, **common)
    assert quiet.quiet
    assert quiet.dispatch
    assert not loud.quiet


# (threads with fail-fast: which tasks the stop cancels depends on thread timing)
@pytest.mark.parametrize(
    ("executor", "fail_fast"), [("inline", True), ("inline", False), ("threads", False)]
)
def test_a_filtering_logger_changes_no_outcome(executor: str, fail_fast: bool) -> None:
    outcomes = []
    for hooks in ("none", "info", "warning", "recording"):
        specs = _pipeline()
        the_plan = plan(TaskGraph.build(specs))
        attached: list[Any] = []
        if hooks in ("info", "warning"):
            logger, _ = _filtering(logging.INFO if hooks == "info" else logging.WARNING)
            attached.append(StructlogHook(logger))
        elif hooks == "recording":
            attached.append(RecordingHook())
        snapshot = execute(
            the_plan,
            executor=InlineExecutor() if executor == "inline" else None,
            fail_fast=fail_fast,
            hooks=attached,
        )
        outcomes.append(_outcomes(snapshot))
    assert outcomes[0]["flaky"]["attempts"] == 2
    assert outcomes[0]["after_broken"]["status"].value == "skipped"
    assert outcomes[1] == outcomes[0]
    assert outcomes[2] == outcomes[0]
    assert outcomes[3] == outcomes[0]


def test_flow_under_a_warning_logger_logs_failures_and_keeps_every_outcome() -> None:
    runs = []
    for level in (logging.INFO, logging.WARNING):
        logger, sink = _filtering(level)
        specs = _pipeline()
        flow = Flow(specs[3], specs[5], executor=InlineExecutor(), fail_fast=False, logger=logger)
        flow.run()
        assert flow.snapshot is not None
        runs.append((_outcomes(flow.snapshot), sink.calls))
    (shown, shown_calls), (filtered, filtered_calls) = runs
    assert filtered == shown
    names = [(call.method_name, call.kwargs["event"]) for call in filtered_calls]
    assert ("error", "task_failed") in names
    assert ("warning", "task_retrying") in names
    assert ("error", "run_finished") in names
    assert all(method != "info" for method, _ in names)
    failed = next(c for c in filtered_calls if c.kwargs["event"] == "task_failed")
    assert failed.kwargs["task"] == "broken"
    assert failed.kwargs["error"] == "ValueError: bad row 1"
    # the same warning and error lines as the unfiltered run logged
    loud = [
        (c.method_name, c.kwargs["event"], c.kwargs.get("task"))
        for c in shown_calls
        if c.method_name != "info"
    ]
    assert loud == [
        (c.method_name, c.kwargs["event"], c.kwargs.get("task")) for c in filtered_calls
    ]


def test_flow_resume_under_a_filtering_logger_matches_an_unfiltered_one() -> None:
    results = []
    for level in (logging.INFO, logging.WARNING):
        logger, _ = _filtering(level)
        tries: dict[str, int] = {}
        specs = _pipeline(tries)
        flow = Flow(specs[3], specs[5], executor=InlineExecutor(), fail_fast=False, logger=logger)
        flow.run()
        flow.resume()
        assert flow.snapshot is not None
        assert tries == {"source": 1, "flaky": 2}  # reused on resume: not run again
        results.append(_outcomes(flow.snapshot))
    assert results[0] == results[1]
    assert results[0]["broken"]["attempts"] == 1  # the failed task ran again, and failed


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_flow_results_present_every_record_of_a_quiet_run(executor: str) -> None:
    logger, _ = _filtering(logging.WARNING)
    specs = _pipeline()
    flow = Flow(
        specs[3],
        specs[5],
        executor=InlineExecutor() if executor == "inline" else None,
        fail_fast=False,
        logger=logger,
    )
    results = flow.run()
    snapshot = flow.snapshot
    assert snapshot is not None
    assert list(results) == list(snapshot.records)
    for name, result in results.items():
        expected = StepResult.from_record(snapshot.records[name])
        assert attrs.asdict(result, recurse=False) | {"error": None} == attrs.asdict(
            expected, recurse=False
        ) | {"error": None}
        assert type(result.error) is type(expected.error)
    assert results["last"].value == 30
    assert flow.value(specs[5]) == 30
    assert results["broken"].state is StepState.FAILED
    assert isinstance(results["broken"].error, ValueError)
