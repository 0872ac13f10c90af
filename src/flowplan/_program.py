"""One task's control flow as a generator: gates, attempts, retries, backoff.

Place in the data flow: inside the interpreter. :func:`task_program` encodes flowing's
evaluation order — dependencies → ``when`` → ``validate`` → attempts (``retry_until``, backoff) —
once, as a generator that yields *requests*: an event to emit, an attempt to :class:`Call`, or a
:class:`Sleep`. Drivers (sync thread, asyncio) fulfil requests; the program never touches
threads, clocks or I/O itself, so every driver shares the same semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import attrs

from flowplan import _watchdog
from flowplan._effects import SETTLE_HINT, key_for, lineage_of, retry_may_overlap, settle
from flowplan.attempt import NEVER_CANCELLED, AttemptContext, _current
from flowplan.errors import RetryUntilError, TaskTimeoutError
from flowplan.events import (
    TaskFailed,
    TaskInDoubt,
    TaskRetrying,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
)
from flowplan.policies import RetryBudget
from flowplan.snapshot import ErrorInfo, TaskRecord
from flowplan.spec import TaskSpec

__all__ = [
    "Call",
    "Outcome",
    "Raised",
    "Request",
    "Returned",
    "RunBudget",
    "Sleep",
    "TimedOut",
    "acall",
    "call",
    "run_program",
    "task_program",
]


@attrs.frozen
class Call:
    """Request: run attempt ``attempt`` of the task body."""

    attempt: int


@attrs.frozen
class Sleep:
    """Request: wait ``seconds`` (retry backoff)."""

    seconds: float


@attrs.frozen
class Returned:
    """Outcome: the body returned ``value``."""

    value: Any
    duration_ms: float


@attrs.frozen
class Raised:
    """Outcome: the body raised ``error``."""

    error: BaseException
    duration_ms: float


@attrs.frozen
class TimedOut:
    """Outcome: the attempt exceeded its timeout and was abandoned.

    ``detail`` says how, when it did not simply stop at its timeout (it ignored its
    cancellation, or blocked its event loop); the recorded error carries it.
    """

    duration_ms: float
    detail: str = ""


Outcome = Returned | Raised | TimedOut
Request = (
    Call
    | Sleep
    | TaskStarted
    | TaskSucceeded
    | TaskFailed
    | TaskRetrying
    | TaskSkipped
    | TaskTimedOut
    | TaskInDoubt
    | TaskReused
)
Program = Generator[Request, Outcome | None, None]

_log = logging.getLogger("flowplan")


def task_program(
    spec: TaskSpec[..., Any],
    gate_kwargs: Mapping[str, Any],
    *,
    run_id: str,
    step_key: str | None,
    clock: Callable[[], float],
    budget: RunBudget | None = None,
    seed: str | None = None,
    in_doubt: TaskRecord | None = None,
    in_doubt_reason: str = "",
) -> Program:
    """Yield the requests of one task's life; receive each :class:`Call`'s outcome.

    ``budget`` is the run's shared retry budget, if any; ``seed`` seeds the backoff jitter
    (default: ``run_id``). ``in_doubt`` is the earlier record of an ``at_most_once`` task the
    plan found in doubt (``in_doubt_reason`` says why): it is settled first
    (:func:`~flowplan._effects.settle`), and runs only if its ``reconcile`` returns
    ``NotDone``.
    """
    name = spec.name
    if in_doubt is not None:
        settled = yield from settle(
            spec,
            gate_kwargs,
            in_doubt,
            in_doubt_reason,
            run_id=run_id,
            step_key=step_key,
            clock=clock,
        )
        if settled:
            return
    for option, gate in (("when", spec.when), ("validate", spec.validate)):
        if gate is None:
            continue
        try:
            verdict = gate(**gate_kwargs)
        except Exception as exc:
            reason = f"{option}() raised {type(exc).__name__}: {exc}"
            info = ErrorInfo.from_exception(exc, kind=option)
            yield TaskFailed(run_id, clock(), name, 0, info, reason)
            return
        if option == "when" and not verdict:
            yield TaskSkipped(run_id, clock(), name, "when() returned a falsy value", name)
            return
    policy = spec.retry
    max_attempts = policy.max_attempts
    first_started: float | None = None
    for attempt in range(1, max_attempts + 1):
        now = clock()
        if first_started is None:
            first_started = now
        yield TaskStarted(run_id, now, name, attempt)
        outcome = yield Call(attempt)
        assert outcome is not None
        value: Any = None
        has_value = False
        cause: BaseException  # what the retry_on/give_up_on filter looks at
        if isinstance(outcome, Returned):
            value = outcome.value
            if spec.retry_until is None:
                yield TaskSucceeded(
                    run_id, clock(), name, attempt, value, outcome.duration_ms, step_key
                )
                return
            try:
                accepted = spec.retry_until(value)
            except Exception as exc:
                info = ErrorInfo.from_exception(exc, kind="retry_until")
                reason = f"retry_until() raised {type(exc).__name__}: {exc}"
                yield TaskFailed(
                    run_id, clock(), name, attempt, info, reason, outcome.duration_ms, value, True
                )
                return
            if accepted:
                yield TaskSucceeded(
                    run_id, clock(), name, attempt, value, outcome.duration_ms, step_key
                )
                return
            has_value = True
            cause = RetryUntilError(name, attempt, max_attempts)
            error = ErrorInfo.from_exception(cause, kind="retry_until")
            if attempt == max_attempts:
                reason = f"retry_until() stayed falsy for all {max_attempts} attempt(s)"
            else:
                reason = f"retry_until() was falsy on attempt {attempt}/{max_attempts}"
        elif isinstance(outcome, TimedOut):
            timeout = spec.timeout_s or 0.0
            yield TaskTimedOut(run_id, clock(), name, attempt, timeout)
            if spec.effect == "at_most_once":  # it may still take effect: never run it twice
                yield TaskInDoubt(
                    run_id,
                    clock(),
                    name,
                    attempt,
                    f"attempt {attempt} timed out after {timeout:g}s"
                    + (f" ({outcome.detail})" if outcome.detail else "")
                    + f" and may still take effect (effect='at_most_once'): not retried; "
                    f"{SETTLE_HINT}",
                )
                return
            cause = TaskTimeoutError(name, timeout, attempt, detail=outcome.detail)
            error = ErrorInfo.from_exception(cause, kind="timeout")
            reason = f"timed out after {timeout:g}s on attempt {attempt}/{max_attempts}"
            if outcome.detail:
                reason = f"{reason} ({outcome.detail})"
        else:
            cause = outcome.error
            if not isinstance(cause, Exception):  # KeyboardInterrupt, SystemExit: stop the run
                info = ErrorInfo.from_exception(cause, kind="interrupted")
                reason = f"interrupted by {type(cause).__name__}"
                yield TaskFailed(
                    run_id, clock(), name, attempt, info, reason, outcome.duration_ms, fatal=True
                )
                return
            error = ErrorInfo.from_exception(cause)
            reason = f"raised {type(cause).__name__} on attempt {attempt}/{max_attempts}"
        give_up: str | None = None
        delay = 0.0
        if attempt == max_attempts:
            give_up = reason
        else:
            # a retry_until rejection is always retryable; anything else goes through the filter
            why_not = None if has_value else policy.not_retried_because(cause)
            delay = policy.delay_s(attempt, task=name, seed=run_id if seed is None else seed)
            if why_not is not None:
                give_up = f"{reason}; not retried: {why_not}"
            elif (
                policy.max_elapsed_s is not None
                and clock() - first_started + delay > policy.max_elapsed_s
            ):
                spent = clock() - first_started
                give_up = (
                    f"{reason}; not retried: retry_max_elapsed_s={policy.max_elapsed_s:g} "
                    f"would be exceeded ({spent:.3g}s spent, next delay {delay:.3g}s)"
                )
            elif budget is not None and not budget.take():
                give_up = f"{reason}; not retried: {budget.exhausted()}"
        if give_up is not None:
            yield TaskFailed(
                run_id,
                clock(),
                name,
                attempt,
                error,
                give_up,
                outcome.duration_ms,
                value,
                has_value,
            )
            return
        yield TaskRetrying(run_id, clock(), name, attempt, error, delay, outcome.duration_ms)
        if delay > 0:
            yield Sleep(delay)


class RunBudget:
    """A run's shared retry counter (a :class:`~flowplan.policies.RetryBudget` in use).

    Thread-safe: workers of the thread driver take from it concurrently.
    """

    def __init__(self, budget: RetryBudget, *, tasks: int) -> None:
        self.budget = budget
        self.tasks = tasks
        self.limit = budget.limit(tasks=tasks)
        self.used = 0
        self._lock = threading.Lock()

    def add_tasks(self, count: int) -> None:
        """Count ``count`` more executed tasks (negative: fewer), and resize the limit.

        A fan-out task opening ``n`` element instances adds ``n - 1``: its elements are the
        tasks executed in its place, so a ``ratio=`` budget grows with them.
        """
        with self._lock:
            self.tasks = max(self.tasks + count, 0)
            self.limit = self.budget.limit(tasks=self.tasks)

    def take(self) -> bool:
        """Take one retry from the budget; ``False`` when it is spent."""
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def exhausted(self) -> str:
        """The give-up reason naming the budget."""
        return (
            f"the run's retry budget is exhausted ({self.budget.describe()}: "
            f"{self.used}/{self.limit} retries used)"
        )


def run_program(
    program: Program,
    *,
    answer: Callable[[Call], Outcome],
    sleep: Callable[[float], object],
    emit: Callable[[Any], object],
) -> None:
    """Fulfil a task program's requests synchronously until it ends.

    Args:
        program: a :func:`task_program` generator.
        answer: runs (or scripts) one attempt and returns its outcome.
        sleep: waits out a backoff (real or fake clock).
        emit: receives every event the program yields.
    """
    try:
        request = next(program)
        while True:
            outcome: Outcome | None = None
            if isinstance(request, Call):
                outcome = answer(request)
            elif isinstance(request, Sleep):
                sleep(request.seconds)
            else:
                emit(request)
            request = program.send(outcome)
    except StopIteration:
        return


def _context(
    spec: TaskSpec[..., Any], run_id: str, attempt: int, kwargs: Mapping[str, Any]
) -> AttemptContext:
    timeout = spec.timeout_s
    key = key_for(spec, run_id, kwargs) if spec.effect is not None else None
    if timeout is None:
        return AttemptContext(run_id, spec.name, attempt, None, None, NEVER_CANCELLED, key)
    deadline = time.monotonic() + timeout
    return AttemptContext(run_id, spec.name, attempt, deadline, timeout, _key=key)


def _run_coroutine(spec: TaskSpec[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Await an ``async def`` body (no timeout) from synchronous code."""

    async def main() -> Any:
        return await _guard(spec.fn(**kwargs))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _unwrap(asyncio.run(main()))
    box: list[tuple[bool, Any]] = []  # a loop already runs in this thread: use another one
    ctx = contextvars.copy_context()
    thread = threading.Thread(
        target=lambda: box.append(_capture(lambda: ctx.run(asyncio.run, main()))), daemon=True
    )
    thread.start()
    thread.join()
    ok, result = box[0]
    if ok:
        return _unwrap(result)
    raise result


