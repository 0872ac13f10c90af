"""Tests for the spec layer: the ``task`` decorator, TaskSpec, RetryPolicy and registries."""

from __future__ import annotations

import asyncio
import inspect
import math
from typing import Any

import attrs
import pytest

import flowplan
from flowplan import (
    Dependency,
    InlineExecutor,
    InvalidOptionError,
    Registry,
    RetryPolicy,
    SignatureMismatchError,
    TaskGraph,
    TaskSpec,
    aexecute,
    execute,
    plan,
    task,
)
from flowplan.spec import validate_timeout

# -- the decorator ----------------------------------------------------------------------------


def test_bare_decorator_returns_a_frozen_spec_that_still_calls_the_function(
    registry: Registry,
) -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    assert isinstance(double, TaskSpec)
    assert double.name == "double"
    assert double(21) == 42
    assert double.deps == ()
    assert double.retry == RetryPolicy()
    assert double.timeout_s is None
    assert not double.detached
    assert not double.is_async
    assert list(double.signature.parameters) == ["x"]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        double.name = "other"  # type: ignore[misc]
    assert registry.specs() == (double,)


def test_decorator_with_options(registry: Registry) -> None:
    @task
    def fetch() -> dict[str, int]:
        return {"n": 1}

    def has_n(fetch: dict[str, int]) -> bool:
        return "n" in fetch

    @task(
        depends_on=[fetch, "other"],
        retry=3,
        retry_backoff_base_ms=10,
        retry_max_backoff_ms=50,
        retry_jitter=0.5,
        timeout_s=2,
        name="process_it",
        detached=True,
        when=has_n,
        validate=has_n,
        retry_until=bool,
        retain_result=False,
        version="7",
    )
    def process(fetch: dict[str, int], other: int) -> int:
        return fetch["n"] + other

    assert process.name == "process_it"
    assert process.deps == (Dependency("fetch"), Dependency("other"))
    assert process.deps[0].spec is fetch
    assert process.deps[1].spec is None
    assert process.dep_names == ("fetch", "other")
    assert process.retry == RetryPolicy(
        retries=3, backoff_base_ms=10, max_backoff_ms=50, jitter=0.5
    )
    assert process.timeout_s == 2.0
    assert process.detached
    assert process.when is has_n
    assert process.validate is has_n
    assert process.retry_until is bool
    assert not process.retain_result
    assert process.version == "7"
    assert process(fetch={"n": 1}, other=2) == 3
    assert registry.specs() == (fetch, process)


def test_decorator_registers_into_an_explicit_registry(registry: Registry) -> None:
    other = Registry()

    @task(registry=other)
    def lonely() -> int:
        return 1

    assert other.specs() == (lonely,)
    assert registry.specs() == ()


def test_async_task_is_marked_and_calling_it_gives_a_coroutine(registry: Registry) -> None:
    @task
    async def fetch() -> int:
        return 1

    assert fetch.is_async
    assert asyncio.run(fetch()) == 1


def test_specs_compare_by_identity(registry: Registry) -> None:
    def f() -> int:
        return 1

    one = TaskSpec("f", f)
    two = TaskSpec("f", f)
    assert one != two
    assert one == one
    assert len({one, two}) == 2


def test_evolve_gives_a_new_spec(registry: Registry) -> None:
    @task
    def f() -> int:
        return 1

    g = attrs.evolve(f, name="g", retry=RetryPolicy(retries=2))
    assert (g.name, g.retry.retries, f.name, f.retry.retries) == ("g", 2, "f", 0)


@pytest.mark.parametrize("retry", [-1, -10])
def test_negative_retry_is_rejected(retry: int) -> None:
    with pytest.raises(InvalidOptionError, match=r"retry must be a non-negative whole number") as e:
        task(retry=retry)
    assert e.value.option == "retry"
    assert e.value.value == retry
    assert str(retry) in str(e.value)


@pytest.mark.parametrize("retry", [1.5, "3", True, None])
def test_non_int_retry_is_rejected(retry: Any) -> None:
    with pytest.raises(InvalidOptionError, match="non-negative whole number") as e:
        task(retry=retry)
    assert e.value.option == "retry"
    assert type(retry).__name__ in str(e.value)


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -math.inf, -1, 0, 0.0, "1", True])
def test_bad_timeout_is_rejected_naming_the_task(timeout: Any) -> None:
    with pytest.raises(InvalidOptionError, match="timeout_s must be a finite number") as e:

        @task(timeout_s=timeout)
        def slow() -> None:
            pass

    assert e.value.option == "timeout_s"
    assert e.value.task == "slow"
    assert "'slow'" in str(e.value)
    assert repr(timeout) in str(e.value)


