"""Remote attempts: the task program stays here, only each attempt is shipped.

Place in the data flow: inside the interpreter, for executors that cannot share memory
(:class:`~flowplan.executors.ProcessExecutor`, :class:`~flowplan.executors.DaskExecutor`,
``concurrent.futures.ProcessPoolExecutor``, anything with ``executes_remotely = True``). The
task's program — gates, retries, backoff, timeouts, events — runs in the driver (from the main
loop, one thread, no thread per task); each attempt, ``spec.fn(**kwargs)``, is one picklable
payload (bytes) given to the module-level trampoline :func:`run_attempt`. The private run
object never leaves the driver.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import inspect
import itertools
import os
import pickle
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from flowplan._effects import KEYED_EFFECTS, LazyKey, key_inputs, lineage_of, retry_may_overlap
from flowplan._fanout import origin
from flowplan._process import ProcessExecutor, dumps  # dumps: cloudpickle when installed
from flowplan._program import Call, Outcome, Raised, Returned, Sleep, TimedOut
from flowplan._tracecontext import carrier, child_scope
from flowplan.attempt import NEVER_CANCELLED, AttemptContext, _current
from flowplan.errors import SerializationError
from flowplan.events import TaskEvent, TaskFailed
from flowplan.snapshot import ErrorInfo

if TYPE_CHECKING:
    from flowplan._machine import _Run
    from flowplan.spec import TaskSpec

__all__ = ["RemoteTraceback", "dumps", "is_remote", "run_attempt"]


def is_remote(executor: object) -> bool:
    """Whether ``executor`` runs work in other processes (it needs picklable payloads)."""
    if getattr(executor, "executes_remotely", False) is True:
        return True
    # No ProcessPoolExecutor exists before its module is imported; importing it here would
    # cost every `import flowplan` multiprocessing.
    process = sys.modules.get("concurrent.futures.process")
    return process is not None and isinstance(executor, process.ProcessPoolExecutor)


class RemoteTraceback(Exception):  # noqa: N818 - named like concurrent.futures' own
    """The traceback of an attempt that raised in another process (set as ``__cause__``)."""

    def __str__(self) -> str:
        return f"\n{self.args[0]}" if self.args else ""


class RemoteTaskError(Exception):
    """Stands in for an exception raised remotely that cannot be pickled back."""


def _dump_error(exc: BaseException) -> bytes:
    tb = "".join(traceback.format_exception(exc))
    try:
        blob = dumps(exc)
        pickle.loads(blob)  # some exceptions pickle but cannot be rebuilt
    except Exception:
        blob = dumps(RemoteTaskError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"))
    return dumps((blob, f"(in process {os.getpid()})\n{tb}"))


def run_attempt(blob: bytes) -> tuple[bool, bytes, float]:
    """Trampoline: run one attempt from its payload; return ``(ok, pickled result, ms)``.

    A coroutine function's attempt is awaited with ``asyncio.run``. The result is pickled here,
    so a value that cannot travel back is a clear :class:`SerializationError`, not a hang.
    """
    return _attempt(pickle.loads(blob))


def run_attempt_with(
    blob: bytes, slots: tuple[tuple[str, str | None], ...], *upstream: tuple[bool, bytes, float]
) -> tuple[bool, bytes, float]:
    """Trampoline for an attempt whose upstream values stayed on the cluster.

    ``upstream`` are the producers' own :func:`run_attempt` results, which the executor
    resolves where this runs (worker to worker): those values never pass through the driver
    on their way here. Each is injected at its slot: ``(param, None)`` for a parameter,
    ``(param, key)`` for an entry of the ``dict`` parameter receiving every upstream value.
    """
    parts = pickle.loads(blob)
    kwargs = parts[1]
    for (param, key), (_, value_blob, _) in zip(slots, upstream, strict=True):
        value = pickle.loads(value_blob)
        if key is None:
            kwargs[param] = value
        else:
            kwargs[param][key] = value
    return _attempt(parts)


def _attempt(parts: tuple[Any, ...]) -> tuple[bool, bytes, float]:
    """Run one attempt from its unpickled payload (see :func:`payload`)."""
    fn_blob, kwargs, run_id, task, attempt, timeout, keyed, trace = parts
    fn = pickle.loads(fn_blob)
    # keyed: (lineage id, the keyed arguments' names) for tasks with an effect, else None
    key = None if keyed is None else LazyKey(keyed[0], task, {k: kwargs[k] for k in keyed[1]})
    if timeout is None:
        ctx = AttemptContext(run_id, task, attempt, None, None, NEVER_CANCELLED, key)
    else:
        ctx = AttemptContext(run_id, task, attempt, time.monotonic() + timeout, timeout, _key=key)
    token = _current.set(ctx)
    start = time.perf_counter()
    try:
        with child_scope(trace):  # the parent's attempt span is current in the body
            value = fn(**kwargs)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
    except BaseException as exc:
        return False, _dump_error(exc), (time.perf_counter() - start) * 1000
    finally:
        _current.reset(token)
    duration = (time.perf_counter() - start) * 1000
    try:
        return True, dumps(value), duration
    except Exception as exc:
        error = SerializationError(
            f"task {task!r} returned a value of type {type(value).__qualname__} that cannot be "
            f"pickled back from the worker process: {exc}",
            value_type=type(value).__qualname__,
        )
        return False, _dump_error(error), duration


def outcome_of(future: Future[Any]) -> Outcome:
    """Decode a finished remote attempt's future into an :class:`Outcome`."""
    try:
        ok, blob, duration = future.result()
    except BaseException as exc:  # the worker died, the pool broke, the attempt was cancelled
        return Raised(exc, 0.0)
    if ok:
        return Returned(pickle.loads(blob), duration)
    try:
        error_blob, tb = pickle.loads(blob)
        error = pickle.loads(error_blob)
    except Exception as exc:  # pragma: no cover - _dump_error checked the round trip
        return Raised(RemoteTaskError(f"cannot unpickle the remote error: {exc!r}"), duration)
    error.__cause__ = RemoteTraceback(tb)
    return Raised(error, duration)


