"""Typing tests for effects: checked by mypy and pyright, never run.

Pins: ``@task(effect=..., reconcile=...)`` keeps ``TaskSpec[P, R]`` and rejects unknown
effects; ``NotDone`` is typed ``Literal[NotDoneType.NOT_DONE]`` so a reconcile callback can be
annotated ``R | NotDoneType``; ``AttemptContext.idempotency_key`` is ``str | None``;
``TaskStatus.IN_DOUBT``, ``Action.IN_DOUBT``, ``TaskInDoubt`` and ``Plan.lineage_id``;
``flowplan.engine.task(effect=...)``.
"""

from __future__ import annotations

from typing import Literal, Protocol, assert_type

import flowplan.engine as flowrun
from flowplan import (
    Action,
    IdempotencyKeyError,
    NotDone,
    NotDoneType,
    Plan,
    Registry,
    TaskGraph,
    TaskInDoubt,
    TaskSpec,
    TaskStatus,
    current_attempt,
    plan,
    task,
)

reg = Registry()


@task(registry=reg)
def order() -> dict[str, int]:
    return {"id": 7}


def was_charged(order: dict[str, int]) -> str | NotDoneType:
    return NotDone


@task(registry=reg, effect="at_most_once", reconcile=was_charged, depends_on=[order])
def charge(order: dict[str, int]) -> str:
    ctx = current_attempt()
    if ctx is not None:
        assert_type(ctx.idempotency_key, str | None)
    return "ch"


@task(registry=reg, effect="idempotent")
def upsert() -> int:
    return 1


@task(registry=reg, effect="pure")
def total() -> float:
    return 1.0


class ChargeCall(Protocol):
    def __call__(self, order: dict[str, int]) -> str: ...


charge_call: ChargeCall = charge
assert_type(upsert, TaskSpec[[], int])
assert_type(total, TaskSpec[[], float])
assert_type(NotDone, Literal[NotDoneType.NOT_DONE])
assert_type(charge.effect, Literal["pure", "idempotent", "at_most_once"] | None)


task(effect="twice")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
task(reconcile="not callable")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


planned = plan(TaskGraph.build([order, charge]))
assert_type(planned, Plan)
assert_type(planned.lineage_id, str)
assert_type(planned.action(charge) is Action.IN_DOUBT, bool)
assert_type(TaskStatus.IN_DOUBT, Literal[TaskStatus.IN_DOUBT])
event = TaskInDoubt("run", 0.0, "charge", 1, "lost")
assert_type(event.attempt, int)
assert_type(IdempotencyKeyError("m", task="t", value_type="x", path="p").path, str)


@flowrun.task("engine_charge", registry=flowrun.TaskRegistry(), effect="at_most_once")
def engine_charge() -> str:
    return "ch"


assert_type(engine_charge, TaskSpec[[], str])
