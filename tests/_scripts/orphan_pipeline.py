"""An at-most-once effect run in a child process, for the orphan tests (killed parents).

Usage: ``python orphan_pipeline.py MODE DB EFFECT RUN_ID [PREV_RUN_ID]``

* MODE ``isolated``: the task is declared ``isolation="process"`` (threads drive the run);
  MODE ``executor``: the run uses a :class:`~flowplan.ProcessExecutor`.
* The task ``charge`` (``effect="at_most_once"``) writes its process id to ``EFFECT.pid``,
  sleeps ``ORPHAN_DELAY`` seconds (default 4), then appends one line to EFFECT: the effect.
  Its ``reconcile`` reports the effect done when EFFECT has a line, else ``NotDone``.
* The run is ``RUN_ID`` on a ``SqliteStateStore`` at DB, resuming ``PREV_RUN_ID`` when given.
  On the end the task's status is printed; a ``RunOwnedError`` prints ``owned: MESSAGE`` and
  exits with 3.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from flowplan import (
    NotDone,
    NotDoneType,
    ProcessExecutor,
    Registry,
    RunOwnedError,
    TaskGraph,
    execute,
    plan,
    task,
)
from flowplan.store import SqliteStateStore


def charge() -> int:
    effect = Path(os.environ["ORPHAN_EFFECT"])
    Path(f"{effect}.pid").write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(float(os.environ.get("ORPHAN_DELAY", "4")))
    with effect.open("a", encoding="utf-8") as handle:
        handle.write(f"charged by {os.getpid()}\n")
    return 1


def charged() -> int | NotDoneType:
    effect = Path(os.environ["ORPHAN_EFFECT"])
    return 1 if effect.exists() and effect.read_text(encoding="utf-8") else NotDone


def main() -> None:
    mode, db, effect, run_id = sys.argv[1:5]
    prev = sys.argv[5] if len(sys.argv) > 5 else None
    os.environ["ORPHAN_EFFECT"] = effect
    registry = Registry()
    spec = task(
        registry=registry,
        effect="at_most_once",
        reconcile=charged,
        isolation="process" if mode == "isolated" else None,
    )(charge)
    graph = TaskGraph.build([spec])
    with SqliteStateStore(db, busy_timeout_s=30) as store:
        snapshot = None if prev is None else store.load(prev)
        planned = plan(graph, snapshot, run_id=run_id)
        try:
            if mode == "executor":
                with ProcessExecutor(1) as pool:
                    result = execute(planned, store=store, executor=pool)
            else:
                result = execute(planned, store=store)
        except RunOwnedError as exc:
            print(f"owned: {exc}")
            sys.exit(3)
    print(result["charge"].status.value)


if __name__ == "__main__":
    main()
