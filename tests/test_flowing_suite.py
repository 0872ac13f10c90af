"""flowing's own test suite (its control-flow test module), case by case, against flowplan.

flowing ships 33 tests in ten groups. Each group below is one of flowing's test classes and each
test is one of its cases, under the same name, with the same program shape (untyped ``@task``
functions, counter dicts captured by closures, ``Flow(...)`` with ``journal_path=``) and the
same assertions; only the import differs (``from flowplan import ...``). The cases are written
anew for this module (type annotations for ``mypy --strict``, pytest instead of unittest, a
``tmp_path`` journal instead of ``tempfile.mktemp``), not copied.

Not applicable, so not here: ``TestClearRegistry.test_registry_empty_after_clear``, which
imports flowing's private module-level list ``_TASK_REGISTRY`` and compares it with ``[]``.
flowplan has no such private list (its registry is a :class:`flowplan.Registry` object); the
public behaviour that case guards — ``clear_registry()`` forgets every registered task — is
asserted here through the public API by ``test_registry_empty_after_clear_public_api``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from flowplan import Flow, StepState, clear_registry, default_registry, task

# -- TestBackwardCompat: v1.0 features keep working --------------------------------------------


def test_simple_chain() -> None:
    @task
    def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        return a + 1

    @task(depends_on=[b])
    def c(b: int) -> int:
        return b * 10

    flow = Flow(c)
    flow.run()
    assert flow.value(c) == 20


def test_retry_on_exception() -> None:
    calls = {"n": 0}

    @task(retry=2, retry_backoff_base_ms=1)
    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise RuntimeError("nope")
        return "ok"

    flow = Flow(flaky)
    flow.run()
    assert flow.value(flaky) == "ok"
    assert calls["n"] == 3


def test_failure_propagates_skip() -> None:
    @task
    def fails() -> int:
        raise RuntimeError("boom")

    @task(depends_on=[fails])
    def downstream(fails: int) -> int:
        return fails + 1

    flow = Flow(downstream, fail_fast=False)
    flow.run()
    assert flow.results["fails"].state == StepState.FAILED
    assert flow.results["downstream"].state == StepState.SKIPPED


def test_override_and_resume() -> None:
    calls = {"a": 0, "b": 0}

    @task
    def a() -> int:
        calls["a"] += 1
        return 5

    @task(depends_on=[a])
    def b(a: int) -> int:
        calls["b"] += 1
        if calls["b"] == 1:
            raise RuntimeError("the first call fails")
        return a * 2

    flow = Flow(b)
    flow.run()
    assert flow.results["b"].state == StepState.FAILED
    flow.resume()
    assert flow.value(b) == 10
    assert calls["a"] == 1, "a succeeded task is not run again by resume()"


# -- TestWhenGate: a falsy when= skips the task ------------------------------------------------


def test_when_true_runs() -> None:
    @task
    def upstream() -> dict[str, bool]:
        return {"ready": True}

    @task(depends_on=[upstream], when=lambda upstream: upstream["ready"])
    def gated(upstream: dict[str, bool]) -> str:
        return "ran"

    flow = Flow(gated)
    flow.run()
    assert flow.results["gated"].state == StepState.SUCCEEDED
    assert flow.value(gated) == "ran"


def test_when_false_skips() -> None:
    ran = {"flag": False}

    @task
    def upstream() -> dict[str, bool]:
        return {"ready": False}

    @task(depends_on=[upstream], when=lambda upstream: upstream["ready"])
    def gated(upstream: dict[str, bool]) -> str:
        ran["flag"] = True
        return "must not run"

    flow = Flow(gated)
    flow.run()
    assert flow.results["gated"].state == StepState.SKIPPED
    assert not ran["flag"], "the body does not run when when() is falsy"


def test_when_skip_propagates_to_dependents() -> None:
    @task
    def upstream() -> dict[str, bool]:
        return {"ready": False}

    @task(depends_on=[upstream], when=lambda upstream: upstream["ready"])
    def middle(upstream: dict[str, bool]) -> str:
        return "middle"

    @task(depends_on=[middle])
    def downstream(middle: str) -> str:
        return middle + " and downstream"

    flow = Flow(downstream)
    flow.run()
    assert flow.results["middle"].state == StepState.SKIPPED
    assert flow.results["downstream"].state == StepState.SKIPPED


def test_when_raises_fails() -> None:
    @task
    def upstream() -> dict[str, bool]:
        return {"ready": True}

    @task(depends_on=[upstream], when=lambda upstream: 1 / 0)
    def gated(upstream: dict[str, bool]) -> str:
        return "unreachable"

    flow = Flow(gated, fail_fast=False)
    flow.run()
    assert flow.results["gated"].state == StepState.FAILED
    assert isinstance(flow.results["gated"].error, ZeroDivisionError)


# -- TestValidateGate: a raising validate= fails the task without retries -----------------------


def test_validate_passes() -> None:
    def must_be_dict(upstream: object) -> None:
        assert isinstance(upstream, dict), "upstream must be a dict"

    @task
    def upstream() -> dict[str, str]:
        return {"k": "v"}

    @task(depends_on=[upstream], validate=must_be_dict)
    def consumer(upstream: dict[str, str]) -> str:
        return upstream["k"]

    flow = Flow(consumer)
    flow.run()
    assert flow.value(consumer) == "v"


def test_validate_fails_no_retry() -> None:
    body_calls = {"n": 0}

    def reject(upstream: object) -> None:
        raise ValueError(f"bad input: {upstream}")

    @task
    def upstream() -> str:
        return "wrong shape"

    @task(depends_on=[upstream], validate=reject, retry=5, retry_backoff_base_ms=1)
    def consumer(upstream: str) -> str:
        body_calls["n"] += 1
        return "must not run"

    flow = Flow(consumer, fail_fast=False)
    flow.run()
    assert flow.results["consumer"].state == StepState.FAILED
    assert body_calls["n"] == 0, "a validate failure does not run the body"
    assert flow.results["consumer"].attempts == 0, "a validate failure spends no retries"
    assert isinstance(flow.results["consumer"].error, ValueError)


# -- TestRetryUntil: retry_until= re-runs the body until the predicate holds --------------------


def test_retry_until_succeeds_after_n() -> None:
    calls = {"n": 0}

    @task(retry=5, retry_backoff_base_ms=1, retry_until=lambda v: v["valid"])
    def converging() -> dict[str, Any]:
        calls["n"] += 1
        return {"valid": calls["n"] >= 3, "attempt": calls["n"]}

    flow = Flow(converging)
    flow.run()
    assert flow.results["converging"].state == StepState.SUCCEEDED
    assert flow.value(converging)["attempt"] == 3
    assert flow.results["converging"].attempts == 3


def test_retry_until_exhausts() -> None:
    calls = {"n": 0}

    @task(retry=2, retry_backoff_base_ms=1, retry_until=lambda v: False)
    def never_satisfies() -> dict[str, int]:
        calls["n"] += 1
        return {"attempt": calls["n"]}

    flow = Flow(never_satisfies, fail_fast=False)
    flow.run()
    result = flow.results["never_satisfies"]
    assert result.state == StepState.FAILED
    assert result.attempts == 3, "the whole budget (1 + retry) is spent"
    assert calls["n"] == 3
    assert result.value == {"attempt": 3}, "the last value is kept on the failed step"


def test_retry_until_first_attempt_pass() -> None:
    calls = {"n": 0}

    @task(retry=5, retry_backoff_base_ms=1, retry_until=lambda v: v == "ok")
    def immediate() -> str:
        calls["n"] += 1
        return "ok"

    flow = Flow(immediate)
    flow.run()
    assert flow.value(immediate) == "ok"
    assert calls["n"] == 1, "no retry when the predicate holds the first time"


def test_retry_until_predicate_raises() -> None:
    @task(retry=5, retry_backoff_base_ms=1, retry_until=lambda v: 1 / 0)
    def victim() -> str:
        return "value"

    flow = Flow(victim, fail_fast=False)
    flow.run()
    result = flow.results["victim"]
    assert result.state == StepState.FAILED
    assert isinstance(result.error, ZeroDivisionError)
    assert result.value == "value", "the value is kept when the predicate itself raises"


# -- TestComposition: the three primitives compose ---------------------------------------------


def test_when_then_validate_then_retry_until() -> None:
    body_calls = {"n": 0}

    def input_is_list(upstream: dict[str, Any]) -> None:
        if not isinstance(upstream["input"], list):
            raise ValueError("bad input")

    @task
    def upstream() -> dict[str, Any]:
        return {"go": True, "input": [1, 2, 3]}

    @task(
        depends_on=[upstream],
        when=lambda upstream: upstream["go"],
        validate=input_is_list,
        retry=3,
        retry_backoff_base_ms=1,
        retry_until=lambda v: v["good"],
    )
    def converging(upstream: dict[str, Any]) -> dict[str, Any]:
        body_calls["n"] += 1
        return {"good": body_calls["n"] >= 2, "n": body_calls["n"]}

    flow = Flow(converging)
    flow.run()
    assert flow.results["converging"].state == StepState.SUCCEEDED
    assert flow.value(converging)["n"] == 2


# -- TestDetachedAutoDiscovery: detached tasks downstream of the graph join it ------------------


def test_detached_downstream_of_terminal_auto_discovered() -> None:
    side_effects: list[tuple[str, str]] = []

    @task
    def main_step() -> str:
        return "result"

    @task(depends_on=[main_step], detached=True)
    def store(main_step: str) -> str:
        side_effects.append(("stored", main_step))
        return "stored"

    flow = Flow(main_step)  # store is not passed as a terminal
    results = flow.run()
    assert results["main_step"].state == StepState.SUCCEEDED
    assert "store" in results
    assert results["store"].state == StepState.SUCCEEDED
    assert side_effects == [("stored", "result")]


def test_detached_passed_as_terminal_still_works() -> None:
    side_effects: list[str] = []

    @task
    def main_step() -> str:
        return "result"

    @task(depends_on=[main_step], detached=True)
    def store(main_step: str) -> None:
        side_effects.append(main_step)

    Flow(main_step, store).run()
    assert side_effects == ["result"]


def test_detached_chain_auto_discovered() -> None:
    order: list[str] = []

    @task
    def main_step() -> int:
        order.append("main")
        return 1

    @task(depends_on=[main_step], detached=True)
    def detach_a(main_step: int) -> int:
        order.append("a")
        return main_step + 1

    @task(depends_on=[detach_a], detached=True)
    def detach_b(detach_a: int) -> int:
        order.append("b")
        return detach_a + 1

    results = Flow(main_step).run()
    assert results["main_step"].state == StepState.SUCCEEDED
    assert results["detach_a"].state == StepState.SUCCEEDED
    assert results["detach_b"].state == StepState.SUCCEEDED
    assert order == ["main", "a", "b"]


def test_unrelated_detached_not_picked_up() -> None:
    side_effects: list[str] = []

    @task
    def graph_a_step() -> str:
        return "a"

    @task
    def graph_b_step() -> str:
        return "b"

    @task(depends_on=[graph_b_step], detached=True)
    def graph_b_side(graph_b_step: str) -> None:
        side_effects.append(graph_b_step)

    results = Flow(graph_a_step).run()  # graph A only
    assert results["graph_a_step"].state == StepState.SUCCEEDED
    assert "graph_b_step" not in results
    assert "graph_b_side" not in results
    assert side_effects == []


def test_detached_failure_still_isolated() -> None:
    @task
    def main_step() -> str:
        return "ok"

    @task(depends_on=[main_step], detached=True)
    def flaky_side(main_step: str) -> None:
        raise RuntimeError("the side effect blew up")

    flow = Flow(main_step)
    results = flow.run()
    assert results["main_step"].state == StepState.SUCCEEDED
    assert results["flaky_side"].state == StepState.FAILED
    assert len(flow.detached_failures) == 1
    assert flow.detached_failures[0].name == "flaky_side"


# -- TestTimeout: timeout_s abandons a hung body and is retryable ------------------------------


def test_timeout_fails_slow_task() -> None:
    @task(timeout_s=0.05)
    def slow() -> str:
        time.sleep(0.5)
        return "done"

    flow = Flow(slow, fail_fast=False)
    flow.run()
    result = flow.results["slow"]
    assert result.state == StepState.FAILED
    assert isinstance(result.error, TimeoutError)


def test_timeout_consumes_retry_then_succeeds() -> None:
    calls = {"n": 0}

    @task(timeout_s=0.05, retry=2, retry_backoff_base_ms=1)
    def sometimes_slow() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.5)  # the first attempt times out
        return calls["n"]

    flow = Flow(sometimes_slow)
    flow.run()
    assert flow.results["sometimes_slow"].state == StepState.SUCCEEDED
    assert flow.value(sometimes_slow) == 2


def test_no_timeout_runs_normally() -> None:
    @task
    def quick() -> str:
        return "ok"

    flow = Flow(quick)
    flow.run()
    assert flow.value(quick) == "ok"


# -- TestSignatureValidation: dependency/parameter mismatches are caught -----------------------


def test_mismatched_param_raises() -> None:
    @task
    def producer() -> int:
        return 1

    @task(depends_on=[producer])
    def consumer(wrong_name: int) -> int:
        return wrong_name + 1

    flow = Flow(consumer)
    with pytest.raises(ValueError) as caught:
        flow.run()
    assert "producer" in str(caught.value)
    assert "consumer" in str(caught.value)


def test_kwargs_absorbs_any_dep() -> None:
    @task
    def producer() -> int:
        return 7

    @task(depends_on=[producer])
    def consumer(**kwargs: int) -> int:
        return kwargs["producer"]

    flow = Flow(consumer)
    flow.run()
    assert flow.value(consumer) == 7


def test_name_override_matches_param() -> None:
    @task(name="aliased")
    def producer() -> int:
        return 3

    @task(depends_on=[producer])
    def consumer(aliased: int) -> int:
        return aliased * 2

    flow = Flow(consumer)
    flow.run()
    assert flow.value(consumer) == 6


# -- TestClearRegistry: clear_registry() forgets registered tasks ------------------------------


def test_clear_registry_drops_detached_candidates() -> None:
    side_effects: list[str] = []

    @task
    def shared() -> int:
        return 1

    @task(depends_on=[shared], detached=True)
    def stale_side(shared: int) -> None:
        side_effects.append("ran")

    clear_registry()  # without this, stale_side would join any later flow built on shared
    results = Flow(shared).run()
    assert results["shared"].state == StepState.SUCCEEDED
    assert "stale_side" not in results
    assert side_effects == []


def test_registry_empty_after_clear_public_api() -> None:
    """flowing's case reads its private ``_TASK_REGISTRY``; this asserts the same, publicly."""

    @task
    def throwaway() -> None:
        return None

    assert list(default_registry()) == [throwaway]
    clear_registry()
    assert list(default_registry()) == []
    assert len(default_registry()) == 0


