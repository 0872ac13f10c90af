"""flowing's documented behaviours, written as flowing programs (``from flowplan import ...``).

Each test reads like the flowing seed docs (quick start, the three control-flow primitives,
parallelism, retries, fail-fast, timeouts, detached tasks, override/resume, async tasks,
``summary()``/``value()``) and asserts what flowing promises — minus the seed bugs that
flowplan's design fixes (terminal states for never-started tasks, detached side effects never
re-run by ``resume()``, awaited ``async def`` tasks).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from flowplan import (
    CallbackHook,
    Event,
    Flow,
    RecordingHook,
    RetryUntilError,
    StepState,
    TaskFailed,
    TaskTimedOut,
    TaskTimeoutError,
    clear_registry,
    task,
)


def test_quick_start(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def fetch_data() -> dict[str, list[int]]:
        return {"items": [1, 2, 3]}

    @task(depends_on=[fetch_data])
    def process(fetch_data: dict[str, list[int]]) -> int:
        return sum(fetch_data["items"])

    @task(depends_on=[process])
    def store(process: int) -> None:
        print(f"Result: {process}")

    flow = Flow(store)
    results = flow.run()

    assert "Result: 6" in capsys.readouterr().out
    assert list(results) == ["fetch_data", "process", "store"]
    assert all(r.state is StepState.SUCCEEDED for r in results.values())
    assert results["process"].value == 6
    assert flow.value(process) == 6
    assert results["fetch_data"].attempts == 1


def test_independent_tasks_run_in_parallel() -> None:
    barrier = threading.Barrier(3, timeout=5)  # breaks unless all three wait at once

    @task
    def a() -> str:
        barrier.wait()
        return "a"

    @task
    def b() -> str:
        barrier.wait()
        return "b"

    @task
    def c() -> str:
        barrier.wait()
        return "c"

    @task(depends_on=[a, b, c])
    def join(a: str, b: str, c: str) -> str:
        return a + b + c

    results = Flow(join, max_workers=3).run()
    assert results["join"].value == "abc"


def test_max_workers_bounds_parallelism() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def body() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    leaves = [task(name=f"leaf{i}")(body) for i in range(6)]

    @task(depends_on=leaves)
    def total(**leaves: None) -> int:
        return len(leaves)

    flow = Flow(total, max_workers=2)
    assert flow.run()["total"].value == 6
    assert peak[0] <= 2


def test_retry_with_exponential_backoff() -> None:
    calls: list[int] = []

    @task(retry=3, retry_backoff_base_ms=1, retry_max_backoff_ms=3)
    def flaky() -> str:
        calls.append(len(calls) + 1)
        if len(calls) < 4:
            raise ConnectionError(f"attempt {len(calls)} failed")
        return "ok"

    flow = Flow(flaky)
    result = flow.run()["flaky"]
    assert (result.state, result.value, result.attempts) == (StepState.SUCCEEDED, "ok", 4)
    assert calls == [1, 2, 3, 4]
    assert flow.snapshot is not None
    assert flow.snapshot["flaky"].retry_delays == (0.001, 0.002, 0.003)  # doubled, then capped
    assert re.search(r"  SUCCEEDED flaky \(\d+ms, 4 attempts\)", flow.summary())


def test_retry_exhausted_keeps_last_error() -> None:
    @task(retry=2, retry_backoff_base_ms=0)
    def broken() -> None:
        raise ValueError(f"bad {time.monotonic_ns()}")

    result = Flow(broken).run()["broken"]
    assert result.state is StepState.FAILED
    assert result.attempts == 3
    assert isinstance(result.error, ValueError)
    assert str(result.error).startswith("bad ")


def test_when_gate_skips_and_skip_propagates() -> None:
    ran: list[str] = []

    @task
    def fetch() -> dict[str, bool]:
        return {"needs_processing": False}

    @task(depends_on=[fetch], when=lambda fetch: fetch["needs_processing"])
    def process(fetch: dict[str, bool]) -> str:
        ran.append("process")
        return "processed"

    @task(depends_on=[process])
    def publish(process: str) -> str:
        ran.append("publish")
        return process

    results = Flow(publish).run()
    assert ran == []
    assert results["process"].state is StepState.SKIPPED
    assert results["process"].attempts == 0
    assert results["publish"].state is StepState.SKIPPED
    assert results["publish"].root_cause == "process"


def test_when_gate_truthy_runs_the_task() -> None:
    @task
    def fetch() -> dict[str, Any]:
        return {"needs_processing": True, "payload": 4}

    @task(depends_on=[fetch], when=lambda fetch: fetch["needs_processing"])
    def process(fetch: dict[str, Any]) -> int:
        return int(fetch["payload"]) * 2

    assert Flow(process).run()["process"].value == 8


def test_validate_failure_fails_without_retry_or_body() -> None:
    ran: list[str] = []

    def must_have_items(fetch: dict[str, list[int]]) -> None:
        if not fetch.get("items"):
            raise ValueError("fetch returned empty payload")

    @task
    def fetch() -> dict[str, list[int]]:
        return {"items": []}

    @task(depends_on=[fetch], validate=must_have_items, retry=3)
    def process(fetch: dict[str, list[int]]) -> int:
        ran.append("process")
        return sum(fetch["items"])

    @task(depends_on=[process])
    def report(process: int) -> int:
        return process

    flow = Flow(report)
    results = flow.run()
    assert ran == []
    assert results["process"].state is StepState.FAILED
    assert results["process"].attempts == 0
    assert isinstance(results["process"].error, ValueError)
    assert str(results["process"].error) == "fetch returned empty payload"
    assert results["report"].state is StepState.SKIPPED
    assert "err=ValueError: fetch returned empty payload (in validate=)" in flow.summary()


def test_retry_until_loops_until_the_predicate_holds() -> None:
    candidates = iter([{"valid": False, "n": 1}, {"valid": False, "n": 2}, {"valid": True, "n": 3}])

    @task(retry=4, retry_backoff_base_ms=0, retry_until=lambda r: r["valid"])
    def generate_until_valid() -> dict[str, Any]:
        return next(candidates)

    result = Flow(generate_until_valid).run()["generate_until_valid"]
    assert result.state is StepState.SUCCEEDED
    assert result.value == {"valid": True, "n": 3}
    assert result.attempts == 3


def test_retry_until_exhaustion_keeps_last_value_and_fails() -> None:
    counter = iter(range(100))

    @task(retry=2, retry_backoff_base_ms=0, retry_until=lambda r: r > 10)
    def guess() -> int:
        return next(counter)

    result = Flow(guess).run()["guess"]
    assert result.state is StepState.FAILED
    assert result.attempts == 3
    assert result.value == 2  # the last value is preserved for diagnostics
    assert isinstance(result.error, RetryUntilError)
    assert isinstance(result.error, ValueError)  # flowing raised a ValueError


def test_evaluation_order_is_deps_when_validate_attempts() -> None:
    order: list[str] = []

    @task
    def dep() -> int:
        order.append("dep")
        return 1

    def when(dep: int) -> bool:
        order.append("when")
        return True

    def validate(dep: int) -> None:
        order.append("validate")

    @task(depends_on=[dep], when=when, validate=validate)
    def body(dep: int) -> int:
        order.append("body")
        return dep

    Flow(body).run()
    assert order == ["dep", "when", "validate", "body"]

    order.clear()

    @task(depends_on=[dep], when=lambda dep: False, validate=validate)
    def gated(dep: int) -> int:
        order.append("gated")
        return dep

    assert Flow(gated).run()["gated"].state is StepState.SKIPPED
    assert order == ["dep"]  # a falsy when= stops before validate= and the body


def test_failed_dependency_stops_before_the_gates() -> None:
    seen: list[str] = []

    @task
    def dep() -> int:
        raise RuntimeError("upstream broke")

    def when(dep: int) -> bool:
        seen.append("when")
        return True

    @task(depends_on=[dep], when=when)
    def child(dep: int) -> int:
        seen.append("body")
        return dep

    results = Flow(child, fail_fast=False).run()
    assert seen == []
    assert results["child"].state is StepState.SKIPPED
    assert results["child"].reason == "upstream 'dep' failed"


def test_fail_fast_keeps_finished_siblings_and_records_the_rest() -> None:
    b_started = threading.Event()
    a_failed = threading.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFailed) and event.task == "a":
            a_failed.set()

    @task
    def a() -> int:
        assert b_started.wait(5)  # fail while the sibling b is running
        raise RuntimeError("a broke")

    @task
    def b() -> int:
        b_started.set()
        assert a_failed.wait(5)  # finish only after the scheduler saw a's failure
        return 2

    @task(depends_on=[b])
    def c(b: int) -> int:
        return b + 1

    @task(depends_on=[a, c])
    def d(a: int, c: int) -> int:
        return a + c

    results = Flow(d, hooks=[CallbackHook(on_event)]).run()
    assert results["a"].state is StepState.FAILED
    assert results["b"].state is StepState.SUCCEEDED  # the sibling that finished keeps it
    assert results["b"].value == 2
    assert results["c"].state is StepState.CANCELLED  # never started: recorded, with the cause
    assert results["c"].root_cause == "a"
    assert results["d"].state in (StepState.SKIPPED, StepState.CANCELLED)
    assert results["d"].root_cause == "a"
    assert all(r.state is not StepState.PENDING for r in results.values())


def test_fail_fast_false_lets_independent_branches_finish() -> None:
    @task
    def bad() -> int:
        raise RuntimeError("nope")

    @task(depends_on=[bad])
    def after_bad(bad: int) -> int:
        return bad

    @task
    def good() -> int:
        return 1

    @task(depends_on=[good])
    def after_good(good: int) -> int:
        return good + 1

    results = Flow(after_bad, after_good, fail_fast=False).run()
    assert results["after_good"].value == 2
    assert results["after_bad"].state is StepState.SKIPPED
    assert results["after_bad"].root_cause == "bad"


def test_sync_timeout_abandons_the_attempt_and_consumes_retries() -> None:
    release = threading.Event()
    recorder = RecordingHook()

    # idempotent: the retry may overlap the abandoned attempt (otherwise it waits for it)
    @task(timeout_s=0.1, retry=1, retry_backoff_base_ms=0, idempotent=True)
    def slow() -> str:
        release.wait(10)
        return "late"

    started = time.monotonic()
    result = Flow(slow, hooks=[recorder]).run()["slow"]
    elapsed = time.monotonic() - started
    release.set()

    assert elapsed < 2  # about 2 x 0.1 s, never the body's 10 s
    assert result.state is StepState.FAILED
    assert result.attempts == 2
    assert isinstance(result.error, TaskTimeoutError)
    assert isinstance(result.error, TimeoutError)
    timed_out = [e for e in recorder.events if isinstance(e, TaskTimedOut)]
    assert [e.attempt for e in timed_out] == [1, 2]


def test_a_tasks_own_timeout_error_is_reported_as_itself() -> None:
    @task(timeout_s=5)
    def raises() -> None:
        raise TimeoutError("the remote API timed out")

    error = Flow(raises).run()["raises"].error
    assert type(error) is TimeoutError
    assert str(error) == "the remote API timed out"


def test_detached_runs_after_the_main_dag_and_never_fails_it() -> None:
    order: list[str] = []

    @task
    def create_issue() -> dict[str, str]:
        order.append("create_issue")
        return {"url": "https://example.invalid/1"}

    @task(depends_on=[create_issue])
    def respond(create_issue: dict[str, str]) -> str:
        order.append("respond")
        return create_issue["url"]

    @task(depends_on=[create_issue], detached=True)
    def store_memory(create_issue: dict[str, str]) -> None:
        order.append("store_memory")
        raise RuntimeError("memory service down")

    flow = Flow(respond)
    results = flow.run()
    assert order == ["create_issue", "respond", "store_memory"]
    assert results["respond"].state is StepState.SUCCEEDED
    assert [r.name for r in flow.detached_failures] == ["store_memory"]
    assert isinstance(flow.detached_failures[0].error, RuntimeError)
    assert "FAILED    store_memory" in flow.summary()
    assert "[detached]" in flow.summary()


def test_detached_chains_run_in_order() -> None:
    @task
    def main() -> int:
        return 1

    @task(depends_on=[main], detached=True)
    def first(main: int) -> int:
        return main + 1

    @task(depends_on=[first], detached=True)
    def second(first: int) -> int:
        return first * 10

    results = Flow(main).run()
    assert results["first"].value == 2
    assert results["second"].value == 20


def test_detached_tasks_declared_after_the_flow_are_discovered() -> None:
    @task
    def main() -> int:
        return 1

    flow = Flow(main)

    @task(depends_on=[main], detached=True)
    def late(main: int) -> int:
        return main + 41

    assert flow.run()["late"].value == 42


def test_detached_task_of_another_graph_is_ignored() -> None:
    @task
    def main() -> int:
        return 1

    @task
    def other() -> int:
        return 2

    @task(depends_on=[other], detached=True)
    def unrelated(other: int) -> int:
        return other

    assert set(Flow(main).run()) == {"main"}


def test_detached_task_is_skipped_when_its_dependency_failed() -> None:
    @task
    def main() -> int:
        raise RuntimeError("main broke")

    @task(depends_on=[main], detached=True)
    def notify(main: int) -> None:
        raise AssertionError("must not run")

    flow = Flow(main)
    results = flow.run()
    assert results["notify"].state is StepState.SKIPPED
    assert flow.detached_failures == []


def test_clear_registry_forgets_stale_detached_tasks() -> None:
    @task
    def main() -> int:
        return 1

    @task(depends_on=[main], detached=True)
    def stale(main: int) -> int:
        return main

    clear_registry()
    assert "stale" not in Flow(main).run()


def test_override_before_run_supplies_the_value() -> None:
    calls: list[str] = []

    @task
    def fetch() -> int:
        calls.append("fetch")
        return 1

    @task(depends_on=[fetch])
    def double(fetch: int) -> int:
        return fetch * 2

    flow = Flow(double)
    flow.override(fetch, 21)
    assert flow.results["fetch"].state is StepState.SUCCEEDED
    results = flow.run()
    assert calls == []
    assert results["double"].value == 42
    assert (results["fetch"].attempts, results["fetch"].duration_ms) == (0, 0)


def test_override_after_failure_then_resume() -> None:
    calls: list[str] = []

    @task
    def step_1() -> int:
        calls.append("step_1")
        return 1

    @task(depends_on=[step_1])
    def step_2(step_1: int) -> int:
        calls.append("step_2")
        return step_1 + 1

    @task(depends_on=[step_2])
    def step_3(step_2: int) -> int:
        calls.append("step_3")
        raise ValueError("bad data")

    @task(depends_on=[step_3])
    def step_4(step_3: int) -> int:
        calls.append("step_4")
        return step_3 * 100

    flow = Flow(step_4)
    results = flow.run()
    assert results["step_3"].state is StepState.FAILED
    assert results["step_4"].state is StepState.SKIPPED

    flow.override(step_3, 3)
    assert flow.results["step_3"].state is StepState.SUCCEEDED  # reflected at once
    results = flow.resume()
    assert calls == ["step_1", "step_2", "step_3", "step_4"]  # 1 and 2 reused, 3 not rerun
    assert results["step_4"].value == 300
    assert flow.value(step_4) == 300


def test_resume_reruns_only_what_did_not_succeed() -> None:
    calls: dict[str, int] = {"a": 0, "b": 0, "c": 0}
    broken = [True]

    @task
    def a() -> int:
        calls["a"] += 1
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        calls["b"] += 1
        if broken[0]:
            raise RuntimeError("transient")
        return a + 1

    @task(depends_on=[b])
    def c(b: int) -> int:
        calls["c"] += 1
        return b + 1

    flow = Flow(c)
    flow.run()
    broken[0] = False
    results = flow.resume()
    assert calls == {"a": 1, "b": 2, "c": 1}
    assert results["c"].value == 3
    flow.resume()  # everything succeeded: nothing runs again
    assert calls == {"a": 1, "b": 2, "c": 1}


def test_resume_never_reruns_a_succeeded_detached_task() -> None:
    calls: list[str] = []
    broken = [True]

    @task
    def fetch() -> int:
        return 1

    @task(depends_on=[fetch])
    def process(fetch: int) -> int:
        if broken[0]:
            raise RuntimeError("transient")
        return fetch

    @task(depends_on=[fetch], detached=True)
    def notify(fetch: int) -> None:
        calls.append("notify")

    flow = Flow(process)
    flow.run()
    assert calls == ["notify"]
    broken[0] = False
    results = flow.resume()
    assert results["process"].state is StepState.SUCCEEDED
    assert calls == ["notify"]  # the side effect happened once


def test_resume_before_run_behaves_like_run() -> None:
    @task
    def only() -> int:
        return 7

    assert Flow(only).resume()["only"].value == 7


def test_async_tasks_are_awaited() -> None:
    @task
    async def fetch() -> int:
        return 20

    @task(depends_on=[fetch])
    def add(fetch: int) -> int:
        assert isinstance(fetch, int)
        return fetch + 1

    flow = Flow(add)
    results = flow.run()
    assert results["fetch"].value == 20
    assert flow.value(fetch) == 20
    assert results["add"].value == 21


def test_summary_lists_every_task_in_flowing_format() -> None:
    @task
    def ok() -> int:
        return 1

    @task(retry=1, retry_backoff_base_ms=0)
    def bad() -> int:
        raise ValueError("boom")

    @task(depends_on=[ok, bad])
    def after(ok: int, bad: int) -> int:
        return ok + bad

    flow = Flow(after, fail_fast=False)
    flow.run()
    lines = flow.summary().splitlines()
    assert re.fullmatch(r"  SUCCEEDED ok \(\d+ms\)", lines[0])
    assert re.fullmatch(r"  FAILED    bad \(\d+ms, 2 attempts\) err=ValueError: boom", lines[1])
    assert re.fullmatch(
        r"  SKIPPED   after \(0ms\) skipped: upstream 'bad' failed \(root cause: 'bad'\)",
        lines[2],
    )
    # flowplan adds a trailing block: root causes apart from the cascades they caused
    assert lines[3:] == ["root causes:", "  bad failed (ValueError: boom) -> skipped 1: after"]


def test_value_errors_match_flowing() -> None:
    @task
    def good() -> int:
        return 1

    @task(depends_on=[good])
    def bad(good: int) -> int:
        raise ValueError("boom")

    flow = Flow(bad)
    with pytest.raises(KeyError, match="call run"):
        flow.value(good)
    flow.run()
    assert flow.value(good) == 1
    with pytest.raises(RuntimeError, match=r"'bad' did not succeed \(status=failed"):
        flow.value(bad)


def test_flow_without_terminals_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="at least one terminal task"):
        Flow()


def test_dependency_without_a_parameter_is_a_value_error_at_run() -> None:
    @task
    def fetch() -> int:
        return 1

    @task(depends_on=[fetch])
    def process(data: int = 0) -> int:
        return data

    with pytest.raises(ValueError) as excinfo:
        Flow(process).run()
    assert "has no parameter 'fetch' to receive its value" in str(excinfo.value)
