"""Registries: explicit, ordered collections of declared tasks.

Place in the data flow: beside the *spec* layer. The ``task`` decorator registers each spec into
the active registry — the one activated through a context variable, else the default registry
(the only process-global state flowplan keeps). flowing's detached-task discovery reads it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from typing import Any

from flowplan.spec import TaskSpec

__all__ = ["Registry", "active_registry", "clear_registry", "default_registry"]


class Registry:
    """An ordered, thread-safe collection of task specs.

    Specs are kept by identity: re-declaring a name adds a new spec, as flowing does; graphs
    decide which spec a name means.

    >>> reg = Registry()
    >>> token = reg.activate()
    >>> reg.deactivate(token)
    """

    def __init__(self) -> None:
        self._specs: list[TaskSpec[..., Any]] = []
        self._ids: set[int] = set()  # registered specs stay alive here, so ids stay unique
        self._lock = threading.Lock()

    def register(self, spec: TaskSpec[..., Any]) -> None:
        """Add ``spec`` (idempotent for the same object)."""
        with self._lock:
            if id(spec) not in self._ids:
                self._ids.add(id(spec))
                self._specs.append(spec)

    def specs(self) -> tuple[TaskSpec[..., Any], ...]:
        """Every registered spec, in registration order."""
        with self._lock:
            return tuple(self._specs)

    def clear(self) -> None:
        """Forget every registered spec."""
        with self._lock:
            self._specs.clear()
            self._ids.clear()

    def activate(self) -> contextvars.Token[Registry | None]:
        """Make this registry the target of ``task`` in the current context.

        Returns:
            A token for :meth:`deactivate`.
        """
        return _active.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[Registry | None]) -> None:
        """Restore the registry that was active before :meth:`activate` returned ``token``."""
        _active.reset(token)

    def __iter__(self) -> Iterator[TaskSpec[..., Any]]:
        return iter(self.specs())

    def __len__(self) -> int:
        return len(self._specs)


_active: contextvars.ContextVar[Registry | None] = contextvars.ContextVar(
    "flowplan_active_registry", default=None
)
_default = Registry()


def default_registry() -> Registry:
    """The process-wide registry used when none is activated."""
    return _default


def active_registry() -> Registry:
    """The registry ``task`` registers into now: the activated one, else the default."""
    active = _active.get()
    return active if active is not None else _default  # an empty registry is falsy


def clear_registry() -> None:
    """Empty the default registry (flowing's ``clear_registry``): no stale detached tasks."""
    _default.clear()
