"""Declaring a task reads a plain function's facts from its code object, not ``inspect``.

What the graph needs from a signature (the keyword parameters, ``**kwargs``, the required ones,
a required positional-only one) and whether a function is async are read from ``__code__``,
``__defaults__`` and ``__kwdefaults__`` for a plain ``def``; ``spec.signature`` is read when
something asks for it. These tests pin that the two readings agree, for every shape of
parameter list, and that anything that is not a plain function still goes through
:func:`inspect.signature` (``__wrapped__``, ``__signature__``, partials, callable objects,
builtins).
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowplan import (
    Dependency,
    GraphValidationError,
    InvalidOptionError,
    SignatureMismatchError,
    TaskGraph,
    TaskSpec,
)
from flowplan._validate import SignatureFacts, facts_of
from flowplan.spec import is_plain_function

_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and n not in {"deps", "rest"}
)


@st.composite
def _function_source(draw: st.DrawFn) -> tuple[str, bool]:
    """Source of a ``def f(...)`` with any mix of parameter kinds and defaults, and is_async."""
    names = draw(st.lists(_NAMES, unique=True, max_size=8))
    n_posonly = draw(st.integers(0, len(names)))
    n_positional = draw(st.integers(n_posonly, len(names)))
    posonly, positional, kwonly = (
        names[:n_posonly],
        names[n_posonly:n_positional],
        names[n_positional:],
    )
    # positional defaults: a suffix of the positional parameters (posonly included)
    n_defaults = draw(st.integers(0, n_positional))
    parts: list[str] = []
    for i, name in enumerate(posonly + positional):
        parts.append(f"{name}={i}" if i >= n_positional - n_defaults else name)
        if posonly and i == n_posonly - 1:
            parts.append("/")
    var_args = draw(st.booleans())
    if var_args:
        parts.append("*rest")
    elif kwonly:
        parts.append("*")
    parts.extend(f"{name}=None" if draw(st.booleans()) else name for name in kwonly)
    if draw(st.booleans()):
        parts.append("**deps")
    is_async = draw(st.booleans())
    source = f"{'async ' if is_async else ''}def f({', '.join(parts)}):\n    return 0\n"
    return source, is_async


def _define(source: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # generated shapes: the point of the test
    fn: Callable[..., Any] = namespace["f"]
    return fn


@settings(max_examples=300, deadline=None)
@given(_function_source())
def test_code_object_facts_agree_with_inspect_for_every_parameter_shape(
    drawn: tuple[str, bool],
) -> None:
    source, is_async = drawn
    fn = _define(source)
    assert is_plain_function(fn)
    spec = TaskSpec("t", fn)
    assert facts_of(spec) == SignatureFacts.read(inspect.signature(fn)), source
    assert spec.is_async is is_async is inspect.iscoroutinefunction(fn)
    assert spec.signature == inspect.signature(fn), source


def _wrapped_by_functools() -> Callable[..., Any]:
    def inner(a: int, *, b: int = 1) -> int:
        return a + b

    @functools.wraps(inner)
    def outer(*args: Any, **kwargs: Any) -> int:
        return inner(*args, **kwargs)

    return outer


def _with_declared_signature() -> Callable[..., Any]:
    def body(**deps: Any) -> int:
        return 0

    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("x", inspect.Parameter.KEYWORD_ONLY)]
    )
    return body


class _Callable:
    def __call__(self, a: int, /, b: int, *, c: int = 0) -> int:
        return a + b + c


def _partial() -> Callable[..., Any]:
    def body(a: int, b: int, *, c: int) -> int:
        return a + b + c

    return functools.partial(body, 1, c=3)


async def _coroutine(x: int) -> int:
    return x


@pytest.mark.parametrize(
    "make",
    [
        _wrapped_by_functools,
        _with_declared_signature,
        _Callable,
        _partial,
        lambda: functools.partial(_coroutine),
        lambda: max,  # a builtin that has a signature
        lambda: _Callable().__call__,  # a bound method
    ],
    ids=[
        "wraps",
        "__signature__",
        "callable-object",
        "partial",
        "async-partial",
        "builtin",
        "method",
    ],
)
def test_anything_but_a_plain_function_reads_inspect_signature(
    make: Callable[[], Callable[..., Any]],
) -> None:
    fn = make()
    assert not is_plain_function(fn)
    try:
        expected = inspect.signature(fn)
    except ValueError:  # a builtin without one: declaring must report it (test below)
        return
    spec = TaskSpec("t", fn)
    assert spec.signature == expected
    assert facts_of(spec) == SignatureFacts.read(expected)
    assert spec.is_async is inspect.iscoroutinefunction(fn)


def test_a_wrapped_function_is_checked_by_the_wrapped_signature_at_build() -> None:
    fn = _wrapped_by_functools()  # (a, *, b=1) behind (*args, **kwargs)
    with pytest.raises(GraphValidationError) as info:
        TaskGraph.build([TaskSpec("t", fn)])
    assert "required parameter 'a' of" in str(info.value)
    assert "is supplied by nothing" in str(info.value)


class _NoSignature:
    """A callable whose signature cannot be read."""

    @property
    def __signature__(self) -> inspect.Signature:
        raise ValueError("no signature here")

    def __call__(self) -> int:
        return 0


@pytest.mark.parametrize("fn", [getattr, _NoSignature()], ids=["builtin", "object"])
def test_a_callable_without_a_signature_is_still_reported_where_it_is_declared(
    fn: Callable[..., Any],
) -> None:
    with pytest.raises(SignatureMismatchError, match="task 't': cannot read the signature"):
        TaskSpec("t", fn)


def test_a_function_carrying_attributes_is_not_plain_and_is_read_by_inspect() -> None:
    def body(x: int, /) -> int:
        return x

    assert is_plain_function(body)
    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("x", inspect.Parameter.KEYWORD_ONLY)]
    )
    assert not is_plain_function(body)
    spec = TaskSpec("t", body)
    assert list(spec.signature.parameters) == ["x"]
    assert facts_of(spec).keyword == {"x"}  # the declared signature, not the code's
    assert TaskGraph.build([TaskSpec("x", lambda: 1), TaskSpec("t", body, deps=(Dependency("x"),))])


def test_the_signature_of_a_plain_function_is_read_once_and_shared() -> None:
    def body(a: int, b: int = 2) -> int:
        return a + b

    first, second = TaskSpec("a", body), TaskSpec("b", body)
    assert first.signature is first.signature
    assert first.signature is second.signature
    assert first.signature == inspect.signature(body)


def test_a_non_callable_function_is_still_an_invalid_option() -> None:
    with pytest.raises(InvalidOptionError, match="expected a function"):
        TaskSpec("t", 42)  # type: ignore[arg-type]


def test_declaring_and_building_plain_functions_never_call_inspect_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*args: object, **kwargs: object) -> inspect.Signature:
        raise AssertionError("inspect.signature was called")

    namespace: dict[str, Any] = {}
    exec("def a():\n    return 1\ndef b(a, *, c=2):\n    return a + c\n", namespace)
    monkeypatch.setattr(inspect, "signature", boom)
    spec_a = TaskSpec("a", namespace["a"])
    spec_b = TaskSpec("b", namespace["b"], deps=(Dependency("a"),))
    graph = TaskGraph.build([spec_a, spec_b])
    assert graph.order == ("a", "b")
    monkeypatch.undo()
    assert spec_b.signature == inspect.signature(namespace["b"])  # read when asked


def test_a_plain_function_missing_a_dependency_parameter_is_reported_as_before() -> None:
    def b(a: int, /, c: int) -> int:
        return a + c

    with pytest.raises(GraphValidationError) as info:
        TaskGraph.build([TaskSpec("x", lambda: 1), TaskSpec("b", b, deps=(Dependency("x"),))])
    text = str(info.value)
    assert "positional-only" in text
    assert "'c'" in text
