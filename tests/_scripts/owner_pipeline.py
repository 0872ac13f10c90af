"""A pipeline with effects that counts them to a file, for the run-ownership tests.

Usage: ``python owner_pipeline.py DB EFFECTS RUN_ID [PREV_RUN_ID]``

* ``gate`` fails until the file ``EFFECTS.ok`` exists (so a first run fails, and resumes of it
  have work to do); ``charge`` (``effect="at_most_once"``) and ``notify`` (detached) follow it,
  then a chain ``step0`` … ``step5``. Every effect appends ``NAME PID`` to EFFECTS when its
  body ends; ``step0`` first writes ``EFFECTS.holding`` and sleeps ``OWNER_HOLD`` seconds
  (default 0), the other steps sleep ``OWNER_STEP`` seconds (default 0.3).
* With ``OWNER_GO`` set, the process writes ``$OWNER_GO.ready.PID`` and waits for the file
  ``OWNER_GO`` before it plans (so racing processes start together).
* The run is RUN_ID on a ``SqliteStateStore`` at DB, resuming ``store.load(PREV_RUN_ID)`` when
  given (PREV_RUN_ID may equal RUN_ID: a resume under the same id). It prints ``ran STATUS``;
  a :class:`~flowplan.errors.RunOwnedError` prints ``owned: MESSAGE`` and exits with 3.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flowplan import Registry, RunOwnedError, TaskGraph, TaskSpec, execute, plan, task
from flowplan.store import SqliteStateStore


def effect(name: str) -> None:
    with Path(os.environ["OWNER_EFFECTS"]).open("a", encoding="utf-8") as handle:
        handle.write(f"{name} {os.getpid()}\n")


def gate() -> int:
    if not Path(os.environ["OWNER_EFFECTS"] + ".ok").exists():
        raise RuntimeError("not ready yet")
    return 1


def charge(gate: int) -> int:
    effect("charge")
    return gate


def notify(charge: int) -> None:
    effect("notify")


def step(name: str) -> int:
    if name == "step0":
        Path(os.environ["OWNER_EFFECTS"] + ".holding").write_text(str(os.getpid()), "utf-8")
        time.sleep(float(os.environ.get("OWNER_HOLD", "0")))
    else:
        time.sleep(float(os.environ.get("OWNER_STEP", "0.3")))
    effect(name)
    return 1


def step0(charge: int) -> int:
    return step("step0")


def step1(step0: int) -> int:
    return step("step1")


def step2(step1: int) -> int:
    return step("step2")


def step3(step2: int) -> int:
    return step("step3")


def step4(step3: int) -> int:
    return step("step4")


def step5(step4: int) -> int:
    return step("step5")


def build() -> TaskGraph:
    registry = Registry()
    first = task(registry=registry)(gate)
    previous: TaskSpec[..., int] = task(
        depends_on=[first], registry=registry, effect="at_most_once"
    )(charge)
    task(depends_on=[previous], registry=registry, detached=True)(notify)
    steps: tuple[Callable[[int], int], ...] = (step0, step1, step2, step3, step4, step5)
    for fn in steps:
        previous = task(depends_on=[previous], registry=registry)(fn)
    return TaskGraph.build(registry.specs())


def main() -> None:
    db, effects, run_id = sys.argv[1:4]
    prev = sys.argv[4] if len(sys.argv) > 4 else None
    os.environ["OWNER_EFFECTS"] = effects
    go = os.environ.get("OWNER_GO")
    graph = build()
    with SqliteStateStore(db, busy_timeout_s=30) as store:
        if go:
            Path(f"{go}.ready.{os.getpid()}").touch()
            deadline = time.monotonic() + 120
            while not Path(go).exists() and time.monotonic() < deadline:
                time.sleep(0.005)
        snapshot = None if prev is None else store.load(prev)
        try:
            result = execute(plan(graph, snapshot, run_id=run_id), store=store)
        except RunOwnedError as exc:
            print(f"owned: {exc}")
            sys.exit(3)
    failed = [n for n, r in result.records.items() if not r.succeeded]
    print(f"ran {'failed' if failed else 'succeeded'} {' '.join(failed)}")


if __name__ == "__main__":
    main()
