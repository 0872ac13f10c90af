"""Run ownership: one live owner per lineage of runs in a store.

Place in the data flow: **store**. A run's lineage is the first run of its chain of resumes
(:attr:`flowplan.plan.Plan.lineage_id`). When a run starts (``create_run``/``begin_run``) the
store gives its lineage an :class:`Owner`: a fresh owner id, this process's pid, start token
and host, since when, and a lease another host may take over once it expires. The owner is
dropped when the run finishes (``finish_run``). While it lives, a second run of the lineage —
from another process or another thread of this one — is refused with
:class:`~flowplan.errors.RunOwnedError`; a dead owner is taken over.

An owner is live (:func:`owner_live`) when:

* it belongs to this process: its run has not finished (its owner id is in this process's set
  of live owners — the one piece of process-wide state here, like the process identity);
* it belongs to another process of this host: that process runs (pid and start token, so a
  reused pid is no owner);
* it belongs to another host: its lease has not expired (the owner's store renews it while
  the run lives, see :class:`Heartbeat`).
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
import uuid
from collections.abc import Callable

import attrs

from flowplan.errors import RunOwnedError
from flowplan.store._sqlite._process import own_identity, owner_alive

__all__ = [
    "DEFAULT_LEASE_S",
    "Heartbeat",
    "Owner",
    "drop",
    "new_owner",
    "owned_error",
    "owner_live",
]

DEFAULT_LEASE_S = 60.0
"""How long another host waits after an owner's last heartbeat before taking its lineage."""

_live: set[str] = set()
_live_lock = threading.Lock()


@attrs.frozen
class Owner:
    """The owner of a lineage of runs.

    Attributes:
        owner_id: unique per run start (two runs of one process are two owners).
        run_id: the run that owns the lineage.
        pid: the owner's process id.
        token: the owner process's start token (tells a reused pid apart).
        host: the owner's host name.
        since: when it took the lineage (epoch seconds).
        lease_until: when another host may take the lineage over (epoch seconds).
    """

    owner_id: str
    run_id: str
    pid: int
    token: str
    host: str
    since: float
    lease_until: float


def new_owner(run_id: str, lease_s: float) -> Owner:
    """A live owner of this process for ``run_id`` (live until :func:`drop`)."""
    pid, token, host = own_identity()
    now = time.time()
    owner = Owner(uuid.uuid4().hex, run_id, pid, token, host, now, now + lease_s)
    with _live_lock:
        _live.add(owner.owner_id)
    return owner


def drop(owner_id: str) -> None:
    """The run of ``owner_id`` (of this process) ended: it owns nothing any more."""
    with _live_lock:
        _live.discard(owner_id)


def owner_live(owner: Owner, now: float | None = None) -> bool:
    """Whether ``owner`` still owns its lineage (see the module docstring).

    >>> owner = new_owner("r1", 60.0)
    >>> owner_live(owner)
    True
    >>> drop(owner.owner_id)
    >>> owner_live(owner)
    False
    """
    pid, token, host = own_identity()
    if owner.host != host:
        return owner.lease_until > (time.time() if now is None else now)
    if owner.pid == pid and owner.token == token:
        with _live_lock:
            return owner.owner_id in _live
    return owner_alive(owner.pid, owner.token, owner.host)


def _when(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def owned_error(run_id: str, lineage: str, owner: Owner, where: str) -> RunOwnedError:
    """The error for ``run_id`` refused because ``owner`` (live) owns ``lineage`` in ``where``."""
    pid, token, host = own_identity()
    of = f"run {owner.run_id!r}" + (f" (lineage {lineage!r})" if lineage != owner.run_id else "")
    if owner.host != host:
        who = f"process {owner.pid} on host {owner.host!r}"
        how = (
            f"it renews a lease while it runs; if it is gone, the lineage can be taken over "
            f"after its lease expires at {_when(owner.lease_until)}"
        )
    elif owner.pid == pid and owner.token == token:
        who = f"this process (pid {pid}), on another thread"
        how = "wait for that run to finish, then resume"
    else:
        who = f"live process {owner.pid} on this host ({owner.host!r})"
        how = (
            f"wait for it to finish; if it is hung, stop it (kill {owner.pid}) — a dead owner "
            "is taken over by the next resume"
        )
    return RunOwnedError(
        f"run {run_id!r} cannot start: {of} is live in {who} since {_when(owner.since)}, and "
        f"a lineage of runs has one live owner in {where} (otherwise both would run its tasks "
        f"and their effects); {how}",
        run_id=run_id,
        lineage_id=lineage,
        owner_run_id=owner.run_id,
        owner_pid=owner.pid,
        owner_host=owner.host,
        owner_since=owner.since,
        lease_until=owner.lease_until,
    )


class Heartbeat:
    """A daemon thread that calls ``renew`` every ``interval_s`` while ``active()`` is true.

    Started by a store when it takes its first owner; it ends by itself once the store holds
    none (and is started again by the next). ``renew`` errors are ignored: a missed renewal
    only lets another host take over sooner.
    """

    def __init__(self, renew: Callable[[], None], interval_s: float) -> None:
        self._renew = renew
        self._interval = interval_s
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._active: Callable[[], bool] = lambda: False

    def ensure(self, active: Callable[[], bool]) -> None:
        """Run while ``active()`` is true (start the thread if it is not running)."""
        with self._lock:
            self._active = active
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._loop, name="flowplan-owner-heartbeat", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop at once (the store closed)."""
        with self._lock:
            self._active = lambda: False
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            with self._lock:
                if not self._active():
                    self._thread = None
                    return
            with contextlib.suppress(Exception):  # a missed renewal shortens the lease only
                self._renew()
