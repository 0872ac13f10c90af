"""Tests for flowplan._gc.gc_paused and its use by TaskGraph.build and plan()."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flowplan import (
    Dependency,
    GraphValidationError,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    UnknownTaskError,
    plan,
)
from flowplan._gc import gc_paused

# ``flowplan.plan`` as an attribute is the function (re-exported by the package): take the module.
plan_module = sys.modules["flowplan.plan"]
graph_module = sys.modules["flowplan.graph"]

JOIN_TIMEOUT_S = 10.0


class BoomError(Exception):
    """Raised inside a pause to check the collector comes back."""


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    """Start each test with the collector enabled; enable it again afterwards, and check the
    shared pause was not left held (a leaked level would keep GC off after a later pause)."""
    gc.enable()
    yield
    gc.enable()
    with gc_paused:
        pass
    assert gc.isenabled(), "gc_paused was left held by the test"


def extract() -> int:
    return 1


def double(extract: int) -> int:
    return extract * 2


def _specs() -> list[TaskSpec[..., Any]]:
    return [
        TaskSpec("extract", extract),
        TaskSpec("double", double, deps=(Dependency("extract"),)),
    ]


def _graph() -> TaskGraph:
    return TaskGraph.build(_specs(), check_types=False)


# -- the context manager ------------------------------------------------------------------------
def test_gc_is_disabled_inside_and_enabled_after() -> None:
    assert gc.isenabled()
    with gc_paused:
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_pause_can_be_used_again() -> None:
    for _ in range(3):
        with gc_paused:
            assert not gc.isenabled()
        assert gc.isenabled()


def test_nested_pauses_keep_gc_disabled_until_the_outer_exits() -> None:
    with gc_paused:
        with gc_paused:
            with gc_paused:
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner exits do not resume the collector
    assert gc.isenabled()


def _raise_inside_pause(seen: list[bool]) -> None:
    with gc_paused:
        seen.append(gc.isenabled())
        raise BoomError


def test_an_exception_inside_still_reenables_gc() -> None:
    seen: list[bool] = []
    with pytest.raises(BoomError):
        _raise_inside_pause(seen)
    assert seen == [False]
    assert gc.isenabled()


def test_an_exception_through_nested_pauses_reenables_gc_once_outside() -> None:
    with gc_paused:
        with pytest.raises(BoomError), gc_paused:
            raise BoomError
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_the_pause_does_not_swallow_exceptions() -> None:
    with pytest.raises(BoomError, match="kept"), gc_paused:
        raise BoomError("kept")


def test_gc_disabled_by_the_program_stays_disabled() -> None:
    gc.disable()
    with gc_paused:
        assert not gc.isenabled()
        with gc_paused:
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()
    with pytest.raises(BoomError), gc_paused:
        raise BoomError
    assert not gc.isenabled()


def test_the_state_is_taken_anew_for_each_outermost_pause() -> None:
    gc.disable()
    with gc_paused:
        pass
    assert not gc.isenabled()
    gc.enable()  # the program turns it back on: the next pause must resume it
    with gc_paused:
        assert not gc.isenabled()
    assert gc.isenabled()


def _hold_pause(entered: threading.Event, release: threading.Event, errors: list[str]) -> None:
    try:
        with gc_paused:
            entered.set()
            if not release.wait(JOIN_TIMEOUT_S):
                errors.append("never released")
    except BaseException as exc:  # pragma: no cover - reported by the test
        errors.append(repr(exc))
        entered.set()


@pytest.mark.parametrize("first_to_exit", ["first_entered", "last_entered"])
def test_overlapping_pauses_from_two_threads(first_to_exit: str) -> None:
    errors: list[str] = []
    entered = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(target=_hold_pause, args=(entered[i], release[i], errors))
        for i in range(2)
    ]
    threads[0].start()
    assert entered[0].wait(JOIN_TIMEOUT_S)
    assert not gc.isenabled()
    threads[1].start()  # enters while thread 0 still holds the pause
    assert entered[1].wait(JOIN_TIMEOUT_S)
    assert not gc.isenabled()

    order = [0, 1] if first_to_exit == "first_entered" else [1, 0]
    first, second = (threads[i] for i in order)
    release[order[0]].set()
    first.join(JOIN_TIMEOUT_S)
    assert not first.is_alive()
    assert not gc.isenabled()  # the other thread still holds the pause
    release[order[1]].set()
    second.join(JOIN_TIMEOUT_S)
    assert not second.is_alive()
    assert errors == []
    assert gc.isenabled()


def test_overlapping_pauses_from_two_threads_keep_a_disabled_gc_disabled() -> None:
    gc.disable()
    errors: list[str] = []
    entered, release = threading.Event(), threading.Event()
    worker = threading.Thread(target=_hold_pause, args=(entered, release, errors))
    worker.start()
    assert entered.wait(JOIN_TIMEOUT_S)
    with gc_paused:
        release.set()
        worker.join(JOIN_TIMEOUT_S)
        assert not worker.is_alive()
    assert errors == []
    assert not gc.isenabled()


# -- TaskGraph.build and plan() ------------------------------------------------------------------
@pytest.mark.parametrize("enabled", [True, False])
def test_build_leaves_gc_as_it_was(enabled: bool) -> None:
    if not enabled:
        gc.disable()
    graph = _graph()
    assert graph.order == ("extract", "double")
    assert gc.isenabled() is enabled


@pytest.mark.parametrize("enabled", [True, False])
def test_from_terminals_leaves_gc_as_it_was(enabled: bool) -> None:
    if not enabled:
        gc.disable()
    root = TaskSpec("extract", extract)
    leaf = TaskSpec("double", double, deps=(Dependency("extract", root),))
    graph = TaskGraph.from_terminals(leaf, check_types=False)
    assert graph.order == ("extract", "double")
    assert gc.isenabled() is enabled


@pytest.mark.parametrize("enabled", [True, False])
def test_a_failing_build_leaves_gc_as_it_was(enabled: bool) -> None:
    if not enabled:
        gc.disable()
    bad = TaskSpec("double", double, deps=(Dependency("extrct"),))
    with pytest.raises(GraphValidationError) as info:
        TaskGraph.build([TaskSpec("extract", extract), bad], check_types=False)
    assert any(isinstance(p, UnknownTaskError) for p in info.value.exceptions)
    assert gc.isenabled() is enabled


@pytest.mark.parametrize("enabled", [True, False])
def test_an_empty_build_leaves_gc_as_it_was(enabled: bool) -> None:
    if not enabled:
        gc.disable()
    with pytest.raises(GraphValidationError, match="empty graph"):
        TaskGraph.build([])
    assert gc.isenabled() is enabled


def _recording_edge_check(seen: list[bool]) -> Any:
    def edge_type_problems(specs: Mapping[str, TaskSpec[..., Any]]) -> list[Any]:
        seen.append(gc.isenabled())
        return []

    return edge_type_problems


def test_gc_is_paused_during_build(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(graph_module, "edge_type_problems", _recording_edge_check(seen))
    graph = TaskGraph.build(_specs(), check_types=True)
    assert graph.order == ("extract", "double")
    assert seen == [False]  # called once, with the collector off
    assert gc.isenabled()


def test_gc_is_paused_during_a_failing_build(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(graph_module, "edge_type_problems", _recording_edge_check(seen))
    bad = TaskSpec("double", double, deps=(Dependency("extrct"),))
    with pytest.raises(GraphValidationError):
        TaskGraph.build([TaskSpec("extract", extract), bad], check_types=True)
    assert seen == [False]
    assert gc.isenabled()


def test_a_raising_step_inside_build_reenables_gc(monkeypatch: pytest.MonkeyPatch) -> None:
    def exploding(specs: Mapping[str, TaskSpec[..., Any]]) -> list[Any]:
        assert not gc.isenabled()
        raise BoomError

    monkeypatch.setattr(graph_module, "edge_type_problems", exploding)
    with pytest.raises(BoomError):
        TaskGraph.build(_specs(), check_types=True)
    assert gc.isenabled()


def _recording_liveness(seen: list[bool]) -> Any:
    def check_liveness(graph: TaskGraph, to_run: Any, reused: Any) -> None:
        seen.append(gc.isenabled())

    return check_liveness


@pytest.mark.parametrize("enabled", [True, False])
def test_plan_leaves_gc_as_it_was(enabled: bool) -> None:
    graph = _graph()
    if not enabled:
        gc.disable()
    fresh = plan(graph, run_id="r1")
    assert fresh.to_run == ("extract", "double")
    assert gc.isenabled() is enabled
    done = TaskRecord("extract", TaskStatus.SUCCEEDED, value=1, has_value=True)
    resumed = plan(graph, Snapshot("r0", {"extract": done}))
    assert resumed.to_run == ("double",)
    assert gc.isenabled() is enabled


@pytest.mark.parametrize("enabled", [True, False])
def test_a_failing_plan_leaves_gc_as_it_was(enabled: bool) -> None:
    graph = _graph()
    if not enabled:
        gc.disable()
    with pytest.raises(UnknownTaskError, match="did you mean 'double'"):
        plan(graph, targets=["doubel"])
    assert gc.isenabled() is enabled


def test_gc_is_paused_during_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = _graph()
    seen: list[bool] = []
    monkeypatch.setattr(plan_module, "check_liveness", _recording_liveness(seen))
    plan(graph)
    plan(graph, targets=["extract"])  # the slow path too
    assert seen == [False, False]
    assert gc.isenabled()


def test_build_in_one_thread_overlapping_plan_in_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan that finishes while another thread is still building keeps GC paused for it."""
    graph = _graph()
    inside, release = threading.Event(), threading.Event()
    errors: list[str] = []

    def blocking(specs: Mapping[str, TaskSpec[..., Any]]) -> list[Any]:
        inside.set()
        if not release.wait(JOIN_TIMEOUT_S):
            errors.append("never released")
        return []

    def build() -> None:
        try:
            TaskGraph.build(_specs(), check_types=True)
        except BaseException as exc:  # pragma: no cover - reported by the test
            errors.append(repr(exc))
            inside.set()

    monkeypatch.setattr(graph_module, "edge_type_problems", blocking)
    builder = threading.Thread(target=build)
    builder.start()
    assert inside.wait(JOIN_TIMEOUT_S)
    assert not gc.isenabled()
    assert plan(graph).to_run == ("extract", "double")
    assert not gc.isenabled()  # the build still runs: the collector stays off
    release.set()
    builder.join(JOIN_TIMEOUT_S)
    assert not builder.is_alive()
    assert errors == []
    assert gc.isenabled()
