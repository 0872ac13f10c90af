"""Tests for flowplan.plan: run / reuse / not-needed decisions, their reasons, and purity."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from flowplan import (
    Action,
    ErrorInfo,
    InlineExecutor,
    Registry,
    Snapshot,
    TaskGraph,
    TaskRecord,
    TaskStatus,
    UnknownTaskError,
    execute,
    plan,
    task,
)


@pytest.fixture
def diamond(registry: Registry) -> TaskGraph:
    """extract → (left, right) → report, plus a detached notify after report and one after left."""

    @task
    def extract() -> int:
        return 1

    @task(depends_on=[extract])
    def left(extract: int) -> int:
        return extract + 1

    @task(depends_on=[extract])
    def right(extract: int) -> int:
        return extract + 2

    @task(depends_on=[left, right])
    def report(left: int, right: int) -> int:
        return left + right

    @task(depends_on=[report], detached=True)
    def notify(report: int) -> None:
        pass

    @task(depends_on=[left], detached=True)
    def audit_left(left: int) -> None:
        pass

    return TaskGraph.from_terminals(report)


def succeeded(name: str, value: Any, **kw: Any) -> TaskRecord:
    return TaskRecord(name, TaskStatus.SUCCEEDED, attempts=1, value=value, has_value=True, **kw)


def actions(the_plan: Any) -> dict[str, Action]:
    return {name: d.action for name, d in the_plan.decisions.items()}


def test_a_fresh_plan_runs_everything(diamond: TaskGraph) -> None:
    p = plan(diamond, run_id="r1")
    assert p.run_id == "r1"
    assert p.to_run == diamond.order
    assert dict(p.reused) == {}
    assert set(actions(p).values()) == {Action.RUN}
    assert p.explain("extract") == "run extract: no earlier record"
    assert p.explain().splitlines() == [
        f"{len(diamond.order)} to run, 0 to reuse, 0 not needed",
        *(
            f"run {n}: no earlier record"
            + (" (detached: its failure never fails the run)" if n in diamond.detached else "")
            for n in diamond.order
        ),
    ]
    assert p.action(diamond["report"]) is Action.RUN


def test_run_ids_are_fresh_by_default(diamond: TaskGraph) -> None:
    assert plan(diamond).run_id != plan(diamond).run_id


def test_resume_reuses_succeeded_and_reruns_the_rest(diamond: TaskGraph) -> None:
    boom = ErrorInfo("builtins.ValueError", "boom")
    snap = Snapshot(
        "r0",
        {
            "extract": succeeded("extract", 1),
            "left": succeeded("left", 2),
            "right": TaskRecord("right", TaskStatus.FAILED, attempts=1, error=boom),
            "report": TaskRecord(
                "report", TaskStatus.SKIPPED, reason="upstream 'right' failed", root_cause="right"
            ),
            "notify": TaskRecord("notify", TaskStatus.CANCELLED, root_cause="right"),
            "audit_left": TaskRecord("audit_left", TaskStatus.RUNNING),
        },
    )
    p = plan(diamond, snap)
    assert actions(p) == {
        "extract": Action.REUSE,
        "left": Action.REUSE,
        "right": Action.RUN,
        "report": Action.RUN,
        "notify": Action.RUN,
        "audit_left": Action.RUN,
    }
    assert p.to_run == ("right", "report", "notify", "audit_left")
    assert p.reused["left"] is snap["left"]
    assert p.explain("extract") == "reuse extract: succeeded in an earlier run"
    assert p.explain("right") == "run right: failed earlier (ValueError: boom)"
    assert p.explain("report") == "run report: was skipped earlier (upstream 'right' failed)"
    assert p.explain("notify") == (
        "run notify: was cancelled earlier (detached: its failure never fails the run)"
    )
    assert p.explain("audit_left") == (
        "run audit_left: was running when the earlier run stopped"
        " (detached: its failure never fails the run)"
    )

    snap2 = execute(p, executor=InlineExecutor())
    assert snap2.value("report") == 2 + 3
    assert snap2["extract"] == snap["extract"]  # carried over untouched


def test_journal_hits_say_so(diamond: TaskGraph) -> None:
    snap = Snapshot("r0", {"extract": succeeded("extract", 1, cached=True)})
    assert plan(diamond, snap).explain("extract") == "reuse extract: succeeded in journal"


def test_targets_plan_only_their_ancestors(diamond: TaskGraph) -> None:
    p = plan(diamond, targets=["left"])
    assert actions(p) == {
        "extract": Action.RUN,
        "left": Action.RUN,
        "right": Action.NOT_NEEDED,
        "report": Action.NOT_NEEDED,
        "notify": Action.NOT_NEEDED,
        "audit_left": Action.RUN,  # a detached side effect of an included task comes along
    }
    assert p.explain("right") == "not needed right: not upstream of any target"
    snap = execute(p, executor=InlineExecutor())
    assert set(snap) == {"extract", "left", "audit_left"}


def test_targets_may_be_specs_and_include_detached_chains(diamond: TaskGraph) -> None:
    p = plan(diamond, targets=[diamond["report"]])
    assert p.to_run == diamond.order


def test_rerun_runs_the_task_and_its_descendants(diamond: TaskGraph) -> None:
    first = execute(plan(diamond), executor=InlineExecutor())
    p = plan(diamond, first, rerun=["left"])
    assert actions(p) == {
        "extract": Action.REUSE,
        "left": Action.RUN,
        "right": Action.REUSE,
        "report": Action.RUN,
        "notify": Action.RUN,
        "audit_left": Action.RUN,
    }
    assert p.explain("left") == "run left: rerun requested"
    assert p.explain("report") == "run report: an upstream task is rerun"


def test_overrides_reuse_a_supplied_value(diamond: TaskGraph) -> None:
    p = plan(diamond, overrides={"right": 40, diamond["left"]: 2})
    assert p.action("right") is Action.REUSE
    assert p.explain("right") == "reuse right: overridden with a supplied value"
    record = p.reused["right"]
    assert (record.status, record.value, record.has_value, record.overridden) == (
        TaskStatus.SUCCEEDED,
        40,
        True,
        True,
    )
    snap = execute(p, executor=InlineExecutor())
    assert snap.value("report") == 42
    assert snap["right"].overridden


def test_override_wins_over_a_failed_record(diamond: TaskGraph) -> None:
    failed = Snapshot("r0", {"right": TaskRecord("right", TaskStatus.FAILED)})
    assert plan(diamond, failed, overrides={"right": 3}).action("right") is Action.REUSE


def test_step_key_mismatch_reruns(diamond: TaskGraph) -> None:
    snap = Snapshot(
        "r0",
        {
            "extract": succeeded("extract", 1, step_key="k-old"),
            "left": succeeded("left", 2, step_key="k-left"),
            "right": succeeded("right", 3),  # no key recorded: reusable
        },
    )
    keys = {"extract": "k-new", "left": "k-left", "right": "k-right"}
    p = plan(diamond, snap, step_keys=keys)
    assert p.action("extract") is Action.RUN
    assert p.explain("extract") == "run extract: its code, version or an upstream step changed"
    assert p.action("left") is Action.REUSE
    assert p.action("right") is Action.REUSE
    assert dict(p.step_keys) == keys
    # The new run records the new keys.
    snap2 = execute(p, executor=InlineExecutor())
    assert snap2["extract"].step_key == "k-new"


def test_a_released_value_needed_again_is_in_doubt_unless_pure(diamond: TaskGraph) -> None:
    released = attrs.evolve(succeeded("left", None), has_value=False, released=True)
    snap = Snapshot(
        "r0",
        {
            "extract": succeeded("extract", 1),
            "left": released,
            "right": succeeded("right", 3),
            "report": TaskRecord("report", TaskStatus.FAILED),
        },
    )
    p = plan(diamond, snap)
    assert p.action("left") is Action.IN_DOUBT  # no effect declared: never re-run silently
    assert p.explain("left").startswith(
        "in doubt left: succeeded earlier, but its value was released (retain_result=False) "
        "and 'report' needs it; running it again could repeat its effect (no effect declared)"
    )
    assert p.in_doubt["left"] is released
    assert p.action("extract") is Action.REUSE  # its value is still there
    snap2 = execute(p, executor=InlineExecutor())
    assert snap2["left"].status is TaskStatus.IN_DOUBT
    assert snap2["report"].root_cause == "left"
    settled = execute(plan(diamond, snap2, overrides={"left": 2}), executor=InlineExecutor())
    assert settled.value("report") == 5


def test_released_values_stay_reused_when_no_consumer_runs(diamond: TaskGraph) -> None:
    released = attrs.evolve(succeeded("left", None), has_value=False, released=True)
    snap = Snapshot(
        "r0",
        {
            "extract": succeeded("extract", 1),
            "left": released,
            "right": succeeded("right", 3),
            "report": succeeded("report", 5),
            "notify": succeeded("notify", None),
            "audit_left": succeeded("audit_left", None),
        },
    )
    assert plan(diamond, snap).to_run == ()


def test_released_pure_chains_recompute_upstream(registry: Registry) -> None:
    @task(retain_result=False, effect="pure")
    def a() -> int:
        return 1

    @task(depends_on=[a], retain_result=False, effect="pure")
    def b(a: int) -> int:
        return a + 1

    @task(depends_on=[b])
    def c(b: int) -> int:
        return b + 1

    graph = TaskGraph.build([a, b, c])
    snap = Snapshot(
        "r0",
        {
            "a": attrs.evolve(succeeded("a", None), has_value=False, released=True),
            "b": attrs.evolve(succeeded("b", None), has_value=False, released=True),
        },
    )
    p = plan(graph, snap)
    assert p.to_run == ("a", "b", "c")
    assert [p.action(n) for n in "abc"] == [Action.RUN] * 3
    assert p.explain("a").endswith("and 'b' needs it; effect='pure': recomputed")
    assert execute(p, executor=InlineExecutor()).value(c) == 3


@pytest.mark.parametrize("option", ["targets", "rerun", "overrides"])
def test_unknown_names_are_rejected_with_a_suggestion(diamond: TaskGraph, option: str) -> None:
    choices: dict[str, dict[str, Any]] = {
        "targets": {"targets": ["reprot"]},
        "rerun": {"rerun": ["reprot"]},
        "overrides": {"overrides": {"reprot": 1}},
    }
    kwargs = choices[option]
    with pytest.raises(UnknownTaskError, match="did you mean 'report'") as info:
        plan(diamond, **kwargs)
    assert info.value.name == "reprot"
    assert info.value.suggestion == "report"


def test_empty_targets_are_rejected(diamond: TaskGraph) -> None:
    with pytest.raises(UnknownTaskError, match="targets list is empty"):
        plan(diamond, targets=[])


def test_explain_and_action_reject_unknown_tasks(diamond: TaskGraph) -> None:
    p = plan(diamond)
    with pytest.raises(UnknownTaskError, match="did you mean 'left'"):
        p.explain("lefft")
    with pytest.raises(UnknownTaskError):
        p.action("nope")


def test_plan_is_pure(diamond: TaskGraph) -> None:
    snap = execute(plan(diamond), executor=InlineExecutor())
    before = dict(snap.records)
    kwargs: dict[str, Any] = {
        "targets": ["report"],
        "rerun": ["right"],
        "overrides": {"left": 7},
        "run_id": "same",
    }
    one, two = plan(diamond, snap, **kwargs), plan(diamond, snap, **kwargs)
    assert one.decisions == two.decisions
    assert one.reused == two.reused
    assert one.to_run == two.to_run
    assert one.explain() == two.explain()
    assert dict(snap.records) == before  # the snapshot is not touched


def test_plan_is_immutable(diamond: TaskGraph) -> None:
    p = plan(diamond)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        p.run_id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.decisions["extract"] = p.decisions["left"]  # type: ignore[index]
