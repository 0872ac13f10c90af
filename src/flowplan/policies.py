"""Retry policies: plain, frozen data that says how often and how long to wait.

Place in the data flow: part of the *spec* layer. A ``TaskSpec`` holds a ``RetryPolicy``; the
interpreter asks it for the delay before each retry. Policies never sleep themselves.
"""

from __future__ import annotations

import hashlib
import math

import attrs

from flowplan.errors import InvalidOptionError

__all__ = ["RetryPolicy"]


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


@attrs.frozen
class RetryPolicy:
    """How many times a task is retried and how long to wait between attempts.

    The delay before retry ``n`` (1-based) is ``min(base * 2**(n-1), max)`` milliseconds, as in
    flowing. With ``jitter > 0`` a deterministic fraction of that delay (up to ``jitter``) is
    subtracted, seeded by ``seed`` + task + attempt so runs are reproducible.

    Args:
        retries: retries after the first attempt (``0`` = run once).
        backoff_base_ms: delay before the first retry.
        max_backoff_ms: the cap on any delay.
        jitter: fraction in ``[0, 1]`` of each delay that may be randomised away.

    >>> RetryPolicy(retries=3, backoff_base_ms=100, max_backoff_ms=250).delay_s(3, task="t")
    0.25
    """

    retries: int = attrs.field(default=0)
    backoff_base_ms: float = attrs.field(default=1000.0)
    max_backoff_ms: float = attrs.field(default=30_000.0)
    jitter: float = attrs.field(default=0.0)

    def __attrs_post_init__(self) -> None:
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
