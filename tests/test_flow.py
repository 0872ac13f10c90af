"""The :class:`flowplan.Flow` façade: what it adds on top of the core, beyond flowing's docs.

StepResult values, the read-only results mapping, stores and hooks, the default structlog
hook, and errors that teach (unknown tasks with "did you mean", bad options).
"""

from __future__ import annotations

import doctest
import re
import threading
from pathlib import Path
from typing import Any, assert_type

import attrs
import pytest
import structlog

import flowplan.flow
from flowplan import (
    ErrorInfo,
    Flow,
    InlineExecutor,
    InvalidOptionError,
    MemoryStore,
    RecordingHook,
    Registry,
    RunFinished,
    RunStarted,
    StepResult,
    StepState,
    StructlogHook,
    TaskFailedError,
    TaskRecord,
    TaskStatus,
    UnknownTaskError,
    task,
)
from flowplan.spec import TaskSpec


def _quiet() -> structlog.testing.CapturingLogger:
    return structlog.testing.CapturingLogger()


def _pipeline() -> tuple[TaskSpec[..., Any], TaskSpec[..., Any], TaskSpec[..., Any]]:
    @task
    def fetch() -> int:
        return 2

    @task(depends_on=[fetch])
    def square(fetch: int) -> int:
        return fetch * fetch

    @task(depends_on=[square])
    def report(square: int) -> str:
        return f"={square}"

    return fetch, square, report


def test_step_result_fields_for_a_success() -> None:
    _, _, report = _pipeline()
    result = Flow(report, logger=_quiet()).run()["square"]
    assert result.name == "square"
    assert result.state is StepState.SUCCEEDED
    assert result.value == 4
    assert result.error is None
    assert result.attempts == 1
    assert result.duration_ms >= 0
    assert (result.step_key, result.cached, result.detached, result.overridden) == (
        None,
        False,
        False,
        False,
    )


