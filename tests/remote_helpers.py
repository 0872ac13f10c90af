"""Task functions shared by the executor suites (module level, so child processes import them)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

from flowplan import Snapshot, TaskGraph, TaskSpec, current_attempt, task


def source() -> int:
    return 3


def flaky(source: int) -> int:
    attempt = current_attempt()
    assert attempt is not None
    if attempt.attempt == 1:
        raise ConnectionError("first attempt fails")
    return source * 10


def never(source: int) -> int:
    return -1


def boom(source: int) -> int:
    raise ValueError(f"boom {source}")


def after_boom(boom: int) -> int:
    return boom


def total(flaky: int, source: int) -> int:
    return flaky + source


def dag(
    isolation: Literal["process"] | None = None,
) -> tuple[TaskGraph, dict[str, TaskSpec[..., Any]]]:
    """A DAG with a retry, a ``when=`` skip, a failure and a task below it."""
    src = task(isolation=isolation)(source)
    specs: dict[str, TaskSpec[..., Any]] = {
        "source": src,
        "flaky": task(depends_on=[src], retry=2, retry_backoff_base_ms=10, isolation=isolation)(
            flaky
        ),
        "never": task(depends_on=[src], when=lambda source: source > 100, isolation=isolation)(
            never
        ),
        "boom": task(depends_on=[src], isolation=isolation)(boom),
    }
    specs["after_boom"] = task(depends_on=[specs["boom"]], isolation=isolation)(after_boom)
    specs["total"] = task(depends_on=[specs["flaky"], src], isolation=isolation)(total)
    return TaskGraph.build(list(specs.values())), specs


def summary(snapshot: Snapshot) -> dict[str, tuple[str, int, object, str | None]]:
    """What must not depend on the executor: status, attempts, value, error type per task."""
    return {
        name: (
            rec.status.value,
            rec.attempts,
            rec.value if rec.has_value else None,
            rec.error.type if rec.error else None,
        )
        for name, rec in snapshot.records.items()
    }


EXPECTED = {
    "source": ("succeeded", 1, 3, None),
    "flaky": ("succeeded", 2, 30, None),
    "never": ("skipped", 0, None, None),
    "boom": ("failed", 1, None, "builtins.ValueError"),
    "after_boom": ("skipped", 0, None, None),
    "total": ("succeeded", 1, 33, None),
}


def sleepy(pid_file: str, side_effect: str) -> int:
    """Write this process's pid; on the first attempt sleep, then leave a side effect."""
    attempt = current_attempt()
    assert attempt is not None
    Path(f"{pid_file}.{attempt.attempt}").write_text(str(os.getpid()))
    if attempt.attempt == 1:
        time.sleep(1.5)
        Path(side_effect).write_text("the killed attempt kept running")
    return os.getpid()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
