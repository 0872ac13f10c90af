"""Process identity for SQLite rows: who owns a RUNNING task, and is that process alive?

Place in the data flow: store (SQLite), used by crash recovery. Each row written records the
writer's pid, a *start token* and the hostname. A pid alone is not enough — pids are reused —
so the token combines the boot id and the process start time (Linux ``/proc``); elsewhere it is
a random per-process value, which still tells this process from an earlier one with its pid.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["own_identity", "owner_alive", "process_token"]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) of ``pid`` from ``/proc``, or ``None``."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return (fields[0], fields[19]) if len(fields) > 19 else None


_BOOT = (_read("/proc/sys/kernel/random/boot_id") or "").strip()
_HOST = socket.gethostname()


def process_token(pid: int) -> str | None:
    """A token for ``pid`` that changes when the pid is reused, or ``None`` if unknowable."""
    stat = _proc_stat(pid)
    return None if stat is None else f"{_BOOT}:{stat[1]}"


def _new_token(pid: int) -> str:
    return process_token(pid) or f"random:{os.urandom(8).hex()}:{time.time_ns()}"


_pid = os.getpid()
_token = _new_token(_pid)


def own_identity() -> tuple[int, str, str]:
    """This process's (pid, start token, hostname); a forked child gets its own token."""
    global _pid, _token
    pid = os.getpid()
    if pid != _pid:
        _pid, _token = pid, _new_token(pid)
    return _pid, _token, _HOST


def owner_alive(pid: int | None, token: str | None, host: str | None) -> bool:
    """Whether the process that wrote a row may still be running (``True`` when unsure).

    Rows of another host are always "alive": their process cannot be checked from here.

    >>> owner_alive(*own_identity())
    True
    """
    own_pid, own_token, own_host = own_identity()
    if pid is None or host != own_host:
        return True
    if pid == own_pid:
        return token == own_token  # same pid, another token: an earlier process, now gone
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - no portable liveness check without psutil
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to another user
    stat = _proc_stat(pid)
    if stat is None:
        return True
    if stat[0] in ("Z", "X"):
        return False  # a zombie has stopped running
    return token is None or token == f"{_BOOT}:{stat[1]}"
