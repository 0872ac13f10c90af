"""Tests for flowplan.errors: one root, the fitting builtins, data as attributes."""

from __future__ import annotations

import pytest

from flowplan import (
    CycleError,
    DefinitionError,
    DetachedDependencyError,
    DuplicateTaskError,
    FlowplanError,
    GraphValidationError,
    InvalidOptionError,
    RetryUntilError,
    SerializationError,
    SignatureMismatchError,
    StoreError,
    TaskFailedError,
    TaskTimeoutError,
    UnknownTaskError,
)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (DefinitionError, ValueError),
        (InvalidOptionError, ValueError),
        (DuplicateTaskError, ValueError),
        (UnknownTaskError, LookupError),
        (UnknownTaskError, ValueError),
        (CycleError, ValueError),
        (DetachedDependencyError, ValueError),
        (SignatureMismatchError, TypeError),
        (SignatureMismatchError, ValueError),
        (GraphValidationError, ValueError),
        (GraphValidationError, ExceptionGroup),
        (TaskTimeoutError, TimeoutError),
        (TaskFailedError, RuntimeError),
        (RetryUntilError, ValueError),
        (SerializationError, ValueError),
        (StoreError, RuntimeError),
    ],
)
def test_every_error_has_one_root_and_the_fitting_builtin(
    error: type[BaseException], builtin: type[BaseException]
) -> None:
    assert issubclass(error, FlowplanError)
    assert issubclass(error, builtin)


def test_definition_errors_carry_their_task() -> None:
    exc = DefinitionError("bad", task="load")
    assert exc.task == "load"
    assert str(exc) == "bad"
    assert DefinitionError("graph-wide").task is None


def test_invalid_option_error_carries_option_and_value() -> None:
    exc = InvalidOptionError("retry must be >= 0", option="retry", value=-1, task="t")
    assert (exc.option, exc.value, exc.task) == ("retry", -1, "t")


def test_unknown_task_error_is_readable_and_carries_data() -> None:
    exc = UnknownTaskError(
        "unknown task 'laod'; did you mean 'load'?",
        name="laod",
        known=["load", "extract"],
        suggestion="load",
    )
    # A KeyError/LookupError would quote the message; ours reads as written.
    assert str(exc) == "unknown task 'laod'; did you mean 'load'?"
    assert exc.name == "laod"
    assert exc.known == ("load", "extract")
    assert exc.suggestion == "load"
    with pytest.raises(LookupError):
        raise exc


def test_cycle_error_carries_the_cycle() -> None:
    exc = CycleError("cycle: a -> b -> a", cycle=["a", "b", "a"])
    assert exc.cycle == ("a", "b", "a")
    assert exc.task == "a"
    assert CycleError("empty", cycle=[]).task is None


def _group() -> GraphValidationError:
    return GraphValidationError(
        "invalid task graph",
        [
            CycleError("the dependencies form a cycle: a -> a", cycle=["a", "a"]),
            UnknownTaskError("task 'b' depends on 'x'", name="x"),
        ],
    )


def test_graph_validation_error_lists_every_problem() -> None:
    exc = _group()
    text = str(exc)
    assert text.startswith("invalid task graph (2 problem(s)):")
    assert "  - the dependencies form a cycle: a -> a" in text
    assert "  - task 'b' depends on 'x'" in text
    assert len(exc.exceptions) == 2


def test_graph_validation_error_subgroups_keep_their_type() -> None:
    cycles = _group().subgroup(CycleError)
    assert isinstance(cycles, GraphValidationError)
    assert [type(e) for e in cycles.exceptions] == [CycleError]
    match, rest = _group().split(UnknownTaskError)
    assert isinstance(match, GraphValidationError)
    assert isinstance(rest, GraphValidationError)
    assert isinstance(rest.exceptions[0], CycleError)


def test_graph_validation_error_works_with_except_star() -> None:
    seen: list[str] = []
    try:
        raise _group()
    except* CycleError as group:
        seen.extend(type(e).__name__ for e in group.exceptions)
    except* UnknownTaskError as group:
        seen.extend(type(e).__name__ for e in group.exceptions)
    assert seen == ["CycleError", "UnknownTaskError"]


def test_graph_validation_error_is_caught_as_value_error() -> None:
    with pytest.raises(ValueError, match="invalid task graph"):
        raise _group()


def test_task_timeout_error_names_task_limit_and_attempt() -> None:
    exc = TaskTimeoutError("fetch", 0.5, 2)
    assert (exc.task, exc.timeout_s, exc.attempt) == ("fetch", 0.5, 2)
    assert "'fetch'" in str(exc)
    assert "0.5s" in str(exc)
    assert "attempt 2" in str(exc)
    assert isinstance(exc, TimeoutError)


def test_task_failed_error_carries_task_and_status() -> None:
    exc = TaskFailedError("no value", task="t", status="failed")
    assert (exc.task, exc.status) == ("t", "failed")


def test_retry_until_error_teaches_the_fix() -> None:
    exc = RetryUntilError("gen", 3, 3)
    assert (exc.task, exc.attempt, exc.max_attempts) == ("gen", 3, 3)
    assert "attempt 3/3" in str(exc)
    assert "retry=" in str(exc)


def test_serialization_error_carries_type_and_path() -> None:
    exc = SerializationError("cannot encode", value_type="socket", path="$[0]")
    assert (exc.value_type, exc.path) == ("socket", "$[0]")
    assert SerializationError("x").path == "$"