def fn_blobs(run: _Run, executor: object) -> dict[str, bytes]:
    """Pickle every planned task's function once; all problems at once, before anything runs.

    Raises:
        SerializationError: naming each task that cannot be sent to ``executor``.
    """
    blobs, problems = pickle_functions(run, run.plan.to_run)
    if problems:
        hint = "" if has_cloudpickle() else " (install cloudpickle for lambdas and closures)"
        raise SerializationError(
            f"{len(problems)} task(s) cannot be sent to {type(executor).__name__}, which runs "
            "attempts in other processes: every task function (and the run's context) must "
            f"pickle{hint}; define tasks at module level or use a thread executor:\n  "
            + "\n  ".join(problems),
            value_type="function",
        )
    return blobs


def pickle_functions(run: _Run, names: Iterable[str]) -> tuple[dict[str, bytes], list[str]]:
    """Pickle the functions of ``names`` (and check the run's context pickles for tasks that
    receive it); return the blobs and one problem line per task that cannot be sent."""
    blobs: dict[str, bytes] = {}
    problems: list[str] = []
    specs = run.graph.specs
    # generated graphs share a few functions among thousands of tasks: pickle each once
    # (keyed by identity; the specs keep the functions alive)
    by_fn: dict[int, bytes] = {}
    context_checked = False
    for name in names:
        spec = specs[name]
        fn = spec.fn
        try:
            blob = by_fn.get(id(fn))
            if blob is None:
                _by_value_if_not_importable(fn)
                blob = by_fn[id(fn)] = dumps(fn)
            blobs[name] = blob
            if spec.context_param is not None and not context_checked:
                dumps(run.context)
                context_checked = True
        except Exception as exc:
            problems.append(f"task {name!r}: {type(exc).__name__}: {exc}")
    return blobs, problems


def _by_value_if_not_importable(fn: object) -> None:
    """Send functions of modules built at run time (``exec``'d code) by value, not by name."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is None or module.__name__ == "__main__" or module.__spec__ is not None:
        return  # importable by name (or __main__, which cloudpickle sends by value already)
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover
        return
    cloudpickle.register_pickle_by_value(module)


def has_cloudpickle() -> bool:
    try:
        import cloudpickle  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def payload(
    spec: TaskSpec[..., Any], fn_blob: bytes, kwargs: dict[str, Any], run_id: str, attempt: int
) -> bytes:
    """One attempt's picklable payload for :func:`run_attempt`."""
    try:
        keyed = None
        if spec.effect in KEYED_EFFECTS:  # the child derives the same idempotency key
            keyed = (lineage_of(run_id), tuple(key_inputs(spec, kwargs)))
        trace = carrier()  # the attempt's trace context, when tracing is in use
        return dumps((fn_blob, kwargs, run_id, spec.name, attempt, spec.timeout_s, keyed, trace))
    except Exception as exc:
        raise SerializationError(
            f"task {spec.name!r}: its inputs cannot be sent to another process: {exc}; "
            "upstream values must pickle",
            value_type="kwargs",
        ) from exc


