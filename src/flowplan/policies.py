"""Retry policies: plain, frozen data that says how often and how long to wait.

Place in the data flow: part of the *spec* layer. A ``TaskSpec`` holds a ``RetryPolicy``; the
interpreter asks it for the delay before each retry. Policies never sleep themselves.
"""

from __future__ import annotations

import hashlib
import math

import attrs

from flowplan.errors import InvalidOptionError

__all__ = ["RetryBudget", "RetryPolicy"]

ExceptionTypes = tuple[type[BaseException], ...]


def _check_non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidOptionError(
            f"{name} must be a non-negative whole number, got {value!r} "
            f"({type(value).__name__}); use 0 to disable it",
            option=name,
            value=value,
        )
    return value


def _check_non_negative_number(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidOptionError(
            f"{name} must be a finite number >= 0, got {value!r} ({type(value).__name__})",
            option=name,
            value=value,
        )
    return float(value)


def _exception_types(value: object) -> ExceptionTypes:
    """Converter: one exception class or an iterable of them → a tuple (checked later)."""
    if isinstance(value, type):
        return (value,)
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return (value,)  # type: ignore[return-value]  # rejected by _check_exception_types
    return tuple(value)


def _check_exception_types(name: str, value: tuple[object, ...]) -> None:
    for item in value:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise InvalidOptionError(
                f"{name} must be exception classes, got {item!r} ({type(item).__name__}); "
                f"e.g. {name}=(ConnectionError, TimeoutError)",
                option=name,
                value=item,
            )


def _optional_non_negative(name: str, value: object) -> float | None:
    return None if value is None else _check_non_negative_number(name, value)


@attrs.frozen
class RetryPolicy:
    """How many times a task is retried and how long to wait between attempts.

    The delay before retry ``n`` (1-based) is ``min(base * 2**(n-1), max)`` milliseconds, as in
    flowing. With ``jitter > 0`` a deterministic fraction of that delay (up to ``jitter``) is
    subtracted, seeded by ``seed`` (the run id) + task + retry number, so a run is reproducible.

    Which failures are retried: an exception that is an instance of ``retry_on`` and not of
    ``give_up_on`` (a framework timeout counts as
    :class:`~flowplan.errors.TaskTimeoutError`; a ``retry_until`` rejection is always
    retryable). ``max_elapsed_s`` stops retrying once the time since the first attempt started,
    plus the next delay, would exceed it. A run-wide :class:`RetryBudget` may stop retries too.

    Attributes:
        retries: retries after the first attempt (``0`` = run once).
        backoff_base_ms: delay before the first retry.
        max_backoff_ms: the cap on any delay.
        jitter: fraction in ``[0, 1]`` of each delay that may be randomised away.
        retry_on: exception classes that are retried (default: ``Exception``).
        give_up_on: exception classes never retried (wins over ``retry_on``).
        max_elapsed_s: no retry would start later than this many seconds after the first
            attempt started (``None``: no limit).

    >>> RetryPolicy(retries=3, backoff_base_ms=100, max_backoff_ms=250).delay_s(3, task="t")
    0.25
    """

    retries: int = attrs.field(default=0)
    backoff_base_ms: float = attrs.field(default=1000.0)
    max_backoff_ms: float = attrs.field(default=30_000.0)
    jitter: float = attrs.field(default=0.0)
    retry_on: ExceptionTypes = attrs.field(default=(Exception,), converter=_exception_types)
    give_up_on: ExceptionTypes = attrs.field(default=(), converter=_exception_types)
    max_elapsed_s: float | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        _check_exception_types("retry_on", self.retry_on)
        _check_exception_types("give_up_on", self.give_up_on)
        _optional_non_negative("retry_max_elapsed_s", self.max_elapsed_s)
        _check_non_negative_int("retry", self.retries)
        _check_non_negative_number("retry_backoff_base_ms", self.backoff_base_ms)
        _check_non_negative_number("retry_max_backoff_ms", self.max_backoff_ms)
        jitter = _check_non_negative_number("jitter", self.jitter)
        if jitter > 1:
            raise InvalidOptionError(
                f"jitter must be a fraction between 0 and 1, got {self.jitter!r}; "
                "use e.g. 0.1 for up to 10% randomisation",
                option="jitter",
                value=self.jitter,
            )

    @property
    def max_attempts(self) -> int:
        """The total number of attempts allowed (first attempt + retries)."""
        return 1 + self.retries

    def delay_s(self, retry_number: int, *, task: str, seed: str = "") -> float:
        """The delay in seconds before retry number ``retry_number`` (1-based).

        Args:
            retry_number: 1 for the delay after the first failed attempt.
            task: the task's name (seeds the jitter).
            seed: a run-level seed (seeds the jitter).
        """
        exponent = min(retry_number - 1, 64)
        delay_ms = min(self.backoff_base_ms * (2.0**exponent), self.max_backoff_ms)
        if self.jitter and delay_ms:
            digest = hashlib.blake2b(
                f"{seed}\0{task}\0{retry_number}".encode(), digest_size=8
            ).digest()
            fraction = int.from_bytes(digest, "big") / 2.0**64
            delay_ms -= delay_ms * self.jitter * fraction
        return delay_ms / 1000.0

    def retries_on(self, error: BaseException) -> bool:
        """Whether a failure raising ``error`` may be retried (``retry_on``/``give_up_on``).

        >>> RetryPolicy(retries=1, give_up_on=(KeyError,)).retries_on(KeyError("k"))
        False
        """
        return isinstance(error, self.retry_on) and not isinstance(error, self.give_up_on)

    def not_retried_because(self, error: BaseException) -> str | None:
        """Why ``error`` is not retried (``None`` when it is retryable)."""
        kind = type(error).__name__
        given_up = [t.__name__ for t in self.give_up_on if isinstance(error, t)]
        if given_up:
            return f"{kind} matches give_up_on ({given_up[0]})"
        if not isinstance(error, self.retry_on):
            names = ", ".join(t.__name__ for t in self.retry_on) or "nothing"
            return f"{kind} is not in retry_on ({names})"
        return None


def _optional_count(name: str, value: object) -> int | None:
    return None if value is None else _check_non_negative_int(name, value)


@attrs.frozen
class RetryBudget:
    """A run-wide cap on retries, so that many failing tasks cannot start a retry storm.

    One counter is shared by every task of a run. Each retry takes one unit; once the budget
    is spent, a failing attempt fails for good with a reason naming the budget. The limit is
    ``max_retries``, or ``ratio`` x the number of tasks the run executes (rounded down), or
    the smaller of the two when both are given. A fan-out task counts as the element
    instances it runs (counted as they are created, so the limit grows during the run).

    Attributes:
        max_retries: at most this many retries in the run.
        ratio: at most this many retries per task run (e.g. ``0.1``: 10 retries per 100 tasks).

    >>> RetryBudget(max_retries=10).limit(tasks=500)
    10
    >>> RetryBudget(max_retries=10, ratio=0.01).limit(tasks=500)
    5
    """

    max_retries: int | None = attrs.field(default=None)
    ratio: float | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        _optional_count("max_retries", self.max_retries)
        _optional_non_negative("ratio", self.ratio)
        if self.max_retries is None and self.ratio is None:
            raise InvalidOptionError(
                "RetryBudget needs max_retries= or ratio= (or both); "
                "e.g. RetryBudget(max_retries=100)",
                option="retry_budget",
                value=None,
            )

    def limit(self, *, tasks: int) -> int:
        """The number of retries allowed in a run that executes ``tasks`` tasks."""
        limits = []
        if self.max_retries is not None:
            limits.append(self.max_retries)
        if self.ratio is not None:
            limits.append(math.floor(self.ratio * tasks))
        return min(limits)

    def describe(self) -> str:
        """The budget as written, for failure reasons."""
        parts = []
        if self.max_retries is not None:
            parts.append(f"max_retries={self.max_retries}")
        if self.ratio is not None:
            parts.append(f"ratio={self.ratio:g}")
        return f"RetryBudget({', '.join(parts)})"
