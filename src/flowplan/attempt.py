"""The running attempt's context: cooperative cancellation and deadlines for task bodies.

Place in the data flow: set by the interpreter around each attempt; read by task code.
A timed-out synchronous attempt cannot be killed on a thread; it is abandoned and its context
is cancelled, so long-running bodies can check :func:`current_attempt` and stop early.

>>> current_attempt() is None  # outside a task
True
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable

import attrs

from flowplan.errors import TaskTimeoutError

__all__ = ["AttemptContext", "current_attempt"]


@attrs.frozen
class AttemptContext:
    """What a task body may know about its own attempt.

    Attributes:
        run_id: the run's id.
        task: the task's name.
        attempt: the attempt number (1-based).
        deadline: ``time.monotonic()`` value after which the attempt is abandoned, or ``None``.
        timeout_s: the task's timeout, or ``None``.
    """

    run_id: str
    task: str
    attempt: int
    deadline: float | None = None
    timeout_s: float | None = None
    _cancel: threading.Event = attrs.field(factory=threading.Event, repr=False, alias="_cancel")
    # Attempts without a timeout share one never-set event (created per attempt it would
    # cost more than a no-op task); only timed attempts get their own, cancellable one.
    _key: Callable[[], str] | None = attrs.field(default=None, repr=False, eq=False, alias="_key")
    # Tasks with an ``effect``: computes the idempotency key on first use.

    @property
    def idempotency_key(self) -> str | None:
        """A deterministic key for this task's effect, or ``None`` if it declares no effect.

        For a task with ``effect=`` (``"pure"``, ``"idempotent"``, ``"at_most_once"``): 64 hex
        characters derived from the run's lineage id (the first run of a chain of resumes),
        the task's name and a structural fingerprint of the values the body receives. It is
        the same in every attempt, in every process and after a resume, so an external
        service can use it to drop duplicates.

        Raises:
            IdempotencyKeyError: an input has no stable fingerprint (the message names it).
        """
        return None if self._key is None else self._key()

    @property
    def cancelled(self) -> bool:
        """Whether the attempt was abandoned (timed out or the run stopped)."""
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Signal the body to stop (the interpreter calls this on timeout or interruption)."""
        if self._cancel is NEVER_CANCELLED:
            raise RuntimeError(
                f"attempt {self.attempt} of task {self.task!r} has no timeout, so it has no "
                "cancellation signal of its own"
            )
        self._cancel.set()

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without a timeout."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early if cancelled; return whether it was cancelled."""
        return self._cancel.wait(seconds)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~flowplan.errors.TaskTimeoutError` if the attempt was abandoned."""
        if self._cancel.is_set():
            raise TaskTimeoutError(self.task, self.timeout_s or 0.0, self.attempt)


NEVER_CANCELLED = threading.Event()
"""The shared, never-set cancel signal of attempts without a timeout."""

_current: contextvars.ContextVar[AttemptContext | tuple[str, str] | None] = contextvars.ContextVar(
    "flowplan_current_attempt", default=None
)
"""The running attempt: its context, or — for a plain task's only attempt (no timeout) — just
``(run_id, task)``, from which :func:`current_attempt` builds the context on first use (most
bodies never ask, and building it would cost more than a no-op task)."""


def current_attempt() -> AttemptContext | None:
    """The context of the attempt running in this thread or task, or ``None`` outside one."""
    ctx = _current.get()
    if type(ctx) is tuple:
        ctx = AttemptContext(ctx[0], ctx[1], 1, None, None, NEVER_CANCELLED)
        _current.set(ctx)  # the same object on later calls; the interpreter's reset undoes it
    return ctx  # type: ignore[return-value]
