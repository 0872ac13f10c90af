"""A watchdog for ``aexecute``: notices an event loop blocked past an attempt's timeout.

Place in the data flow: interpreter (``aexecute``) → ``_program.acall`` → **watchdog**. An
``async def`` attempt's timeout is a callback on the run's event loop; a body that makes a
blocking call (``time.sleep``, blocking I/O) stops the whole loop, so the callback cannot fire
and nothing on the loop can tell. One daemon thread, started with the first watched attempt
and ending when none is left, keeps the deadline (timeout plus the cancellation grace) of each
``async def`` attempt running with a timeout. When a deadline passes before the loop handled
that attempt's timeout, the loop is blocked: the watchdog logs a warning (logger
``"flowplan"``) naming the task running on the loop, and marks that task's attempt, so that,
when its body finally returns, it is recorded as timed out with the reason.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from typing import Any

__all__ = ["Watch", "watch"]

_log = logging.getLogger("flowplan")


class Watch:
    """One watched attempt: its deadline, and whether it was found blocking the loop."""

    __slots__ = (
        "attempt",
        "blocked_s",
        "body",
        "deadline",
        "loop",
        "seen",
        "start",
        "task",
        "timeout_s",
    )

    def __init__(
        self,
        task: str,
        *,
        attempt: int,
        timeout_s: float,
        grace_s: float,
        loop: asyncio.AbstractEventLoop,
        body: asyncio.Future[Any],
    ) -> None:
        self.task = task
        self.attempt = attempt
        self.timeout_s = timeout_s
        self.loop: asyncio.AbstractEventLoop | None = loop
        self.body: asyncio.Future[Any] | None = body
        self.start = time.monotonic()
        self.deadline = self.start + timeout_s + grace_s
        self.seen = False  # the loop handled this attempt's timeout (or its end)
        self.blocked_s = 0.0  # > 0: its body was found blocking the loop this long

    def close(self) -> None:
        """From the loop: this attempt's timeout fired, or it ended; stop watching it."""
        self.seen = True
        with _cond:
            if self.body is not None:
                _active.pop(self.body, None)
            self.body = self.loop = None  # its deadline may wait in the heap a long time
            _closed[0] += 1
            if _closed[0] > _COMPACT and _closed[0] * 2 > len(_heap):  # mostly closed: drop them
                _heap[:] = [item for item in _heap if not item[2].seen]
                heapq.heapify(_heap)
                _closed[0] = 0


_cond = threading.Condition()
_heap: list[tuple[float, int, Watch]] = []
_active: dict[asyncio.Future[Any], Watch] = {}  # body task → its watch, while watched
_seq = itertools.count()
_closed = [0]  # closed watches still in the heap (at most; compacted past _COMPACT)
_COMPACT = 1024
_thread: list[threading.Thread] = []  # the running watchdog, if any


def watch(
    task: str,
    *,
    attempt: int,
    timeout_s: float,
    grace_s: float,
    loop: asyncio.AbstractEventLoop,
    body: asyncio.Future[Any],
) -> Watch:
    """Watch an ``async def`` attempt whose ``body`` task runs on ``loop``; close it when its
    timeout fired or it ended."""
    entry = Watch(task, attempt=attempt, timeout_s=timeout_s, grace_s=grace_s, loop=loop, body=body)
    with _cond:
        _active[body] = entry
        heapq.heappush(_heap, (entry.deadline, next(_seq), entry))
        if not _thread:
            thread = threading.Thread(target=_run, name="flowplan:watchdog", daemon=True)
            _thread.append(thread)
            thread.start()
        else:
            _cond.notify()
    return entry


def _run() -> None:
    while True:
        with _cond:
            while True:
                if not _heap:
                    _thread.clear()  # the next watch starts a new watchdog
                    return
                deadline, _, entry = _heap[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    heapq.heappop(_heap)
                    if entry.seen:
                        _closed[0] = max(_closed[0] - 1, 0)
                    break
                _cond.wait(left)
            loop = entry.loop
            if entry.seen or loop is None:
                continue
            try:
                running = asyncio.current_task(loop)  # what holds the loop right now
            except Exception:  # pragma: no cover - a loop that cannot tell: blame nobody
                running = None
            blocker = _active.get(running) if running is not None else None
        try:
            _report(entry, running, blocker)
        except Exception:  # pragma: no cover - a broken log handler must not stop the watch
            continue


def _report(entry: Watch, running: asyncio.Task[Any] | None, blocker: Watch | None) -> None:
    now = time.monotonic()
    overdue = now - entry.start - entry.timeout_s
    fix = (
        "an async def task must not make blocking calls (time.sleep, blocking I/O, heavy "
        "computation): use await asyncio.sleep, an async client, or asyncio.to_thread"
    )
    if blocker is not None:
        if blocker.blocked_s:
            return  # said already
        blocker.blocked_s = now - blocker.start
        whose = (
            f"its timeout_s={entry.timeout_s:g}"
            if blocker is entry
            else f"the timeout_s={entry.timeout_s:g} of task {entry.task!r} "
            f"(attempt {entry.attempt})"
        )
        _log.warning(
            "flowplan: task %r (attempt %d) has blocked the event loop for %.1fs; %s cannot "
            "fire while the loop is blocked, and no other task on the loop runs meanwhile. The "
            "attempt is recorded as timed out when its body returns; %s",
            blocker.task,
            blocker.attempt,
            now - blocker.start,
            whose,
            fix,
        )
        return
    holder = f"task {running.get_name()!r}" if running is not None else "code outside any task"
    _log.warning(
        "flowplan: task %r (attempt %d) passed its timeout_s=%g %.1fs ago, but the event loop "
        "has not run since: %s is blocking it; the timeout fires when the loop runs again. %s",
        entry.task,
        entry.attempt,
        entry.timeout_s,
        overdue,
        holder,
        fix,
    )
