"""The progress hook: rich's live display (tested on a recording console) and the plain mode."""

from __future__ import annotations

import doctest
import io

import pytest
from rich.console import Console

import flowplan.progress
from flowplan import InlineExecutor, Registry, TaskGraph, execute, plan, task
from flowplan.progress import ProgressHook


def _graph(registry: Registry, fail: bool) -> TaskGraph:
    @task
    def first() -> int:
        return 1

    @task(depends_on=[first])
    def second(first: int) -> int:
        if fail:
            raise RuntimeError("second broke")
        return first + 1

    @task(depends_on=[second])
    def third(second: int) -> int:
        return second

    return TaskGraph.build([first, second, third])


def test_plain_mode_writes_one_line_per_change(registry: Registry) -> None:
    out = io.StringIO()
    hook = ProgressHook(mode="plain", stream=out)
    graph = _graph(registry, fail=True)
    snap = execute(plan(graph, run_id="r1"), executor=InlineExecutor(), hooks=[hook])
    lines = out.getvalue().splitlines()
    assert lines[0] == "run r1: 3 task(s) to run"
    assert lines[1] == "[0/3] started first"
    assert lines[2].startswith("[1/3] first succeeded in ")
    assert any(line.startswith("[2/3] second failed: RuntimeError: second broke") for line in lines)
    assert any("third skipped: upstream 'second' failed" in line for line in lines)
    assert lines[-1].startswith("run r1 failed in ")
    assert lines[-1].endswith("1 succeeded, 1 failed, 1 skipped")
    assert hook.counts() == {"succeeded": 1, "failed": 1, "skipped": 1}

    # a resume: reused tasks count as done from the start
    out.truncate(0)
    out.seek(0)
    execute(plan(_graph(registry, fail=False), snap, run_id="r2"), hooks=[hook])
    lines = out.getvalue().splitlines()
    assert lines[0] == "run r2: 2 task(s) to run (1 reused)"
    assert lines[-1].endswith("2 succeeded, 1 reused")
    assert hook.done == 3
    assert hook.eta_s() == 0.0


def test_rich_mode_draws_on_the_given_console(registry: Registry) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=140, record=True)
    hook = ProgressHook(mode="rich", console=console)
    assert hook.mode == "rich"
    execute(plan(_graph(registry, fail=True), run_id="abcdef123456"), hooks=[hook])
    text = console.export_text()
    assert "run abcdef12 failed" in text
    assert "3/3" in text
    assert "1 succeeded, 1 failed, 1 skipped" in text
    assert "\x1b[" in console.file.getvalue()  # type: ignore[attr-defined]  # ANSI: a terminal


def test_auto_mode_falls_back_to_plain_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flowplan.progress, "rich_available", lambda: False)
    assert ProgressHook().mode == "plain"
    with pytest.raises(ImportError, match="pip install 'flowplan\\[progress\\]'"):
        ProgressHook(mode="rich")


def test_auto_mode_uses_rich_when_installed() -> None:
    assert flowplan.progress.rich_available()
    assert ProgressHook().mode == "rich"


def test_plain_mode_defaults_to_stderr(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    @task
    def only() -> int:
        return 1

    execute(plan(TaskGraph.build([only]), run_id="x"), hooks=[ProgressHook(mode="plain")])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "[1/1] only succeeded" in captured.err


def test_module_doctests() -> None:
    failures, tests = doctest.testmod(flowplan.progress, optionflags=doctest.ELLIPSIS)
    assert tests > 0
    assert failures == 0
