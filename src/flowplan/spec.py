"""Task specifications: what the user declared, as frozen values.

Place in the data flow: **spec** → graph → plan → interpreter → snapshot. A :class:`TaskSpec` is
created by the ``task`` decorators (``decorators.py``, ``engine``) and never changes; options are
checked here, where they are given. Cross-task facts (do dependencies exist? is there a cycle?)
are the graph's business.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import types
import weakref
from collections.abc import Callable
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeAlias, TypeVar, cast, get_args

import attrs

from flowplan._suggest import did_you_mean
from flowplan.errors import InvalidOptionError, SignatureMismatchError
from flowplan.policies import RetryPolicy

__all__ = [
    "Dependency",
    "Effect",
    "Gate",
    "Isolation",
    "MappedTaskSpec",
    "OptionalDependency",
    "TaskSpec",
    "TriggerRule",
    "optional",
    "validate_timeout",
]

TriggerRule = Literal["all_succeeded", "all_done", "none_failed", "any_succeeded"]
"""When a task may run, given how its dependencies ended (default ``"all_succeeded"``)."""

Effect = Literal["pure", "idempotent", "at_most_once"]
"""What running a task's body does to the world; ``None`` (the default) declares nothing."""

Isolation = Literal["thread", "process"]
"""Where a task's attempts run; ``None`` (the default) uses the run's executor."""


class _KeywordGate(Protocol):
    """A gate that takes every dependency value as a keyword: ``lambda **deps: ...``."""

    def __call__(self, **deps: Any) -> object: ...


Gate: TypeAlias = (
    Callable[[], object]
    | Callable[[Any], object]
    | Callable[[Any, Any], object]
    | Callable[[Any, Any, Any], object]
    | Callable[[Any, Any, Any, Any], object]
    | Callable[[Any, Any, Any, Any, Any], object]
    | Callable[[Any, Any, Any, Any, Any, Any], object]
    | Callable[[Any, Any, Any, Any, Any, Any, Any], object]
    | Callable[[Any, Any, Any, Any, Any, Any, Any, Any], object]
    | _KeywordGate
)
"""A ``when=``, ``validate=`` or ``reconcile=`` callable: it receives dependency values by name.

Spelled as callables of 0 to 8 parameters of type ``Any`` (and ``**deps``) rather than
``Callable[..., object]``, so that pyright (strict) gives a lambda's parameters the type
``Any``: ``when=lambda count: count > 0`` passes both mypy and pyright. A gate with more than
eight parameters, or keyword-only ones, takes ``**deps`` instead.
"""

P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)

_sequence = itertools.count()


def _next_seq() -> int:
    return next(_sequence)


def validate_timeout(value: object, *, task: str | None = None) -> float | None:
    """Check a ``timeout_s`` option: ``None`` or a finite number of seconds > 0.

    Raises:
        InvalidOptionError: naming the task and the value when it is out of range.
    """
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        where = f"task {task!r}: " if task else ""
        raise InvalidOptionError(
            f"{where}timeout_s must be a finite number of seconds > 0 or None, got {value!r} "
            f"({type(value).__name__}); use None for no timeout",
            option="timeout_s",
            value=value,
            task=task,
        )
    return float(value)


@attrs.frozen
class Dependency:
    """One incoming edge of a task: the upstream task's name and how its value is received.

    Attributes:
        name: the upstream task's name; its value is injected as the keyword argument of
            that name.
        spec: the upstream spec when the dependency was given as a task (flowing's
            ``depends_on=[fetch]``), used to collect a graph from its terminals.
        ordering_only: ``True`` when no parameter needs to receive the value (flowrun's ``deps``
            that no parameter names); ``False`` makes a missing parameter a definition error.
    """

    name: str
    spec: TaskSpec[..., Any] | None = attrs.field(default=None, eq=False, repr=False)
    ordering_only: bool = False
    optional: bool = False


@attrs.frozen
class OptionalDependency:
    """A dependency marked with :func:`optional`: received as ``None`` when it was skipped."""

    task: TaskSpec[..., Any] | str


def optional(task: TaskSpec[..., Any] | str) -> OptionalDependency:
    """Mark a dependency as optional: when it is skipped, the task runs and receives ``None``.

    Only a harmless skip counts (a ``when=`` gate, or a skip below one): if the dependency
    failed, or was skipped because something above it failed, the task is skipped as usual.

    >>> optional("enrich")
    OptionalDependency(task='enrich')
    """
    return OptionalDependency(task)