CANCEL_GRACE_S = 1.0
"""How long a timed-out ``async def`` attempt has, once cancelled, to end before it is
abandoned (recorded as timed out while it may still run)."""

_SWALLOWED = (
    "it was cancelled but did not end within {grace:g}s (does it catch "
    "asyncio.CancelledError without raising it again?), so the attempt was abandoned and may "
    "still be running{where}; let CancelledError propagate from async def tasks"
)
_NO_BLOCKING = (
    "use await asyncio.sleep, an async client, or asyncio.to_thread for blocking work in an "
    "async def task"
)


def _bounded_coroutine(
    spec: TaskSpec[..., Any],
    kwargs: Mapping[str, Any],
    ctx: AttemptContext,
    run_id: str,
    start: float,
) -> Outcome:
    """Run an ``async def`` body with a timeout from synchronous code, bounded.

    The body runs on an event loop of its own, on a daemon thread; this thread waits for its
    outcome at most the timeout plus :data:`CANCEL_GRACE_S`. A body cancelled at its timeout
    that does not end within the grace (it swallowed the cancellation), or whose loop never
    got control back (a blocking call), is abandoned like a timed-out sync attempt: the
    thread runs on, and never blocks process exit.
    """
    timeout = spec.timeout_s
    assert timeout is not None
    verdict: list[Outcome] = []
    decided = threading.Event()  # verdict holds the outcome
    ended = threading.Event()  # the attempt's thread is done: a retry may start
    cancelled: list[bool] = []

    async def main() -> None:
        body = asyncio.ensure_future(_guard(spec.fn(**kwargs)))
        done, _ = await asyncio.wait({body}, timeout=timeout)
        if done:
            verdict.append(_settled(body, start))
            decided.set()
            return
        ctx.cancel()
        cancelled.append(True)
        body.cancel()
        await asyncio.wait({body})  # bounded by the caller, which abandons it after the grace
        if not body.cancelled():
            body.exception()  # retrieved: a late error is not logged as never retrieved
        verdict.append(TimedOut((time.perf_counter() - start) * 1000))
        decided.set()

    def target() -> None:
        _current.set(ctx)
        try:
            asyncio.run(main())
        except BaseException as exc:  # the body could not even start (e.g. a bad call)
            if not decided.is_set():
                verdict.append(Raised(exc, (time.perf_counter() - start) * 1000))
                decided.set()
        finally:
            ended.set()

    thread = threading.Thread(
        target=contextvars.copy_context().run,
        args=(target,),
        name=f"flowplan:{spec.name}:attempt-{ctx.attempt}",
        daemon=True,
    )
    thread.start()
    if decided.wait(timeout + CANCEL_GRACE_S):
        return verdict[0]
    ctx.cancel()
    _abandon(spec, run_id, ended)
    if cancelled:
        detail = _SWALLOWED.format(grace=CANCEL_GRACE_S, where=" on its thread")
    else:
        detail = (
            f"its event loop did not run for {timeout + CANCEL_GRACE_S:g}s (a blocking call "
            "such as time.sleep or blocking I/O in an async def body?), so its cancellation "
            f"could not reach it; the attempt was abandoned and may still be running on its "
            f"thread; {_NO_BLOCKING}"
        )
    return TimedOut((time.perf_counter() - start) * 1000, detail)


