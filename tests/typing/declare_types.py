"""Typing tests for a declared task's read-only facts: checked by ``mypy --strict`` and pyright
(strict), never run.

Covered: ``TaskSpec.signature`` (read when first asked for) is an ``inspect.Signature`` and
cannot be assigned; ``TaskSpec.is_async`` is a ``bool``.
"""

from __future__ import annotations

import inspect
from typing import assert_type

from flowplan import TaskSpec


def _body(x: int) -> int:
    return x


def check_facts() -> None:
    spec = TaskSpec("t", _body)
    assert_type(spec.signature, inspect.Signature)
    assert_type(spec.is_async, bool)
    spec.signature = inspect.Signature()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