def _check_choice(
    option: str, value: object, choices: tuple[str, ...], task: str, *, nullable: bool = True
) -> None:
    if value is None and nullable:
        return
    if isinstance(value, str) and value in choices:
        return
    hint, _ = did_you_mean(str(value), choices)
    raise InvalidOptionError(
        f"task {task!r}: {option}= must be one of {', '.join(map(repr, choices))}"
        f"{' or None' if nullable else ''}, got {value!r} ({type(value).__name__}); "
        f"{hint}",
        option=option,
        value=value,
        task=task,
    )


def _check_callable(option: str, value: object, task: str) -> None:
    if value is not None and not callable(value):
        raise InvalidOptionError(
            f"task {task!r}: {option}= must be a callable, got {value!r} "
            f"({type(value).__name__}); pass a function such as `lambda **deps: ...`",
            option=option,
            value=value,
            task=task,
        )
    if value is not None and inspect.iscoroutinefunction(value):
        raise InvalidOptionError(
            f"task {task!r}: {option}= must be a plain (non-async) callable, got async "
            f"function {getattr(value, '__qualname__', value)!r}; gates run inline and must "
            "not await",
            option=option,
            value=value,
            task=task,
        )


_NO_RETRY = RetryPolicy()
_TRIGGER_RULES: tuple[str, ...] = get_args(TriggerRule)  # read once, not per spec
_EFFECTS: tuple[str, ...] = get_args(Effect)
_ISOLATIONS: tuple[str, ...] = get_args(Isolation)
# Reading a signature costs more than the rest of a spec; generated graphs reuse one function
# for thousands of specs, so signatures are kept per function for as long as it lives.
_signatures: weakref.WeakKeyDictionary[Callable[..., object], inspect.Signature] = (
    weakref.WeakKeyDictionary()
)


def cached_signature(fn: Callable[..., object]) -> inspect.Signature:
    """``inspect.signature(fn)``, kept per function for as long as it lives.

    Raises:
        TypeError, ValueError: as :func:`inspect.signature` (e.g. builtins without one).
    """
    try:
        return _signatures[fn]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable or not hashable
        pass
    sig = inspect.signature(fn)
    with contextlib.suppress(TypeError):
        _signatures[fn] = sig
    return sig


# The function of the spec declared last, with its signature and whether it is async: a graph
# generated from one function reads both once, not per spec (a weak reference: a memo must
# not keep a function alive).
_last_fn: tuple[weakref.ref[Callable[..., object]], inspect.Signature, bool] | None = None


def _function_facts(fn: Callable[..., object], task: str) -> tuple[inspect.Signature, bool]:
    """``fn``'s signature and ``inspect.iscoroutinefunction(fn)``, remembered for the last
    function seen."""
    global _last_fn
    last = _last_fn
    if last is not None and last[0]() is fn:
        return last[1], last[2]
    facts = _signature(fn, task), inspect.iscoroutinefunction(fn)
    try:
        _last_fn = (weakref.ref(fn), *facts)
    except TypeError:  # not weak-referenceable (e.g. some builtins): no memo
        _last_fn = None
    return facts


def is_plain_function(fn: object) -> bool:
    """Whether ``fn`` is a plain ``def`` (or ``lambda``) that nothing has annotated since: its
    signature and whether it is async are exactly what its code object and defaults say.

    A function carrying attributes (``__wrapped__`` from :func:`functools.wraps`,
    ``__signature__``, a coroutine mark) is not plain: :mod:`inspect` reads those.
    """
    return type(fn) is types.FunctionType and not fn.__dict__


def _signature(fn: Callable[..., object], task: str) -> inspect.Signature:
    try:
        return cached_signature(fn)
    except (TypeError, ValueError) as exc:  # some builtins have no signature
        raise SignatureMismatchError(
            f"task {task!r}: cannot read the signature of {fn!r} ({exc}); wrap it in a "
            "`def` with named parameters",
            task=task,
        ) from exc


