"""A tool-call pipeline: gates, validation, retry-until and a detached notification.

Run it with ``python examples/tool_calls.py``. An "agent" answers a question by calling tools:

- ``plan_calls`` decides which tools are needed;
- ``weather`` runs only when the question is about weather (``when=``);
- ``search`` pages through results until it has enough (``retry_until=``);
- ``answer`` checks its evidence before it runs (``validate=`` sees the task's inputs);
- ``notify`` posts the answer as a side effect that never blocks or fails the pipeline
  (``detached=True``), and that ``resume`` would never repeat.
"""

from __future__ import annotations

import logging

import structlog

from flowplan import Flow, Registry, task

registry = Registry()
QUESTION = "What is the weather in Lisbon, and what should I pack?"
pages: list[int] = []


@task(registry=registry)
def plan_calls() -> dict[str, bool]:
    """Decide which tools the question needs."""
    return {"weather": "weather" in QUESTION.lower(), "search": True}


@task(depends_on=[plan_calls], when=lambda plan_calls: plan_calls["weather"], registry=registry)
def weather(plan_calls: dict[str, bool]) -> str:
    """A (pretend) weather API call; only when the plan asks for it."""
    return "Lisbon: 24°C, sunny"


@task(
    depends_on=[plan_calls],
    retry=5,
    retry_backoff_base_ms=10,
    retry_until=lambda hits: len(hits) >= 3,
    registry=registry,
)
def search(plan_calls: dict[str, bool]) -> list[str]:
    """Fetch one more page of results per attempt until there are at least three hits."""
    pages.append(len(pages) + 1)
    return [f"packing tip {i}" for i in range(1, 2 * len(pages))]


def _has_evidence(weather: str, search: list[str]) -> None:
    if not weather or not search:
        raise ValueError("no evidence to answer from: need a forecast and search hits")


@task(depends_on=[weather, search], validate=_has_evidence, registry=registry)
def answer(weather: str, search: list[str]) -> str:
    """Compose the answer from the tools' results, citing them."""
    return f"{weather}. Pack: {', '.join(search[:2])}. [sources: weather, search]"


@task(depends_on=[answer], detached=True, registry=registry)
def notify(answer: str) -> str:
    """Post the answer to a chat channel (a side effect, detached from the pipeline)."""
    return f"posted: {answer}"


def main() -> None:
    """Run the pipeline and print each tool call's outcome."""
    quiet = structlog.make_filtering_bound_logger(logging.ERROR)  # hide info/warning logs
    flow = Flow(answer, registry=registry, logger=structlog.wrap_logger(None, wrapper_class=quiet))
    flow.run()
    print(flow.summary())
    print(f"search pages fetched: {len(pages)} (retry_until wanted >= 3 hits)")
    print(f"answer: {flow.value(answer)}")
    print(f"notify: {flow.results['notify'].state.value}: {flow.value(notify)}")


if __name__ == "__main__":
    main()
