"""A pipeline the reliability tests run in real processes, kill with SIGKILL and resume.

Usage: ``python reliability_pipeline.py MODE STATE CALLS PHASE [NEW_RUN_ID [PREV_RUN_ID]]``

* MODE ``core``: the core API on a ``SqliteStateStore`` at STATE; runs as NEW_RUN_ID, resuming
  ``store.load(PREV_RUN_ID)`` when given.
* MODE ``engine``: flowrun's ``Engine`` on a ``SqliteStateStore``; ``engine.resume(PREV)``.
* MODE ``journal``: flowing's ``Flow(journal_path=STATE)``; every run replays the journal.

Every body appends ``PHASE start NAME`` and ``PHASE done NAME`` lines to CALLS (an append-only
side-effect file) around a short sleep, so a test can count calls and kill mid-run. On success
the final values are printed as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from flowplan import Flow, Registry, TaskGraph, execute, plan, task
from flowplan.engine import SqliteStateStore, build_default_engine

MODE, STATE = sys.argv[1], sys.argv[2]
os.environ["RELIABILITY_CALLS"], os.environ["RELIABILITY_PHASE"] = sys.argv[3], sys.argv[4]
NEW_ID = sys.argv[5] if len(sys.argv) > 5 else None
PREV_ID = sys.argv[6] if len(sys.argv) > 6 else None


def body(name: str, value: Any) -> Any:
    # Read from the environment, not module constants: step keys hash the constants a body
    # (and its helpers) reference, and the phase must not change the journal's keys.
    calls, phase = Path(os.environ["RELIABILITY_CALLS"]), os.environ["RELIABILITY_PHASE"]
    with calls.open("a", encoding="utf-8") as handle:
        handle.write(f"{phase} start {name}\n")
    time.sleep(float(os.environ.get("RELIABILITY_DELAY", "0.03")))
    with calls.open("a", encoding="utf-8") as handle:
        handle.write(f"{phase} done {name}\n")
    return value


def src() -> tuple[int, int]:
    return body("src", (1, 2))  # type: ignore[no-any-return]


def a1(src: tuple[int, int]) -> int:
    return body("a1", sum(src) + 1)  # type: ignore[no-any-return]


def a2(src: tuple[int, int]) -> int:
    return body("a2", sum(src) + 2)  # type: ignore[no-any-return]


def a3(src: tuple[int, int]) -> int:
    return body("a3", sum(src) + 3)  # type: ignore[no-any-return]


def a4(src: tuple[int, int]) -> int:
    return body("a4", sum(src) + 4)  # type: ignore[no-any-return]


def join(a1: int, a2: int, a3: int, a4: int) -> dict[str, Any]:
    return body("join", {"total": a1 + a2 + a3 + a4, "parts": (a1, a2, a3, a4)})  # type: ignore[no-any-return]


def effect(join: dict[str, Any]) -> int:
    return body("effect", join["total"])  # type: ignore[no-any-return]


DEPS: dict[str, list[str]] = {
    "src": [],
    "a1": ["src"],
    "a2": ["src"],
    "a3": ["src"],
    "a4": ["src"],
    "join": ["a1", "a2", "a3", "a4"],
    "effect": ["join"],
}
FUNCS = {f.__name__: f for f in (src, a1, a2, a3, a4, join, effect)}


def show(values: dict[str, Any]) -> None:
    print(json.dumps({k: values[k] for k in sorted(values)}), flush=True)


def run_core() -> None:
    registry = Registry()
    specs: dict[str, Any] = {}
    for name, deps in DEPS.items():
        specs[name] = task(
            depends_on=[specs[d] for d in deps], detached=name == "effect", registry=registry
        )(FUNCS[name])
    graph = TaskGraph.build(list(specs.values()))
    with SqliteStateStore(STATE) as store:
        previous = store.load(PREV_ID) if PREV_ID else None
        snap = execute(plan(graph, previous, run_id=NEW_ID), store=store, max_workers=2)
    show({n: r.value for n, r in snap.records.items()})


def run_engine() -> None:
    store = SqliteStateStore(STATE)
    engine = build_default_engine(state_store=store, max_parallel=2)
    for name, deps in DEPS.items():
        engine.task(name=name, dag="p", deps=deps, detached=name == "effect")(FUNCS[name])

    async def main() -> str:
        async with engine:
            if PREV_ID:
                return await engine.resume(PREV_ID)
            return await engine.run_once("p")

    run_id = asyncio.run(main())
    show({n: r.value for n, r in store.load(run_id).records.items()})
    store.close()


def run_journal() -> None:
    registry = Registry()
    specs: dict[str, Any] = {}
    for name, deps in DEPS.items():
        specs[name] = task(
            depends_on=[specs[d] for d in deps], detached=name == "effect", registry=registry
        )(FUNCS[name])
    flow = Flow(specs["join"], journal_path=STATE, max_workers=2, registry=registry)
    results = flow.run()
    show({n: r.value for n, r in results.items()})


{"core": run_core, "engine": run_engine, "journal": run_journal}[MODE]()