@attrs.frozen(eq=False)
class TaskSpec(Generic[P, R_co]):
    """A declared task: a function plus how and when to run it. Immutable; use ``evolve``.

    Calling a spec calls its function, so decorated functions stay unit-testable. Specs compare
    by identity: two declarations are two tasks, even with equal options.

    Attributes:
        name: unique name within a graph.
        fn: the function (sync or ``async def``).
        deps: incoming edges, in declaration order.
        retry: the retry policy.
        timeout_s: per-attempt timeout in seconds, or ``None``.
        detached: run after the main DAG as a side effect; failures never fail the run.
        when: gate over the dependency values (keyword arguments); falsy → SKIPPED.
        validate: contract over the dependency values; raising → FAILED without retry.
        retry_until: predicate over the returned value; falsy → retry within the budget.
        retain_result: ``False`` releases the value from memory once no consumer in the run
            can need it (durable stores keep it). A later run that needs it while it is gone
            recomputes it only for ``effect="pure"``; any other task is in doubt.
        version: explicit behaviour version for step keys; wins over the code hash.
        upstream_param: parameter receiving every dependency value as one ``dict``
            (disables named injection), as flowrun's ``upstream``.
        context_param: parameter receiving the run's context object, if any.
        trigger: when the task may run given how its dependencies ended (:data:`TriggerRule`).
        effect: what the body does to the world (:data:`Effect`), which resume honours.
        reconcile: for an ``at_most_once`` task left in doubt by a crash: decides from the
            dependency values whether the lost attempt took effect.
        cache: reuse a result from the run's result cache when the step key matches.
        isolation: ``"process"`` runs this task's attempts in a child process.
        fan_out: the dependency mapped over: one element instance (``name[i]``) runs per
            element of its value, receiving that element; the task's value is their list.
        idempotent: the body is safe to run twice at once. A retry after a timed-out (abandoned,
            still running) sync attempt starts at once only then; otherwise it waits for the
            abandoned attempt to end, so a task's attempts never overlap.
        is_async: whether ``fn`` is a coroutine function (awaited, never returned).
        signature: the function's signature (read when first needed for a plain function).
        seq: declaration order, the graph's deterministic tie-break.

    >>> spec = TaskSpec(name="double", fn=lambda x: 2 * x)
    >>> spec(21)
    42
    """

    name: str
    fn: Callable[P, R_co] = attrs.field(repr=False)
    deps: tuple[Dependency, ...] = ()
    retry: RetryPolicy = attrs.field(default=_NO_RETRY)  # frozen, so one shared default
    timeout_s: float | None = None
    detached: bool = False
    when: Callable[..., object] | None = attrs.field(default=None, repr=False)
    validate: Callable[..., object] | None = attrs.field(default=None, repr=False)
    retry_until: Callable[[Any], object] | None = attrs.field(default=None, repr=False)
    retain_result: bool = True
    version: str | None = None
    upstream_param: str | None = None
    context_param: str | None = None
    idempotent: bool = False
    trigger: TriggerRule = "all_succeeded"
    effect: Effect | None = None
    reconcile: Callable[..., object] | None = attrs.field(default=None, repr=False)
    cache: bool = False
    isolation: Isolation | None = None
    fan_out: str | None = None
    is_async: bool = attrs.field(init=False, repr=False)
    # The signature once read: a plain function's is read when first needed (its code object
    # answers the graph's questions), any other callable's at once, so that a callable without
    # a readable signature is reported where it is declared.
    _sig: inspect.Signature | None = attrs.field(init=False, repr=False)
    seq: int = attrs.field(factory=_next_seq, repr=False)

    @is_async.default
    def _is_async_default(self) -> bool:
        fn: object = self.fn
        if is_plain_function(fn):
            return bool(cast("types.FunctionType", fn).__code__.co_flags & inspect.CO_COROUTINE)
        if not callable(fn):  # reported as an InvalidOptionError in __attrs_post_init__
            return False
        return _function_facts(fn, self.name)[1]

    @_sig.default
    def _signature_default(self) -> inspect.Signature | None:
        fn: object = self.fn
        if is_plain_function(fn):
            return None
        if not callable(fn):  # reported as an InvalidOptionError in __attrs_post_init__
            return inspect.Signature()
        return _function_facts(fn, self.name)[0]

    @property
    def signature(self) -> inspect.Signature:
        """The function's signature (:func:`inspect.signature`), read once."""
        sig = self._sig
        if sig is None:
            sig = _signature(self.fn, self.name)
            object.__setattr__(self, "_sig", sig)
        return sig

    def __attrs_post_init__(self) -> None:
        name: object = self.name
        if not isinstance(name, str) or not name:
            raise InvalidOptionError(
                f"a task name must be a non-empty string, got {name!r} ({type(name).__name__})",
                option="name",
                value=name,
            )
        if not callable(self.fn):
            raise InvalidOptionError(
                f"task {name!r}: expected a function, got {self.fn!r} "
                f"({type(self.fn).__name__}); decorate a `def` or pass a callable",
                option="fn",
                value=self.fn,
                task=name,
            )
        if self.timeout_s is not None:
            validate_timeout(self.timeout_s, task=name)
        if not isinstance(self.retry, RetryPolicy):
            raise InvalidOptionError(
                f"task {name!r}: retry must be a RetryPolicy, got {self.retry!r}",
                option="retry",
                value=self.retry,
                task=name,
            )
        # Options at their defaults need no check (a spec is declared per task: keep it cheap).
        if self.when is not None:
            _check_callable("when", self.when, name)
        if self.validate is not None:
            _check_callable("validate", self.validate, name)
        if self.retry_until is not None:
            _check_callable("retry_until", self.retry_until, name)
        if self.reconcile is not None:
            _check_callable("reconcile", self.reconcile, name)
        if self.cache is not False and self.cache is not True:
            raise InvalidOptionError(
                f"task {name!r}: cache= must be True or False, got {self.cache!r} "
                f"({type(self.cache).__name__}); pass the result cache itself to plan(cache=...), "
                "Flow(cache=...) or Engine(cache=...)",
                option="cache",
                value=self.cache,
                task=name,
            )
        if self.trigger != "all_succeeded":
            _check_choice("trigger", self.trigger, _TRIGGER_RULES, name, nullable=False)
        if self.effect is not None:
            _check_choice("effect", self.effect, _EFFECTS, name)
        if self.isolation is not None:
            _check_choice("isolation", self.isolation, _ISOLATIONS, name)
        if self.reconcile is not None and self.effect != "at_most_once":
            raise InvalidOptionError(  # it would never be called: only such tasks are in doubt
                f"task {name!r}: reconcile= settles an at-most-once task left in doubt, so it "
                f"needs effect='at_most_once', got effect={self.effect!r}; declare "
                "effect='at_most_once', or drop reconcile=",
                option="reconcile",
                value=self.reconcile,
                task=name,
            )
        fan_out: object = self.fan_out
        if fan_out is not None and (not isinstance(fan_out, str) or not fan_out):
            raise InvalidOptionError(
                f"task {name!r}: fan_out= must name one of its dependencies (a task or its "
                f"name), got {fan_out!r} ({type(fan_out).__name__}); e.g. "
                "fan_out='list_files'",
                option="fan_out",
                value=fan_out,
                task=name,
            )
        if self.version is not None and not isinstance(self.version, str):
            raise InvalidOptionError(
                f"task {name!r}: version must be a string, got {self.version!r}; e.g. version='2'",
                option="version",
                value=self.version,
                task=name,
            )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the task's function directly (no scheduling, no retries)."""
        return self.fn(*args, **kwargs)

    @property
    def dep_names(self) -> tuple[str, ...]:
        """The names of the upstream tasks, in declaration order."""
        return tuple(dep.name for dep in self.deps)