# -- TestContentAddressedJournal: the opt-in durable journal -----------------------------------


def _build(mult: int) -> tuple[Any, dict[str, int]]:
    """flowing's three-step journal program; ``mult`` is the edit made to ``b``'s body."""
    clear_registry()
    calls = {"a": 0, "b": 0, "c": 0}

    @task
    def a() -> int:
        calls["a"] += 1
        return 10

    if mult == 2:

        @task(depends_on=[a], name="b")
        def b(a: int) -> int:
            calls["b"] += 1
            return a * 2

    else:

        @task(depends_on=[a], name="b")
        def b(a: int) -> int:
            calls["b"] += 1
            return a * 3

    @task(depends_on=[b], name="c")
    def c(b: int) -> int:
        calls["c"] += 1
        return b + 1

    return c, calls


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    clear_registry()
    return tmp_path / "journal.jsonl"


def test_no_journal_path_is_unchanged() -> None:
    c, _ = _build(2)
    results = Flow(c).run()
    assert results["c"].value == 21
    assert results["c"].step_key is None
    assert not results["c"].cached


def test_replay_across_fresh_flow(journal: Path) -> None:
    c, calls = _build(2)
    Flow(c, journal_path=journal).run()
    assert (calls["a"], calls["b"], calls["c"]) == (1, 1, 1)
    c2, calls2 = _build(2)
    results = Flow(c2, journal_path=journal).run()
    assert (calls2["a"], calls2["b"], calls2["c"]) == (0, 0, 0)
    assert results["c"].value == 21
    assert results["c"].cached
    assert results["a"].cached


