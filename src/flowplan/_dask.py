"""Dask: an executor that runs each attempt as one task on a ``distributed`` cluster.

Place in the data flow: an executor the interpreter recognises as remote
(``executes_remotely = True``). Task programs (gates, retries, backoff, timeouts) stay in the
driver; each attempt is submitted as ``client.submit(trampoline, payload, key=unique,
pure=False)``: one positional payload, so Dask's own keywords never clash with task parameters,
and a unique key, so Dask never hands a retry the cached result of a failed attempt.
``distributed`` is imported only when a :class:`DaskExecutor` is created (extra ``dask``).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, InvalidStateError
from typing import Any, ParamSpec, TypeVar

__all__ = ["DaskExecutor"]

P = ParamSpec("P")
T = TypeVar("T")


class DaskExecutor(Executor):
    """Submit calls to a ``distributed.Client``; results come back as standard futures.

    Retries, backoff and timeouts stay in flowplan. Dask cannot stop a running task
    (``Future.cancel`` only forgets it), so a timed-out attempt is recorded as timed out and
    abandoned; a task not marked ``idempotent`` waits for it to end before its retry starts.

    Args:
        client: a connected ``distributed.Client``.
        key_prefix: the prefix of Dask keys (shown in the dashboard).
        keep_values_on_cluster: with :func:`~flowplan.execute`, a big value (64 KiB or more
            pickled) reaches the tasks that consume it worker to worker, as the producer's
            Dask future, instead of through the driver; it stays on the cluster until the run
            ends. Every value still comes back to the driver for the snapshot. If a worker
            holding a kept value dies, Dask recomputes its producer (its body runs again,
            unseen by flowplan): use it for tasks that are safe to run twice.

    Raises:
        ImportError: when ``distributed`` is not installed (``pip install 'flowplan[dask]'``).
        InvalidOptionError: ``client`` is not a ``distributed.Client``.
    """

    executes_remotely = True

    def __init__(
        self, client: Any, *, key_prefix: str = "flowplan", keep_values_on_cluster: bool = False
    ) -> None:
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - CI installs it with the dev extra
            raise ImportError(
                "DaskExecutor needs dask.distributed: pip install 'flowplan[dask]'"
            ) from exc
        from flowplan.errors import InvalidOptionError

        if not isinstance(client, distributed.Client):
            raise InvalidOptionError(
                f"DaskExecutor needs a distributed.Client, got {client!r} "
                f"({type(client).__name__}); e.g. DaskExecutor(distributed.Client(cluster))",
                option="client",
                value=client,
            )
        if not isinstance(keep_values_on_cluster, bool):
            raise InvalidOptionError(
                f"keep_values_on_cluster must be True or False, got {keep_values_on_cluster!r} "
                f"({type(keep_values_on_cluster).__name__})",
                option="keep_values_on_cluster",
                value=keep_values_on_cluster,
            )
        self.client: Any = client  # distributed is untyped
        self.key_prefix = key_prefix
        self.keep_values_on_cluster = keep_values_on_cluster
        self._ids = itertools.count()
        self._run = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._remote: dict[Future[Any], Any] = {}
        self._finished: queue.SimpleQueue[tuple[Any, Future[Any], str] | None] = queue.SimpleQueue()
        self._fetcher: threading.Thread | None = None
        self._shutdown = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Submit ``fn(*args, **kwargs)`` as one Dask task with a unique key."""
        future, _ = self._submit(fn, args, kwargs)
        return future

    def submit_keeping(self, fn: Callable[..., T], /, *args: Any) -> tuple[Future[T], Any]:
        """Submit ``fn(*args)``; return its future and the Dask future of its result.

        Dask futures among ``args`` are resolved on the worker (worker to worker). The
        result stays on the cluster while the returned Dask future is referenced.
        """
        return self._submit(fn, args, {})

    def _submit(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Future[T], Any]:
        if self._shutdown:
            raise RuntimeError("cannot submit to a DaskExecutor after shutdown()")
        name = getattr(fn, "__name__", "call")
        key = f"{self.key_prefix}-{name}-{self._run}-{next(self._ids)}"
        if kwargs:  # keep Dask's keywords (key, pure, retries, ...) away from the call's own
            remote = self.client.submit(_call_with, fn, args, kwargs, key=key, pure=False)
        else:
            remote = self.client.submit(fn, *args, key=key, pure=False)
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()  # it is Dask's now: only abandon() stops it
        with self._lock:
            self._remote[future] = remote
            if self._fetcher is None:
                self._fetcher = threading.Thread(
                    target=self._fetch, name="flowplan-dask-results", daemon=True
                )
                self._fetcher.start()

        def done(finished: Any) -> None:  # on Dask's callback thread: no round trip here
            self._finished.put((finished, future, key))

        remote.add_done_callback(done)
        return future, remote

    def _fetch(self) -> None:
        """Settle finished futures, fetching results in batches (one gather per batch instead
        of one round trip per task, which halves the per-task overhead of many small tasks)."""
        while True:
            item = self._finished.get()
            if item is None:
                return
            batch = [item]
            while True:
                try:
                    more = self._finished.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._finished.put(None)  # stop after this batch
                    break
                batch.append(more)
            with self._lock:
                for _, future, _ in batch:
                    self._remote.pop(future, None)
            ok = [(remote, future) for remote, future, _ in batch if remote.status == "finished"]
            values: list[Any] | None = None
            if ok:
                try:
                    values = self.client.gather([remote for remote, _ in ok])
                except BaseException:  # one of them went away: settle them one by one
                    values = None
            if values is not None:
                for (_, future), value in zip(ok, values, strict=True):
                    _settle(future, True, value)
                done = {id(future) for _, future in ok}
            else:
                done = set()
            for remote, future, key in batch:
                if id(future) not in done:
                    _settle_one(remote, future, key)

    def abandon(self, future: Future[Any]) -> bool:
        """Dask cannot stop a running task: keep tracking it (return ``False``)."""
        return future.done()

    def forget(self, future: Future[Any]) -> None:
        """Release the Dask future behind ``future`` (its result is no longer wanted)."""
        with self._lock:
            remote = self._remote.pop(future, None)
        if remote is not None:
            remote.cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse further calls (the client is yours to close); optionally cancel pending ones."""
        self._shutdown = True
        self._finished.put(None)
        if cancel_futures:
            with self._lock:
                remotes = list(self._remote.values())
            for remote in remotes:
                remote.cancel()


def _settle(future: Future[Any], ok: bool, value: Any) -> None:
    with contextlib.suppress(InvalidStateError):
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _settle_one(remote: Any, future: Future[Any], key: str) -> None:
    try:
        if remote.status == "finished":
            _settle(future, True, remote.result())
        elif remote.status == "cancelled":
            _settle(future, False, RuntimeError(f"Dask cancelled {key}"))
        else:
            _settle(future, False, remote.exception())
    except BaseException as exc:  # fetching the result failed
        _settle(future, False, exc)


def _call_with(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)