def test_step_result_is_frozen_and_evolvable() -> None:
    result = StepResult("x", StepState.SUCCEEDED, value=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.value = 2  # type: ignore[misc]
    assert attrs.evolve(result, value=2).value == 2


def test_step_result_rebuilds_an_error_that_has_no_live_exception() -> None:
    info = ErrorInfo("builtins.ValueError", "bad input", kind="error")
    record = TaskRecord("x", TaskStatus.FAILED, attempts=1, error=info)
    error = StepResult.from_record(record).error
    assert isinstance(error, TaskFailedError)
    assert str(error) == "task 'x' failed: ValueError: bad input"
    bare = StepResult.from_record(TaskRecord("y", TaskStatus.FAILED, reason="crashed"))
    assert isinstance(bare.error, TaskFailedError)
    assert "crashed" in str(bare.error)


def test_step_state_has_flowings_values_plus_cancelled() -> None:
    assert [s.value for s in StepState] == [
        "pending",
        "running",
        "succeeded",
        "failed",
        "retrying",
        "skipped",
        "cancelled",
        "in_doubt",  # effect="at_most_once" (tests/test_effects.py)
    ]


def test_results_are_read_only_and_run_returns_a_copy() -> None:
    _, _, report = _pipeline()
    flow = Flow(report, logger=_quiet())
    returned = flow.run()
    returned.clear()  # the caller owns the returned dict
    assert list(flow.results) == ["fetch", "square", "report"]
    with pytest.raises(TypeError):
        flow.results["x"] = StepResult("x", StepState.SUCCEEDED)  # type: ignore[index]


def test_value_is_typed_by_the_task() -> None:
    @task
    async def fetch() -> int:
        return 3

    @task(depends_on=[fetch])
    def label(fetch: int) -> str:
        return str(fetch)

    flow = Flow(label, logger=_quiet())
    flow.run()
    assert assert_type(flow.value(fetch), int) == 3
    assert assert_type(flow.value(label), str) == "3"
    assert flow.value("label") == "3"


def test_value_of_unknown_task_is_both_ours_and_a_key_error() -> None:
    _, _, report = _pipeline()
    flow = Flow(report, logger=_quiet())
    flow.run()
    with pytest.raises(UnknownTaskError) as excinfo:
        flow.value("squar")
    assert isinstance(excinfo.value, KeyError)
    assert excinfo.value.suggestion == "square"
    assert str(excinfo.value) == "task 'squar' has no result in this flow; did you mean 'square'?"


def test_value_of_failed_task_is_task_failed_error() -> None:
    @task
    def broken() -> int:
        raise ValueError("boom")

    flow = Flow(broken, logger=_quiet())
    flow.run()
    with pytest.raises(TaskFailedError) as excinfo:
        flow.value(broken)
    assert isinstance(excinfo.value, RuntimeError)
    assert excinfo.value.task == "broken"
    assert "ValueError: boom" in str(excinfo.value)
    assert "override the task" in str(excinfo.value)


def test_override_of_unknown_task_suggests_a_name() -> None:
    _, _, report = _pipeline()
    with pytest.raises(UnknownTaskError) as excinfo:
        Flow(report, logger=_quiet()).override("fetsh", 1)
    assert excinfo.value.suggestion == "fetch"
    assert "did you mean 'fetch'?" in str(excinfo.value)


def test_override_of_a_redefined_task_with_the_same_name_is_refused() -> None:
    fetch, _, report = _pipeline()

    @task(name="fetch")
    def other_fetch() -> int:
        return 0

    flow = Flow(report, logger=_quiet())
    with pytest.raises(UnknownTaskError, match="another definition"):
        flow.override(other_fetch, 5)
    flow.override(fetch, 5)
    assert flow.run()["report"].value == "=25"


def test_override_never_reruns_succeeded_tasks() -> None:
    calls: list[str] = []

    @task
    def a() -> int:
        calls.append("a")
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        calls.append("b")
        return a + 1

    flow = Flow(b, logger=_quiet())
    flow.run()
    flow.override(a, 100)
    results = flow.resume()
    assert calls == ["a", "b"]
    assert results["a"].value == 100
    assert results["a"].overridden
    assert results["b"].value == 2  # b succeeded: it is not run again


def test_memory_store_records_the_run() -> None:
    _, _, report = _pipeline()
    store = MemoryStore()
    flow = Flow(report, store=store, logger=_quiet())
    flow.run()
    (run_id,) = store.run_ids()
    assert store.status(run_id) == "succeeded"
    assert store.load(run_id).value("report") == "=4"
    assert flow.snapshot is not None
    assert flow.snapshot.run_id == run_id


def test_hooks_receive_the_event_stream() -> None:
    _, _, report = _pipeline()
    recorder = RecordingHook()
    Flow(report, hooks=[recorder], logger=_quiet()).run()
    assert isinstance(recorder.events[0], RunStarted)
    assert isinstance(recorder.events[-1], RunFinished)
    assert recorder.events[-1].status == "succeeded"
    succeeded = [type(e).__name__ for e in recorder.events if getattr(e, "task", "") == "square"]
    assert succeeded == ["TaskStarted", "TaskSucceeded"]


def test_default_structlog_hook_logs_events() -> None:
    _, _, report = _pipeline()
    with structlog.testing.capture_logs() as logs:
        Flow(report).run()
    names = [(entry["event"], entry.get("task")) for entry in logs]
    assert names[0] == ("run_started", None)
    assert ("task_succeeded", "square") in names
    assert names[-1] == ("run_finished", None)
    assert all("run_id" in entry for entry in logs)


def test_logger_option_replaces_the_default_logger() -> None:
    _, _, report = _pipeline()
    logger = structlog.testing.CapturingLogger()
    with structlog.testing.capture_logs() as default_logs:
        Flow(report, logger=logger).run()
    assert default_logs == []
    assert [call.args[0] for call in logger.calls][-1] == "run_finished"


def test_a_structlog_hook_of_the_users_replaces_the_built_in_one() -> None:
    """Every event is logged once: ``hooks=[StructlogHook()]`` used to log each event twice."""
    _, _, report = _pipeline()
    with structlog.testing.capture_logs() as logs:
        Flow(report, hooks=[StructlogHook()]).run()
    names = [(entry["event"], entry.get("task")) for entry in logs]
    assert names.count(("run_finished", None)) == 1
    assert names.count(("task_succeeded", "square")) == 1
    assert len(names) == len(set(names))

    mine = structlog.testing.CapturingLogger()
    with structlog.testing.capture_logs() as default_logs:
        Flow(report, hooks=[StructlogHook(mine, exclude=("task_started",))]).run()
    assert default_logs == []  # the built-in hook is gone; the user's has every event
    logged = [call.args[0] for call in mine.calls]
    assert logged.count("run_finished") == 1
    assert "task_started" not in logged


def test_log_false_turns_the_built_in_hook_off() -> None:
    _, _, report = _pipeline()
    recorder = RecordingHook()
    with structlog.testing.capture_logs() as logs:
        Flow(report, log=False, hooks=[recorder]).run()
    assert logs == []
    assert isinstance(recorder.events[-1], RunFinished)  # other hooks still see everything
    with structlog.testing.capture_logs() as logs:
        Flow(report, log=True).run()
    assert logs[-1]["event"] == "run_finished"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log": "no"}, r"log must be True or False, got 'no' \(str\)"),
        ({"log": False, "logger": object()}, "which log=False turns off"),
        (
            {"hooks": [StructlogHook()], "logger": object()},
            r"give it the logger instead: hooks=\[StructlogHook\(logger\)\]",
        ),
    ],
)
def test_logging_options_that_would_be_ignored_are_refused(
    kwargs: dict[str, Any], match: str
) -> None:
    _, _, report = _pipeline()
    with pytest.raises(InvalidOptionError, match=match) as caught:
        Flow(report, **kwargs)
    assert caught.value.option in ("log", "logger")