def test_edit_diverges_and_cascades(journal: Path) -> None:
    c, _ = _build(2)
    Flow(c, journal_path=journal).run()
    c3, calls3 = _build(3)  # b's body edited
    results = Flow(c3, journal_path=journal).run()
    assert calls3["a"] == 0  # the unchanged upstream is replayed
    assert calls3["b"] == 1  # the edited task runs again
    assert calls3["c"] == 1  # and so does its dependant (the keys chain)
    assert results["c"].value == 31
    assert results["a"].cached
    assert not results["b"].cached
    assert not results["c"].cached


def test_cosmetic_knob_does_not_bust_key(journal: Path) -> None:
    clear_registry()
    calls = {"x": 0}

    @task(retry=5, name="x")
    def x() -> int:
        calls["x"] += 1
        return 99

    Flow(x, journal_path=journal).run()
    clear_registry()

    @task(retry=0, name="x")  # a knob changed, the body is the same
    def x2() -> int:
        calls["x"] += 1
        return 99

    Flow(x2, journal_path=journal).run()
    assert calls["x"] == 1


def test_truncated_trailing_line_tolerated(journal: Path) -> None:
    c, _ = _build(2)
    Flow(c, journal_path=journal).run()
    with journal.open("a") as fh:
        fh.write('{"kind":"Completed","key":"v1:dead","nam')  # a torn write
    c2, calls2 = _build(2)
    results = Flow(c2, journal_path=journal).run()
    assert (calls2["a"], calls2["b"], calls2["c"]) == (0, 0, 0)
    assert results["c"].value == 21
