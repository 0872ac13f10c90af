"""Values kept on the cluster: upstream results passed to consumers as cluster futures.

Place in the data flow: inside the remote driver (``_remote.drive``), for an executor that
says ``keep_values_on_cluster = True`` and offers ``submit_keeping`` (the
:class:`~flowplan.executors.DaskExecutor` option). Every value still comes back to the driver
(the snapshot records it; gates read it), but a consumer's attempt receives a big upstream
value as the producer's cluster future, resolved worker to worker, instead of the value
travelling driver → scheduler → worker again inside the consumer's payload. Values smaller
than :data:`MIN_BYTES` pickled travel inline (cheaper than a fetch). A kept value lives on
the cluster while the run holds its future — until the run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from flowplan._program import Outcome, Returned
from flowplan._remote import payload, run_attempt, run_attempt_with

if TYPE_CHECKING:
    from flowplan.spec import TaskSpec

__all__ = ["MIN_BYTES", "KeepingExecutor", "Kept", "keeps_values"]

MIN_BYTES = 64 * 1024
"""Pickled values at least this big stay on the cluster; smaller ones travel inline."""


class KeepingExecutor(Protocol):
    """An executor that can keep results on its cluster (``DaskExecutor``'s opt-in)."""

    keep_values_on_cluster: bool

    def submit_keeping(
        self, fn: Callable[..., Any], /, *args: Any
    ) -> tuple[Future[Any], Any]:  # pragma: no cover - a protocol
        """Submit ``fn(*args)``; return its future and the cluster future of its result."""
        ...


def keeps_values(executor: object) -> TypeGuard[KeepingExecutor]:
    """Whether ``executor`` keeps results on its cluster for the attempts that consume them."""
    return (
        getattr(executor, "keep_values_on_cluster", False) is True
        and getattr(executor, "submit_keeping", None) is not None
    )


class Kept:
    """One run's kept values: task name → (cluster future of its result, the value itself)."""

    def __init__(self, executor: KeepingExecutor) -> None:
        self._submit = executor.submit_keeping
        self._values: dict[str, tuple[Any, Any]] = {}

    def submit(
        self,
        spec: TaskSpec[..., Any],
        fn_blob: bytes,
        kwargs: Mapping[str, Any],
        run_id: str,
        attempt: int,
    ) -> tuple[Future[Any], Any]:
        """Submit one attempt, passing kept upstream values as cluster futures.

        An argument is replaced only when it *is* (identity) the value a kept producer
        returned, so overrides, reused records and small values travel inline as usual.

        Returns:
            The attempt's future and the cluster future of its result.
        """
        values = self._values
        sent = dict(kwargs)
        slots: list[tuple[str, str | None]] = []
        refs: list[Any] = []
        if values:
            for param, arg in kwargs.items():
                kept = values.get(param)
                if kept is not None and kept[1] is arg:
                    sent[param] = None
                    slots.append((param, None))
                    refs.append(kept[0])
                elif param == spec.upstream_param:  # one dict with every upstream value
                    entries = dict(arg)
                    for dep, dep_value in arg.items():
                        kept = values.get(dep) if isinstance(dep, str) else None
                        if kept is not None and kept[1] is dep_value:
                            entries[dep] = None
                            slots.append((param, dep))
                            refs.append(kept[0])
                    sent[param] = entries
        blob = payload(spec, fn_blob, sent, run_id, attempt)
        if slots:
            return self._submit(run_attempt_with, blob, tuple(slots), *refs)
        return self._submit(run_attempt, blob)

    def landed(self, name: str, handle: Any, future: Future[Any], outcome: Outcome) -> None:
        """Record a finished attempt: keep a big returned value's cluster future."""
        if not isinstance(outcome, Returned) or handle is None:
            return
        try:
            _, blob, _ = future.result()
        except BaseException:  # pragma: no cover - outcome_of returned a value: it succeeded
            return
        if len(blob) >= MIN_BYTES:
            self._values[name] = (handle, outcome.value)

    def clear(self) -> None:
        """Release every kept value (the run ended)."""
        self._values.clear()
