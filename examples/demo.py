"""flowplan demo: a small pipeline that fails, is fixed, and resumes without redoing work.

Run it with ``python examples/demo.py``. It shows flowing's ``Flow`` API on flowplan's core:
parallel steps, a retry, a ``when=`` gate, a ``validate=`` contract, a detached side effect,
``override`` + ``resume``, and the plan explained before it runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flowplan import Flow, Registry, TaskGraph, plan, task

registry = Registry()
attempts = {"enrich": 0}
SHOULD_FAIL = {"score": os.environ.get("DEMO_FIXED") != "1"}  # the CLI walk-through sets it


@task(registry=registry)
def fetch_orders() -> list[dict[str, float]]:
    """Pretend to call an API."""
    return [{"id": 1, "amount": 12.5}, {"id": 2, "amount": 40.0}, {"id": 3, "amount": 7.25}]


@task(registry=registry)
def fetch_rates() -> dict[str, float]:
    """Runs in parallel with fetch_orders."""
    return {"vat": 0.2}


@task(depends_on=[fetch_orders], retry=2, retry_backoff_base_ms=10, registry=registry)
def enrich(fetch_orders: list[dict[str, float]]) -> list[dict[str, float]]:
    """A flaky step: fails once, then succeeds on retry."""
    attempts["enrich"] += 1
    if attempts["enrich"] == 1:
        raise ConnectionError("transient network error")
    return [{**order, "big": float(order["amount"] > 10)} for order in fetch_orders]


def _must_have_rows(enrich: list[dict[str, float]], fetch_rates: dict[str, float]) -> None:
    if not enrich:
        raise ValueError("no orders to score")


@task(depends_on=[enrich, fetch_rates], validate=_must_have_rows, registry=registry)
def score(enrich: list[dict[str, float]], fetch_rates: dict[str, float]) -> float:
    """Fails on the first run (a 'bug'), fixed before resume."""
    if SHOULD_FAIL["score"]:
        raise RuntimeError("scoring service returned 500")
    return round(sum(o["amount"] * (1 + fetch_rates["vat"]) for o in enrich), 2)


@task(depends_on=[score], when=lambda score: score > 50, registry=registry)
def alert(score: float) -> str:
    """Only runs when the total is large."""
    return f"ALERT: total {score}"


@task(depends_on=[score], detached=True, registry=registry)
def notify(score: float) -> str:
    """A side effect that never blocks the pipeline and is never repeated by resume."""
    return f"notified: total={score}"


def main() -> None:
    """Run, fail, fix, resume; print what happened at each step."""
    graph = TaskGraph.from_terminals(alert, registry=registry)
    print("== the plan, before anything runs ==")
    print(plan(graph).explain())

    with tempfile.TemporaryDirectory() as tmp:
        flow = Flow(alert, registry=registry, journal_path=Path(tmp) / "journal.jsonl")
        flow.run()
        print("\n== first run (score fails) ==")
        print(flow.summary())

        SHOULD_FAIL["score"] = False  # "fix the bug"
        flow.resume()
        print("\n== after resume (fetch/enrich reused, score and downstream run) ==")
        print(flow.summary())
        print(f"\nscore = {flow.value(score)}, alert = {flow.value(alert)!r}")
        print(f"enrich ran {attempts['enrich']} time(s) in total (1 failure + 1 retry)")


if __name__ == "__main__":
    main()