def abandon(executor: object, future: Future[Any]) -> bool:
    """Stop a timed-out attempt if the executor can; return whether it no longer runs."""
    stop: Callable[[Future[Any]], bool] | None = getattr(executor, "abandon", None)
    if stop is not None:
        return stop(future)
    return future.cancel()


def overdue(executor: object, future: Future[Any], timeout: float, submitted: float) -> float:
    """Seconds until ``future``'s attempt times out (``<= 0``: now); queue time not counted.

    An executor with ``began(future)`` says when the attempt really started (``None``: not
    yet); others count from ``submitted`` (``time.monotonic()`` at submission).
    """
    began: Callable[[Future[Any]], float | None] | None = getattr(executor, "began", None)
    now = time.monotonic()
    start = submitted if began is None else began(future)
    if start is None:
        return timeout  # still queued: check again later
    return max(start, submitted) + timeout - now


def forget(executor: object, future: Future[Any]) -> None:
    """Release an abandoned attempt nobody waits for (an idempotent task's)."""
    release: Callable[[Future[Any]], None] | None = getattr(executor, "forget", None)
    if release is not None:
        release(future)


class _Task:
    """A running task's program in the driver."""

    __slots__ = (
        "blocker",
        "deferred",
        "future",
        "handle",
        "kwargs",
        "program",
        "spec",
        "started",
        "submitted",
        "token",
    )

    def __init__(self, program: Any, kwargs: dict[str, Any], spec: TaskSpec[..., Any]) -> None:
        self.program = program
        self.kwargs = kwargs
        self.spec = spec
        self.token = 0  # identifies the current attempt's future and timer
        self.future: Future[Any] | None = None
        self.handle: Any = None  # the cluster future of the attempt's result (kept values)
        self.started = 0.0
        self.submitted = 0.0
        self.blocker: Future[Any] | None = None  # an abandoned attempt a retry must outlive
        self.deferred: int | None = None  # the Call waiting for ``blocker``


