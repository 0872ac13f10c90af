"""A live progress display for long runs, as a hook: done/running/failed counts, tasks, ETA.

Place in the data flow: a hook — it reads the event stream (``RunStarted`` … ``RunFinished``)
and draws; it never changes a run. With `rich <https://rich.readthedocs.io>`_ installed
(``pip install 'flowplan[progress]'``) it draws a live bar; without rich, or with
``mode="plain"``, it writes one plain line per change. The ``flowplan`` command turns it on
when stderr is a terminal.

>>> import io
>>> from flowplan import InlineExecutor, Registry, TaskGraph, execute, plan, task
>>> reg = Registry()
>>> @task(registry=reg)
... def one() -> int:
...     return 1
>>> out = io.StringIO()
>>> _ = execute(plan(TaskGraph.build([one]), run_id="r1"), executor=InlineExecutor(),
...             hooks=[ProgressHook(mode="plain", stream=out)])
>>> print(out.getvalue(), end="")  # doctest: +ELLIPSIS
run r1: 1 task(s) to run
[0/1] started one
[1/1] one succeeded in ...
run r1 succeeded in ...: 1 succeeded
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Literal, TextIO

from flowplan.events import (
    Event,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskInDoubt,
    TaskRetrying,
    TaskReused,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from flowplan.report import format_duration

__all__ = ["ProgressHook", "rich_available"]

_ORDER = ("succeeded", "reused", "failed", "in_doubt", "skipped", "cancelled")
_OUTCOMES: dict[type, str] = {  # a finished task's event type → its outcome word
    TaskSucceeded: "succeeded",
    TaskFailed: "failed",
    TaskInDoubt: "in_doubt",
    TaskSkipped: "skipped",
    TaskCancelled: "cancelled",
}


def rich_available() -> bool:
    """Whether the optional ``rich`` package can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressHook:
    """Show a run's progress: counts by outcome, the tasks running now, and an ETA.

    Args:
        mode: ``"rich"`` (a live bar; needs rich), ``"plain"`` (one line per change) or
            ``"auto"`` (rich when installed, else plain).
        console: the ``rich.console.Console`` to draw on (rich mode; default: stderr).
        stream: where plain lines go (default: ``sys.stderr`` at write time).

    Thread-safe; one hook can watch several runs in turn (not at once).
    """

    def __init__(
        self,
        *,
        mode: Literal["auto", "rich", "plain"] = "auto",
        console: Any = None,
        stream: TextIO | None = None,
    ) -> None:
        if mode == "auto":
            mode = "rich" if rich_available() else "plain"
        if mode == "rich" and not rich_available():
            raise ImportError(
                "ProgressHook(mode='rich') needs the optional 'rich' package; "
                "install it with pip install 'flowplan[progress]' or use mode='plain'"
            )
        self.mode: Literal["rich", "plain"] = mode
        self._console = console
        self._stream = stream
        self._lock = threading.Lock()
        self._progress: Any = None
        self._bar: Any = None
        self._reset("")

    def _reset(self, run_id: str) -> None:
        self._run_id = run_id
        self._total = 0
        self._outcomes: dict[str, str] = {}
        self._running: dict[str, int] = {}
        self._started = time.monotonic()
        self._retries = 0

    # -- state -------------------------------------------------------------------------------
    @property
    def done(self) -> int:
        """Tasks finished (any outcome, reused included) in the current run."""
        return len(self._outcomes)

    def counts(self) -> dict[str, int]:
        """Finished tasks by outcome (``succeeded``, ``reused``, ``failed`` …)."""
        out: dict[str, int] = {}
        for word in self._outcomes.values():
            out[word] = out.get(word, 0) + 1
        return out

    def eta_s(self) -> float | None:
        """Seconds left, from the mean pace of the tasks run so far (``None`` until one ends)."""
        ran = sum(1 for w in self._outcomes.values() if w != "reused")
        left = self._total - self.done
        if ran == 0 or left <= 0:
            return None if left > 0 else 0.0
        return (time.monotonic() - self._started) / ran * left

    def _summary(self) -> str:
        counts = self.counts()
        return ", ".join(f"{counts[w]} {w}" for w in _ORDER if counts.get(w)) or "nothing yet"

    # -- events ------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Update the display for ``event``."""
        with self._lock:
            line = self._apply(event)
            if self.mode == "plain":
                if line is not None:
                    self._write(line)
            else:
                self._draw(event)

    def _apply(self, event: Event) -> str | None:
        if isinstance(event, RunStarted):
            self._reset(event.run_id)
            self._total = len(event.pending) + len(event.reused)
            for name in event.reused:
                self._outcomes[name] = "reused"
            reused = f" ({len(event.reused)} reused)" if event.reused else ""
            return f"run {event.run_id}: {len(event.pending)} task(s) to run{reused}"
        if isinstance(event, RunFinished):
            took = format_duration(event.duration_ms)
            return f"run {event.run_id} {event.status} in {took}: {self._summary()}"
        where = f"[{self.done}/{self._total}]"
        if isinstance(event, TaskStarted):
            self._running[event.task] = event.attempt
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            return f"{where} started {event.task}{again}"
        if isinstance(event, TaskRetrying):
            self._retries += 1
            return f"{where} {event.task} will retry in {event.delay_s:g}s: {event.error}"
        if isinstance(event, TaskReused):
            if event.task in self._outcomes:
                return None
            self._outcomes[event.task] = "reused"
            return f"[{self.done}/{self._total}] reused {event.task}"
        if isinstance(
            event, TaskSucceeded | TaskFailed | TaskSkipped | TaskCancelled | TaskInDoubt
        ):
            self._running.pop(event.task, None)
            word = _OUTCOMES[type(event)]
            self._outcomes[event.task] = word
            where = f"[{self.done}/{self._total}]"
            if isinstance(event, TaskSucceeded):
                detail = f" in {format_duration(event.duration_ms)}"
            elif isinstance(event, TaskFailed):
                detail = f": {event.error}"
            else:
                detail = f": {event.reason}"
            eta = self.eta_s()
            tail = f" · ETA {format_duration(eta * 1000)}" if eta else ""
            return f"{where} {event.task} {word}{detail}{tail}"
        return None

    def _write(self, line: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()

    # -- rich --------------------------------------------------------------------------------
    def _fields(self) -> dict[str, Any]:
        running = ", ".join(self._running) or "-"
        if len(running) > 60:
            running = running[:57] + "..."
        return {"counts": self._summary(), "running": running}

    def _draw(self, event: Event) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        if isinstance(event, RunStarted):
            if self._progress is not None:
                self._progress.stop()
            console = self._console if self._console is not None else Console(stderr=True)
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("running: {task.fields[running]}"),
                console=console,
                transient=False,
            )
            self._progress.start()
            self._bar = self._progress.add_task(
                f"run {event.run_id[:8]}", total=self._total, completed=self.done, **self._fields()
            )
            return
        if self._progress is None:
            return
        self._progress.update(self._bar, completed=self.done, **self._fields())
        if isinstance(event, RunFinished):
            self._progress.update(self._bar, description=f"run {event.run_id[:8]} {event.status}")
            self._progress.stop()
            self._progress = None
