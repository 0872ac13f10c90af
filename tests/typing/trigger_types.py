"""Typing tests for trigger rules, optional dependencies and root-cause reports (mypy and pyright).

Checked by ``mypy --strict`` and pyright (strict); never run. ``optional(...)`` of a
task or a name is accepted in ``depends_on``; a task declared with ``trigger=`` keeps its
exact type; a rule outside :data:`flowplan.TriggerRule` is rejected; ``LivenessError`` is a
``FlowplanError`` and a ``RuntimeError``; ``root_cause_lines`` returns lines; the engine's
``task`` takes ``trigger=`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, assert_type

import flowplan.engine as flowrun
from flowplan import (
    FlowplanError,
    LivenessError,
    OptionalDependency,
    Registry,
    Snapshot,
    TaskSpec,
    TriggerRule,
    optional,
    task,
)
from flowplan.report import root_cause_lines

registry = Registry()


@task(registry=registry)
def base() -> int:
    return 1


@task(registry=registry, when=lambda: False)
def bonus() -> int:
    return 2


assert_type(optional(bonus), OptionalDependency)
assert_type(optional("bonus"), OptionalDependency)


@task(registry=registry, depends_on=[base, optional(bonus)])
def total(base: int, bonus: int | None) -> int:
    return base + (bonus or 0)


class TotalCall(Protocol):
    def __call__(self, base: int, bonus: int | None) -> int: ...


total_call: TotalCall = total


@task(registry=registry, depends_on=[base, "bonus"], trigger="all_done")
def cleanup(base: int | None, bonus: int | None) -> str:
    return "done"


class CleanupCall(Protocol):
    def __call__(self, base: int | None, bonus: int | None) -> str: ...


cleanup_call: CleanupCall = cleanup
assert_type(cleanup(None, None), str)
assert_type(cleanup.trigger, TriggerRule)

rule: TriggerRule = "none_failed"


@task(registry=registry, depends_on=[base], trigger=rule)
def publish(base: int | None) -> None:
    return None


class PublishCall(Protocol):
    def __call__(self, base: int | None) -> None: ...


publish_call: PublishCall = publish


task(registry=registry, trigger="when_ready")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


def use_errors(error: LivenessError, snap: Snapshot) -> None:
    assert_type(error.task, str)
    assert_type(error.dependency, str)
    as_root: FlowplanError = error
    as_builtin: RuntimeError = error
    del as_root, as_builtin
    assert_type(root_cause_lines(snap), list[str])
    assert_type(snap.root_causes(), Mapping[str, tuple[str, ...]])


engine = flowrun.build_default_engine()


@engine.task(dag="etl", deps=["extract"], trigger="all_done")
def engine_cleanup() -> str:
    return "ok"


assert_type(engine_cleanup, TaskSpec[[], str])


engine.task(dag="etl", trigger="sometimes")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