def _settled(body: asyncio.Future[Any], start: float) -> Outcome:
    """The outcome of an ``async def`` body's task that is done."""
    duration = (time.perf_counter() - start) * 1000
    if body.cancelled():  # cancelled by its own code: raised CancelledError
        return Raised(asyncio.CancelledError(), duration)
    exc = body.exception()
    if exc is not None:
        return Raised(exc, duration)
    result = body.result()
    if isinstance(result, _Escaped):
        return Raised(result.error, duration)
    return Returned(result, duration)


@attrs.frozen
class _Escaped:
    """A ``KeyboardInterrupt``/``SystemExit`` raised by a coroutine body, carried as a value."""

    error: BaseException


async def _guard(body: Any) -> Any:
    """Await ``body``; hand ``KeyboardInterrupt``/``SystemExit`` back as a value.

    asyncio re-raises those two out of the event loop itself, so the run could not record the
    attempt; returned as a value, the attempt is recorded like a sync one (fatal) instead.
    """
    try:
        return await body
    except (KeyboardInterrupt, SystemExit) as exc:
        return _Escaped(exc)


def _unwrap(result: Any) -> Any:
    if isinstance(result, _Escaped):
        raise result.error
    return result


# Sync attempts abandoned on timeout and maybe still running, by (lineage, task): an attempt
# of a task not marked ``idempotent`` — a retry, or a resume of the run in this process, whose
# run id differs but whose lineage (``_effects.lineage_of``) is the same — waits for its
# abandoned attempt first, so the two never overlap. Only timed-out attempts enter; the hot
# path pays one falsy-dict check.
_abandoned: dict[tuple[str, str], threading.Event] = {}
_abandoned_lock = threading.Lock()


