"""current_attempt() in a plain task (whose context is built lazily, on first use)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from flowplan import (
    AttemptContext,
    InlineExecutor,
    Registry,
    TaskGraph,
    current_attempt,
    execute,
    plan,
    task,
)


@pytest.mark.parametrize("threads", [False, True])
def test_a_plain_task_sees_its_attempt(threads: bool) -> None:
    registry = Registry()
    seen: list[tuple[AttemptContext | None, AttemptContext | None]] = []

    @task(registry=registry)
    def body() -> int:
        seen.append((current_attempt(), current_attempt()))
        return 1

    @task(registry=registry, depends_on=[body])
    def after(body: int) -> int:
        return body

    the_plan = plan(TaskGraph.build([body, after]), run_id="r")
    with ThreadPoolExecutor(2) as pool:
        execute(the_plan, executor=pool if threads else InlineExecutor())
    [(first, second)] = seen
    assert first is not None
    assert first is second  # built once per attempt
    assert (first.run_id, first.task, first.attempt) == ("r", "body", 1)
    assert first.deadline is None
    assert first.remaining_s() is None
    assert not first.cancelled
    assert current_attempt() is None  # reset after the attempt