def drive(run: _Run, executor: Executor) -> None:
    """Run every planned task: programs in this thread, attempts on ``executor``."""
    from flowplan._kept import Kept, keeps_values  # it builds on this module

    blobs = fn_blobs(run, executor)
    kept = Kept(executor) if keeps_values(executor) else None  # big values stay on the cluster
    events: queue.SimpleQueue[tuple[str, int, Future[Any]]] = queue.SimpleQueue()
    timers: list[tuple[float, int, str, int, bool]] = []  # due, seq, task, token, is_timeout
    seq = itertools.count()
    tasks: dict[str, _Task] = {}
    ready: collections.deque[str] = collections.deque()
    waiting: dict[str, Future[Any]] = {}  # in-doubt task → the abandoned attempt it waits for

    def crashed(name: str, exc: BaseException) -> None:
        tasks.pop(name, None)
        info = ErrorInfo.from_exception(exc, kind="crashed")
        event = TaskFailed(
            run.run_id, run.clock(), name, 0, info, f"flowplan crashed: {exc!r}",
            fatal=not isinstance(exc, Exception),
        )  # fmt: skip
        ready.extend(run.apply(event))

    def submit(name: str, task: _Task, attempt: int) -> Outcome | None:
        spec = task.spec
        try:
            run.durable_start(name, attempt)  # at_most_once: committed before the attempt
            fn_blob = blobs[origin(run, name)]
            scope = (  # the payload carries the scope's trace context (e.g. the attempt's span)
                run.dispatch.attempt_scope(run.run_id, name, attempt)
                if run.dispatch.scopes
                else contextlib.nullcontext()
            )
            with scope:
                if kept is not None:
                    future, task.handle = kept.submit(
                        spec, fn_blob, task.kwargs, run.run_id, attempt
                    )
                else:
                    blob = payload(spec, fn_blob, task.kwargs, run.run_id, attempt)
                    future = _submit(executor, run.attempt_note(name, attempt), blob)
        except Exception as exc:  # unpicklable inputs, or an executor shut down under us
            return Raised(exc, 0.0)
        task.token += 1
        token = task.token
        task.future = future
        task.started = time.perf_counter()
        task.submitted = time.monotonic()
        future.add_done_callback(lambda f: events.put((name, token, f)))
        if spec.timeout_s is not None:
            due = time.monotonic() + spec.timeout_s
            heapq.heappush(timers, (due, next(seq), name, token, True))
        return None

    def step(name: str, outcome: Outcome | None) -> None:
        task = tasks[name]
        try:
            while True:
                request = task.program.send(outcome)
                outcome = None
                if isinstance(request, Call):
                    if task.blocker is not None and not task.blocker.done():
                        task.deferred = request.attempt  # wait for the abandoned attempt
                        return
                    task.blocker = None
                    outcome = submit(name, task, request.attempt)
                    if outcome is None:
                        return
                elif isinstance(request, Sleep):
                    due = time.monotonic() + request.seconds
                    heapq.heappush(timers, (due, next(seq), name, task.token, False))
                    return
                else:
                    ready.extend(run.apply(request))
        except StopIteration:
            tasks.pop(name, None)
        except BaseException as exc:  # a bug outside the body: never hang the run
            crashed(name, exc)

    def start(name: str) -> None:
        cancelled = run.should_cancel(name)
        if cancelled is not None:
            ready.extend(run.apply(cancelled))
            return
        prior = blocked(run.run_id, name)
        if prior is not None and name in run.plan.in_doubt:  # settle once it ended
            waiting[name] = prior
            prior.add_done_callback(lambda f: events.put((name, -2, f)))
            return
        try:
            program, kwargs = run.program(name)
            task = _Task(program, kwargs, run.graph.specs[name])
            if prior is not None:  # an abandoned attempt of the run this one resumes
                task.blocker = prior
                prior.add_done_callback(lambda f: events.put((name, -1, f)))
            tasks[name] = task
            request = next(program)
        except StopIteration:
            tasks.pop(name, None)
            return
        except BaseException as exc:
            crashed(name, exc)
            return
        if isinstance(request, TaskEvent):
            ready.extend(run.apply(request))
            if name in tasks:
                step(name, None)
        else:  # pragma: no cover - a program starts with an event
            crashed(name, RuntimeError(f"unexpected first request {request!r}"))

    def timed_out(name: str, task: _Task) -> None:
        future = task.future
        assert future is not None
        task.token += 1  # the abandoned future's late result is ignored
        task.future = None
        if not abandon(executor, future):
            if retry_may_overlap(task.spec):
                forget(executor, future)
            else:
                task.blocker = future
                block(run.run_id, name, future)  # a resume of the run waits for it too
                future.add_done_callback(lambda f: events.put((name, -1, f)))
        step(name, TimedOut((time.perf_counter() - task.started) * 1000))

    try:
        ready.extend(run.start())
        while run.unfinished > 0:
            while ready:
                start(ready.popleft())
            if run.unfinished == 0:
                break
            wait = None
            if timers:
                wait = max(0.0, timers[0][0] - time.monotonic())
            if run.fatal is not None:  # a task interrupted the run: take what already ended,
                wait = 0.0  # then what still runs is interrupted (below), never waited for
            try:
                name, token, future = events.get(timeout=wait)
            except queue.Empty:
                if run.fatal is not None:
                    break
                now = time.monotonic()
                while timers and timers[0][0] <= now:
                    _, _, name, token, is_timeout = heapq.heappop(timers)
                    task_ = tasks.get(name)
                    if task_ is None or task_.token != token:
                        continue  # the attempt finished first
                    if is_timeout:
                        assert task_.future is not None
                        assert task_.spec.timeout_s is not None
                        left = overdue(
                            executor, task_.future, task_.spec.timeout_s, task_.submitted
                        )
                        if left > 0:  # it waited in a queue first: its clock started later
                            heapq.heappush(timers, (now + left, next(seq), name, token, True))
                        else:
                            timed_out(name, task_)
                    else:
                        step(name, None)
                continue
            if token == -2:  # an abandoned attempt ended: its in-doubt task may be settled
                if waiting.pop(name, None) is future:
                    start(name)
                continue
            task_ = tasks.get(name)
            if task_ is None:
                continue
            if token == -1:  # an abandoned attempt ended: a deferred retry may go
                if task_.blocker is future and task_.deferred is not None:
                    attempt, task_.deferred, task_.blocker = task_.deferred, None, None
                    outcome = submit(name, task_, attempt)
                    if outcome is not None:
                        step(name, outcome)
                continue
            if token != task_.token:
                continue
            task_.future = None
            task_.token += 1  # its timeout timer is now stale
            outcome = outcome_of(future)
            if kept is not None:
                kept.landed(name, task_.handle, future, outcome)
                task_.handle = None
            step(name, outcome)
    except BaseException as exc:  # an interrupt in this thread, or a store that cannot write
        _abandon_all(executor, tasks)
        run.abort(exc)
    if run.fatal is not None and run.unfinished > 0:
        _abandon_all(executor, tasks)
        run.abort(run.fatal)