def _abandon(spec: TaskSpec[..., Any], run_id: str, done: threading.Event) -> None:
    if retry_may_overlap(spec):
        return
    with _abandoned_lock:
        for other in [key for key, event in _abandoned.items() if event.is_set()]:
            del _abandoned[other]
        if not done.is_set():
            _abandoned[lineage_of(run_id), spec.name] = done


def _abandoned_attempt(spec: TaskSpec[..., Any], run_id: str) -> threading.Event | None:
    """The still-running abandoned attempt an attempt of ``spec`` in live run ``run_id`` must
    wait for, if any: one of the same task in the same lineage (this run or one it resumes)."""
    if retry_may_overlap(spec):
        return None
    key = (lineage_of(run_id), spec.name)
    with _abandoned_lock:
        done = _abandoned.get(key)
        if done is not None and done.is_set():
            del _abandoned[key]
            return None
        return done


def still_running(spec: TaskSpec[..., Any], run_id: str) -> threading.Event | None:
    """For a task of live run ``run_id`` about to be settled (in doubt): its abandoned attempt
    still running in this process, if any, which its ``reconcile`` must not race (the effect
    may still happen: asked too early, the callback would answer ``NotDone``)."""
    if not _abandoned:
        return None
    return _abandoned_attempt(spec, run_id)