def test_validate_timeout_accepts_none_and_positive_numbers() -> None:
    assert validate_timeout(None) is None
    assert validate_timeout(1) == 1.0
    assert validate_timeout(0.25) == 0.25


@pytest.mark.parametrize("jitter", [-0.1, 1.5, math.nan, math.inf, "0.1"])
def test_bad_jitter_is_rejected(jitter: Any) -> None:
    with pytest.raises(InvalidOptionError, match="jitter") as e:
        task(retry_jitter=jitter)
    assert e.value.option == "jitter"


@pytest.mark.parametrize(
    ("option", "value"),
    [("retry_backoff_base_ms", -1), ("retry_max_backoff_ms", math.nan)],
)
def test_bad_backoff_is_rejected(option: str, value: float) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(InvalidOptionError, match=option) as e:
        task(**options)
    assert e.value.option == option


@pytest.mark.parametrize("gate", ["when", "validate", "retry_until"])
def test_non_callable_gates_are_rejected(gate: str) -> None:
    options: dict[str, Any] = {gate: True}
    with pytest.raises(InvalidOptionError, match=f"{gate}= must be a callable") as e:

        @task(**options)
        def t() -> None:
            pass

    assert (e.value.option, e.value.task, e.value.value) == (gate, "t", True)


@pytest.mark.parametrize("gate", ["when", "validate", "retry_until"])
def test_async_gates_are_rejected(gate: str) -> None:
    async def check(*args: object, **kwargs: object) -> bool:
        return True

    options: dict[str, Any] = {gate: check}
    with pytest.raises(InvalidOptionError, match="must be a plain \\(non-async\\) callable") as e:

        @task(**options)
        def t() -> None:
            pass

    assert e.value.option == gate


@pytest.mark.parametrize("entry", [42, None, 1.5])
def test_bad_depends_on_entries_are_rejected(entry: Any) -> None:
    with pytest.raises(InvalidOptionError, match="depends_on entries must be tasks") as e:

        @task(depends_on=[entry])
        def t() -> None:
            pass

    assert (e.value.option, e.value.task) == ("depends_on", "t")


def test_undecorated_function_in_depends_on_is_rejected_with_the_fix() -> None:
    def plain() -> int:
        return 1

    with pytest.raises(InvalidOptionError, match="decorate 'plain' with @task first"):

        @task(depends_on=[plain])  # type: ignore[list-item]
        def t(plain: int) -> int:
            return plain


def test_non_callable_task_is_rejected() -> None:
    with pytest.raises(InvalidOptionError, match="@task expects a function, got 42"):
        task(42)  # type: ignore[call-overload]


def test_version_must_be_a_string() -> None:
    with pytest.raises(InvalidOptionError, match="version must be a string") as e:

        @task(version=2)  # type: ignore[call-overload, untyped-decorator]
        def t() -> None:
            pass

    assert e.value.option == "version"


@pytest.mark.parametrize("name", ["", 3])
def test_task_name_must_be_a_non_empty_string(name: Any) -> None:
    with pytest.raises(InvalidOptionError, match="task name must be a non-empty string"):
        TaskSpec(name, lambda: 1)


def test_spec_needs_a_callable_and_a_policy() -> None:
    with pytest.raises(InvalidOptionError, match="expected a function"):
        TaskSpec("t", 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="retry must be a RetryPolicy"):
        TaskSpec("t", lambda: 1, retry=3)  # type: ignore[arg-type]


def test_spec_without_a_readable_signature_is_rejected() -> None:
    class NoSignature:
        __signature__ = "not a signature"

        def __call__(self) -> None:
            pass

    with pytest.raises(SignatureMismatchError, match="cannot read the signature"):
        TaskSpec("t", NoSignature())


@pytest.mark.parametrize("workers", [0, -1, True, 1.5])
def test_bad_max_workers_is_rejected_by_execute_and_aexecute(
    registry: Registry, workers: Any
) -> None:
    @task
    def t() -> int:
        return 1

    the_plan = plan(TaskGraph.build([t]))
    with pytest.raises(InvalidOptionError, match="max_workers must be a whole number >= 1") as e:
        execute(the_plan, max_workers=workers)
    assert (e.value.option, e.value.value) == ("max_workers", workers)
    with pytest.raises(InvalidOptionError, match="max_workers must be a whole number >= 1"):
        asyncio.run(aexecute(the_plan, max_workers=workers))
    # A valid count still runs.
    assert execute(the_plan, max_workers=1).value(t) == 1
    assert execute(the_plan, executor=InlineExecutor()).value(t) == 1


# -- retry policy -----------------------------------------------------------------------------