def _abandon_all(executor: Executor, tasks: dict[str, _Task]) -> None:
    for task_ in tasks.values():
        if task_.future is not None:
            with contextlib.suppress(Exception):
                abandon(executor, task_.future)


_blocked: dict[tuple[str, str], Future[Any]] = {}
"""Abandoned attempts that may still run, by (lineage, task): a retry, or a resume of the run
in this process (a new run id, the same lineage), waits for the attempt before its own."""
_blocked_lock = threading.Lock()


def block(run_id: str, task: str, future: Future[Any]) -> None:
    """Remember ``task``'s abandoned attempt ``future`` in live run ``run_id``'s lineage."""
    with _blocked_lock:
        for key in [key for key, prior in _blocked.items() if prior.done()]:
            del _blocked[key]
        if not future.done():
            _blocked[lineage_of(run_id), task] = future


def blocked(run_id: str, task: str) -> Future[Any] | None:
    """The abandoned attempt of ``task`` in live run ``run_id``'s lineage still running (and
    forgotten: the caller waits for it), else ``None``."""
    if not _blocked:
        return None
    with _blocked_lock:
        prior = _blocked.pop((lineage_of(run_id), task), None)
    return None if prior is None or prior.done() else prior


def _submit(executor: Executor, note: Callable[[int], None] | None, blob: bytes) -> Future[Any]:
    """Submit one attempt; on a :class:`ProcessExecutor`, ``note`` (if any) gets the child's
    pid before the attempt is sent to it (other executors do not say which process runs it)."""
    if note is not None and isinstance(executor, ProcessExecutor):
        return executor.submit_noted(note, run_attempt, blob)
    return executor.submit(run_attempt, blob)


async def acall_remote(
    spec: TaskSpec[..., Any],
    kwargs: dict[str, Any],
    run_id: str,
    attempt: int,
    *,
    executor: Executor,
    fn_blob: bytes,
    note: Callable[[int], None] | None = None,
) -> Outcome:
    """Run one sync attempt on a remote executor from asyncio (``aexecute``); ``note``
    records the child process of an ``at_most_once`` attempt (see :func:`_submit`)."""
    prior = blocked(run_id, spec.name)
    if prior is not None:  # a non-idempotent retry never overlaps its abandoned attempt
        with contextlib.suppress(BaseException):
            await asyncio.wrap_future(prior)
    try:
        blob = payload(spec, fn_blob, kwargs, run_id, attempt)
        future = _submit(executor, note, blob)
    except Exception as exc:
        return Raised(exc, 0.0)
    start = time.perf_counter()
    submitted = time.monotonic()
    waiter = asyncio.wrap_future(future)
    wait = spec.timeout_s
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=wait)
            if done or spec.timeout_s is None:
                break
            wait = overdue(executor, future, spec.timeout_s, submitted)
            if wait <= 0:
                break
    except asyncio.CancelledError:  # the run itself was cancelled: so is the attempt
        abandon(executor, future)
        raise
    if not done:
        waiter.cancel()
        if not abandon(executor, future):
            if retry_may_overlap(spec):
                forget(executor, future)
            else:
                block(run_id, spec.name, future)
        return TimedOut((time.perf_counter() - start) * 1000)
    return outcome_of(future)