@attrs.frozen(eq=False)
class MappedTaskSpec(TaskSpec[P, object], Generic[P, R_co]):
    """A fan-out task (``fan_out=``): a :class:`TaskSpec` whose *value* is ``list[R]``.

    What ``@task(fan_out=...)`` and ``@engine.task(fan_out=...)`` return. Calling it still calls
    the function on one element (typed ``R``); ``Snapshot.value`` and ``Flow.value`` type its
    value as ``list[R]``: its elements' values, in element order.

    For type checkers it is a ``TaskSpec[P, object]``, not a ``TaskSpec[P, R]``: its value is a
    list, so it is accepted wherever any task is (``TaskSpec[..., Any]``, ``depends_on=``) but
    not where a task whose value is ``R`` is expected.

    Raises:
        InvalidOptionError: ``fan_out`` is ``None`` (a mapped task maps over a dependency).

    >>> spec = MappedTaskSpec(name="double", fn=lambda x: 2 * x, fan_out="numbers")
    >>> spec(21), spec.fan_out
    (42, 'numbers')
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.fan_out is None:
            raise InvalidOptionError(
                f"task {self.name!r}: a MappedTaskSpec needs fan_out= (the dependency it maps "
                "over), got None; e.g. fan_out='list_files', or build a TaskSpec instead",
                option="fan_out",
                value=None,
                task=self.name,
            )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the task's function on one element directly (no scheduling, no retries)."""
        return cast("R_co", self.fn(*args, **kwargs))
