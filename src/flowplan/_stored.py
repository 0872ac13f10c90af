"""The stored form of a typed task value (see :mod:`flowplan.store._typed`).

Kept apart from the store package so the planner can recognise it without importing stores.
"""

from __future__ import annotations

import attrs

__all__ = ["Unstructured"]


@attrs.frozen
class Unstructured:
    """A typed task's value as a JSON store holds it: its cattrs-unstructured form.

    A task whose declared return type is (or holds) a dataclass, an attrs class, an ``Enum``,
    a ``NamedTuple`` or a ``TypedDict`` has its value unstructured to plain data with cattrs
    before it is written, and structured back to the declared type when a run reuses it
    (``plan()``, so ``Flow``, ``execute``, the Engine and the CLI). Nothing in the file names
    a class to import: the type comes from the task. Reading a store directly
    (``SqliteStateStore.load``, ``JournalStore.load``) gives this placeholder;
    :func:`flowplan.store.restore_values` rebuilds the values with a graph's types.

    Attributes:
        type_name: the declared type, as text (for messages only; never imported).
        data: the plain data (what ``cattrs.unstructure`` made of the value).
    """

    type_name: str
    data: object