def _capture(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as exc:
        return False, exc


def call(spec: TaskSpec[..., Any], kwargs: Mapping[str, Any], run_id: str, attempt: int) -> Outcome:
    """Run one attempt synchronously; sync bodies with a timeout run on a daemon thread.

    A task not marked ``idempotent`` whose previous attempt was abandoned (timed out, still
    running) waits here until that attempt ends: its attempts never overlap.
    """
    if _abandoned and spec.timeout_s is not None:
        prior = _abandoned_attempt(spec, run_id)
        if prior is not None:
            prior.wait()
    ctx = _context(spec, run_id, attempt, kwargs)
    start = time.perf_counter()
    if spec.is_async and spec.timeout_s is not None:
        return _bounded_coroutine(spec, kwargs, ctx, run_id, start)
    if spec.is_async or spec.timeout_s is None:
        token = _current.set(ctx)
        try:
            value = _run_coroutine(spec, kwargs) if spec.is_async else spec.fn(**kwargs)
        except BaseException as exc:
            return Raised(exc, (time.perf_counter() - start) * 1000)
        finally:
            _current.reset(token)
        return Returned(value, (time.perf_counter() - start) * 1000)
    done, box = _start_daemon_attempt(spec, kwargs, ctx)
    if not done.wait(spec.timeout_s):
        ctx.cancel()
        _abandon(spec, run_id, done)
        return TimedOut((time.perf_counter() - start) * 1000)
    return _outcome(box[0], start)


def _outcome(result: tuple[bool, Any], start: float) -> Outcome:
    ok, value = result
    duration = (time.perf_counter() - start) * 1000
    return Returned(value, duration) if ok else Raised(value, duration)


def _start_daemon_attempt(
    spec: TaskSpec[..., Any],
    kwargs: Mapping[str, Any],
    ctx: AttemptContext,
    on_done: Callable[[], object] | None = None,
) -> tuple[threading.Event, list[tuple[bool, Any]]]:
    """Start a sync attempt on a daemon thread (it never blocks process exit)."""
    done = threading.Event()
    box: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()

    def target() -> None:
        _current.set(ctx)
        box.append(_capture(lambda: spec.fn(**kwargs)))
        done.set()
        if on_done is not None:
            on_done()

    thread = threading.Thread(
        target=context.run,
        args=(target,),
        name=f"flowplan:{spec.name}:attempt-{ctx.attempt}",
        daemon=True,
    )
    thread.start()
    return done, box


async def _ended(attempt: threading.Event) -> None:
    """Wait on the loop for an abandoned attempt to end: no thread is held (one that never
    ends would keep ``asyncio.run`` from returning), and a cancelled run stops waiting."""
    pause = 0.001
    while not attempt.is_set():
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


async def acall(
    spec: TaskSpec[..., Any],
    kwargs: Mapping[str, Any],
    run_id: str,
    attempt: int,
    run_sync: Callable[[Callable[[], Outcome]], Any],
) -> Outcome:
    """Run one attempt from asyncio: coroutines natively, sync bodies via ``run_sync``."""
    if _abandoned and spec.timeout_s is not None:
        prior = _abandoned_attempt(spec, run_id)
        if prior is not None:  # a non-idempotent retry never overlaps its abandoned attempt
            await _ended(prior)
    ctx = _context(spec, run_id, attempt, kwargs)
    start = time.perf_counter()
    if spec.is_async:
        token = _current.set(ctx)
        try:  # named: the watchdog names what blocks the loop
            task = asyncio.get_running_loop().create_task(
                _guard(spec.fn(**kwargs)), name=f"flowplan:{spec.name}:attempt-{attempt}"
            )
        finally:
            _current.reset(token)
        timeout = spec.timeout_s
        if timeout is None:
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:  # the run itself was cancelled: so is the body
                task.cancel()
                raise
            return _settled(task, start)
        return await _bounded_task(
            spec, task=task, ctx=ctx, run_id=run_id, start=start, timeout=timeout
        )
    if spec.timeout_s is None:
        outcome: Outcome = await run_sync(lambda: call(spec, kwargs, run_id, attempt))
        return outcome
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not waiter.done():
            waiter.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while an abandoned attempt ran
            loop.call_soon_threadsafe(resolve)

    finished, box = _start_daemon_attempt(spec, kwargs, ctx, on_done=wake)
    try:
        await asyncio.wait_for(asyncio.shield(waiter), spec.timeout_s)
    except TimeoutError:
        ctx.cancel()
        _abandon(spec, run_id, finished)
        return TimedOut((time.perf_counter() - start) * 1000)
    return _outcome(box[0], start)


async def _bounded_task(
    spec: TaskSpec[..., Any],
    *,
    task: asyncio.Future[Any],
    ctx: AttemptContext,
    run_id: str,
    start: float,
    timeout: float,
) -> Outcome:
    """Await an ``async def`` body with a timeout on the running loop, bounded.

    At the timeout the body is cancelled; one that does not end within
    :data:`CANCEL_GRACE_S` (it swallowed the cancellation) is abandoned: recorded as timed out
    while it goes on running on the loop. A body that blocks the loop itself cannot be timed
    out by the loop: the watchdog (:mod:`~flowplan._watchdog`) warns while it blocks, and the
    attempt is recorded as timed out when the body returns.
    """
    loop = asyncio.get_running_loop()
    watch = _watchdog.watch(
        spec.name,
        attempt=ctx.attempt,
        timeout_s=timeout,
        grace_s=CANCEL_GRACE_S,
        loop=loop,
        body=task,
    )
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:  # the run itself was cancelled: so is the body
        task.cancel()
        raise
    finally:
        watch.close()
    if done:
        duration = time.perf_counter() - start
        if watch.blocked_s and duration > timeout:
            ctx.cancel()
            detail = (
                f"it blocked the event loop for {duration:.1f}s (a blocking call such as "
                "time.sleep or blocking I/O in an async def body?), so its timeout could not "
                f"fire and no other task on the loop ran meanwhile; {_NO_BLOCKING}"
            )
            return TimedOut(duration * 1000, detail)
        return _settled(task, start)
    ctx.cancel()
    task.cancel()
    try:
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        if not task.cancelled():
            task.exception()  # retrieved: it timed out whatever it raised while cancelled
        return TimedOut((time.perf_counter() - start) * 1000)
    ended = threading.Event()

    def forget(body: asyncio.Future[Any]) -> None:
        ended.set()
        if not body.cancelled():
            body.exception()  # an abandoned attempt's late error is not logged as unretrieved

    task.add_done_callback(forget)
    _abandon(spec, run_id, ended)
    detail = _SWALLOWED.format(grace=CANCEL_GRACE_S, where=" on the event loop")
    _log.warning(
        "flowplan: task %r attempt %d exceeded its timeout; %s", spec.name, ctx.attempt, detail
    )
    return TimedOut((time.perf_counter() - start) * 1000, detail)
