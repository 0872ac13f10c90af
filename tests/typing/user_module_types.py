"""A strictly typed user module, checked by ``mypy --strict`` and pyright (strict); never run.

Both checkers must see the same exact types here: the value of an ``async def`` task (pyright
infers ``async def`` as ``types.CoroutineType``, mypy as ``Coroutine``), the value of a fan-out
task (a list, never one element), a user's own generic helper over ``TaskSpec``, and the
documented ``when=lambda dep: ...`` gates (no parameter of unknown type under pyright strict).
Each line with ``# type: ignore[code]  # pyright: ignore[rule]`` is a mistake both checkers
must keep rejecting (``warn_unused_ignores`` / ``reportUnnecessaryTypeIgnoreComment``).
"""

from __future__ import annotations

from typing import TypeVar, assert_type

from flowplan import Flow, MappedTaskSpec, Registry, Snapshot, TaskSpec, task

T = TypeVar("T")

registry = Registry()


@task(registry=registry)
def count() -> int:
    return 3


@task(registry=registry)
async def fetch() -> int:
    return 1


@task(registry=registry, depends_on=[count], when=lambda count: count > 0)
def gated(count: int) -> str:
    return "x" * count


@task(
    registry=registry,
    depends_on=[count, fetch],
    when=lambda count, fetch: count > fetch,
    validate=lambda **deps: all(v is not None for v in deps.values()),
)
async def both(count: int, fetch: int) -> list[int]:
    return [count, fetch]


@task(registry=registry)
def names() -> list[str]:
    return ["a", "b"]


@task(registry=registry, depends_on=[names], fan_out=names)
async def download(names: str) -> bytes:
    return names.encode()


@task(registry=registry, depends_on=[names], fan_out=names, when=lambda names: len(names) > 1)
def size(names: str) -> int:
    return len(names)


def value_of(snapshot: Snapshot, spec: TaskSpec[..., T]) -> T:
    """A user's generic helper: the value of ``spec``, typed by the spec."""
    return snapshot.value(spec)


def values(snapshot: Snapshot, flow: Flow) -> None:
    # an async task's value is its result, under pyright as under mypy
    assert_type(snapshot.value(fetch), int)
    assert_type(flow.value(fetch), int)
    assert_type(snapshot.value(both), list[int])
    assert_type(flow.value(both), list[int])
    assert_type(snapshot.value(gated), str)
    # a fan-out task's value is the list of its elements' values
    assert_type(snapshot.value(download), list[bytes])
    assert_type(flow.value(download), list[bytes])
    assert_type(snapshot.value(size), list[int])
    assert_type(flow.value(size), list[int])
    # a generic helper over TaskSpec[..., T]
    assert_type(value_of(snapshot, count), int)
    assert_type(value_of(snapshot, gated), str)
    # a fan-out spec is a task whose value is some object (a list), never one element
    assert_type(value_of(snapshot, size), object)
    mapped: MappedTaskSpec[..., int] = size
    element: TaskSpec[..., int] = size  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    one: int = value_of(snapshot, size)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    wrong: str = snapshot.value(fetch)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


def not_gates() -> None:
    task(registry=registry, when=3)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    task(registry=registry, when="count > 0")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