def test_retry_delays_are_exponential_and_capped() -> None:
    policy = RetryPolicy(retries=6, backoff_base_ms=100, max_backoff_ms=500)
    assert policy.max_attempts == 7
    delays = [policy.delay_s(n, task="t") for n in range(1, 7)]
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert policy.delay_s(10_000, task="t") == 0.5  # no overflow far out


def test_jitter_is_deterministic_bounded_and_seeded() -> None:
    policy = RetryPolicy(retries=3, backoff_base_ms=1000, max_backoff_ms=8000, jitter=0.5)
    first = [policy.delay_s(n, task="t", seed="run-1") for n in (1, 2, 3)]
    again = [policy.delay_s(n, task="t", seed="run-1") for n in (1, 2, 3)]
    assert first == again
    for n, delay in zip((1, 2, 3), first, strict=True):
        full = min(1.0 * 2 ** (n - 1), 8.0)
        assert full * 0.5 <= delay <= full
    other_run = [policy.delay_s(n, task="t", seed="run-2") for n in (1, 2, 3)]
    other_task = [policy.delay_s(n, task="u", seed="run-1") for n in (1, 2, 3)]
    assert other_run != first
    assert other_task != first


def test_zero_delays_stay_zero_with_jitter() -> None:
    assert RetryPolicy(retries=1, backoff_base_ms=0, jitter=1.0).delay_s(1, task="t") == 0.0


# -- registries -------------------------------------------------------------------------------


def test_registry_keeps_specs_in_order_once_each() -> None:
    reg = Registry()
    a = TaskSpec("a", lambda: 1)
    b = TaskSpec("b", lambda: 2)
    reg.register(a)
    reg.register(b)
    reg.register(a)  # idempotent for the same object, even when not the latest
    assert reg.specs() == (a, b)
    assert list(reg) == [a, b]
    assert len(reg) == 2
    reg.clear()
    assert reg.specs() == ()
    reg.register(a)
    assert reg.specs() == (a,)


def test_registry_keeps_redeclared_names_by_identity() -> None:
    reg = Registry()
    first = TaskSpec("a", lambda: 1)
    second = TaskSpec("a", lambda: 2)
    reg.register(first)
    reg.register(second)
    assert reg.specs() == (first, second)


def test_activation_is_scoped_and_nests() -> None:
    outer, inner = Registry(), Registry()
    assert flowplan.active_registry() is flowplan.default_registry()
    token_outer = outer.activate()
    try:
        assert flowplan.active_registry() is outer
        token_inner = inner.activate()
        assert flowplan.active_registry() is inner

        @task
        def t() -> None:
            pass

        inner.deactivate(token_inner)
        assert flowplan.active_registry() is outer
    finally:
        outer.deactivate(token_outer)
    assert flowplan.active_registry() is flowplan.default_registry()
    assert inner.specs() == (t,)
    assert outer.specs() == ()


def test_clear_registry_empties_the_default_registry() -> None:
    @task
    def declared() -> None:
        pass

    assert declared in flowplan.default_registry().specs()
    flowplan.clear_registry()
    assert flowplan.default_registry().specs() == ()


def test_registry_fixture_isolates_from_the_default(registry: Registry) -> None:
    @task
    def mine() -> None:
        pass

    assert registry.specs() == (mine,)
    assert mine not in flowplan.default_registry().specs()


def test_signature_is_read_once_and_kept() -> None:
    def f(a: int, b: int = 2) -> int:
        return a + b

    spec = TaskSpec("f", f)
    assert spec.signature == inspect.signature(f)


def test_specs_of_one_function_share_its_signature_and_async_flag() -> None:
    def body(**deps: object) -> int:
        return 0

    async def abody(**deps: object) -> int:
        return 0

    specs = [TaskSpec(f"t{i}", body) for i in range(3)]
    assert all(s.signature is specs[0].signature for s in specs)
    assert not any(s.is_async for s in specs)
    # The memo of the last function never answers for another one.
    after = TaskSpec("a", abody)
    assert after.is_async
    assert after.signature == inspect.signature(abody)
    again = TaskSpec("b", body)
    assert not again.is_async
    assert again.signature is specs[0].signature


def test_the_signature_memo_does_not_keep_a_function_alive() -> None:
    import gc
    import weakref

    def body() -> int:
        return 0

    TaskSpec("only", body)  # the last function declared
    ref = weakref.ref(body)
    del body
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("trigger", "all_sucess"),
        ("trigger", None),
        ("effect", "pur"),
        ("isolation", "proces"),
        ("cache", 1),
        ("timeout_s", 0),
    ],
)
def test_options_off_their_defaults_are_still_checked(option: str, value: Any) -> None:
    with pytest.raises(flowplan.InvalidOptionError, match=option):
        TaskSpec("t", lambda: 0, **{option: value})