def test_executor_option_is_used() -> None:
    threads: set[int] = set()

    @task
    def where() -> None:
        threads.add(threading.get_ident())

    Flow(where, executor=InlineExecutor(), logger=_quiet()).run()
    assert threads == {threading.get_ident()}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_workers": 0}, "max_workers must be a whole number >= 1, got 0"),
        ({"store": object()}, "store must implement StateStore"),
        ({"hooks": [print]}, "hooks must have an on_event"),
    ],
)
def test_bad_options_are_explained(kwargs: dict[str, Any], match: str) -> None:
    _, _, report = _pipeline()
    with pytest.raises(InvalidOptionError, match=match):
        Flow(report, **kwargs)


def test_a_terminal_that_is_not_a_task_is_explained() -> None:
    def plain() -> None: ...

    with pytest.raises(InvalidOptionError, match=r"decorate it with @task"):
        Flow(plain)  # type: ignore[arg-type]


def test_discovery_by_identity_ignores_a_stale_detached_task_with_a_current_name() -> None:
    @task
    def main() -> int:
        return 1

    @task(depends_on=[main], detached=True)
    def notify(main: int) -> str:
        return "stale"

    # The module is run again (a REPL cell, a reload): same names, new definitions.
    @task(name="main")
    def main_again() -> int:
        return 2

    @task(depends_on=[main_again], detached=True, name="notify")
    def notify_again(main: int) -> str:
        return "current"

    results = Flow(main_again, logger=_quiet()).run()
    assert results["notify"].value == "current"
    assert results["main"].value == 2


def test_explicit_registry_is_where_detached_tasks_are_discovered() -> None:
    registry = Registry()

    @task
    def main() -> int:
        return 1

    @task(depends_on=[main], detached=True)
    def in_default(main: int) -> None: ...

    assert set(Flow(main, registry=registry, logger=_quiet()).run()) == {"main"}
    registry.register(in_default)
    assert set(Flow(main, registry=registry, logger=_quiet()).run()) == {"main", "in_default"}


def test_summary_marks_overrides_cancellations_and_is_one_line_per_task() -> None:
    @task
    def source() -> int:
        return 1

    @task(depends_on=[source])
    def broken(source: int) -> int:
        raise ValueError("first line\nsecond line")

    @task(depends_on=[broken])
    def after(broken: int) -> int:
        return broken

    flow = Flow(after, logger=_quiet())
    flow.override(source, 5)
    flow.run()
    lines = flow.summary().splitlines()
    assert len(lines) == 5  # one line per task, then the root causes apart from cascades
    assert lines[0] == "  SUCCEEDED source (0ms) [overridden]"
    assert lines[1].endswith("err=ValueError: first line second line")
    assert "root cause: 'broken'" in lines[2]
    assert lines[3:] == [
        "root causes:",
        "  broken failed (ValueError: first line) -> skipped 1: after",
    ]


def test_an_interrupt_keeps_finished_results_for_resume() -> None:
    calls: list[str] = []
    interrupt = [True]

    @task
    def first() -> int:
        calls.append("first")
        return 1

    @task(depends_on=[first])
    def second(first: int) -> int:
        calls.append("second")
        if interrupt[0]:
            raise KeyboardInterrupt
        return first + 1

    flow = Flow(second, executor=InlineExecutor(), logger=_quiet())
    with pytest.raises(KeyboardInterrupt):
        flow.run()
    assert flow.results["first"].state is StepState.SUCCEEDED
    assert flow.results["second"].state is StepState.FAILED
    interrupt[0] = False
    assert flow.resume()["second"].value == 2
    assert calls == ["first", "second", "second"]


def test_journal_and_store_both_receive_records(tmp_path: Path) -> None:
    _, _, report = _pipeline()
    store = MemoryStore()
    flow = Flow(report, store=store, journal_path=tmp_path / "j.jsonl", logger=_quiet())
    results = flow.run()
    assert store.load(store.run_ids()[0]).value("report") == "=4"
    assert len((tmp_path / "j.jsonl").read_text().splitlines()) == 3
    assert results["report"].step_key is not None


def test_repr_and_detached_failures_are_fresh_values() -> None:
    _, _, report = _pipeline()
    flow = Flow(report, logger=_quiet())
    assert repr(flow) == "<Flow terminals=(report) not run>"
    flow.run()
    assert repr(flow) == "<Flow terminals=(report) succeeded=3>"
    flow.detached_failures.append(StepResult("x", StepState.FAILED))
    assert flow.detached_failures == []


def test_module_doctests() -> None:
    failures, tests = doctest.testmod(flowplan.flow, optionflags=doctest.ELLIPSIS)
    assert tests > 0
    assert failures == 0


def test_summary_says_how_many_attempts_in_words() -> None:
    calls: list[int] = []

    @task(retry=2, retry_backoff_base_ms=0)
    def flaky_twice() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return 1

    flow = Flow(flaky_twice, logger=structlog.testing.CapturingLogger())
    flow.run()
    line = flow.summary().splitlines()[0]
    assert re.fullmatch(r"  SUCCEEDED flaky_twice \(\d+ms, 3 attempts\)", line), line
