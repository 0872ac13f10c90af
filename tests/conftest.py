"""Shared fixtures: a fresh registry per test, and a clean default registry after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import flowplan


@pytest.fixture
def registry() -> Iterator[flowplan.Registry]:
    """A fresh :class:`flowplan.Registry`, active (``@task`` registers into it) for the test."""
    reg = flowplan.Registry()
    token = reg.activate()
    try:
        yield reg
    finally:
        reg.deactivate(token)


@pytest.fixture(autouse=True)
def _clean_default_registry() -> Iterator[None]:
    """Empty the default registry before and after every test: no test sees another's tasks."""
    flowplan.clear_registry()
    yield
    flowplan.clear_registry()
