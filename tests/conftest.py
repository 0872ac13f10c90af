"""Shared fixtures: a fresh registry per test, a clean default registry after each test, and
every SQLite connection a test opens closed by that test (see ``sqlite_leaks``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import flowplan
import sqlite_leaks

sqlite_leaks.install()


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


@pytest.fixture(autouse=True)
def _sqlite_connections_closed() -> Iterator[None]:
    """Fail a test that leaves a SQLite connection unclosed (Python 3.13 errors on it later,
    in another test; here every Python fails the test that leaked it, naming the line)."""
    sqlite_leaks.take_leaks()  # leaks collected before this test belong to no one here
    yield
    gc.collect()
    leaks = sqlite_leaks.take_leaks()
    if leaks:
        pytest.fail(
            f"{len(leaks)} SQLite connection(s) opened here were never closed; close the store "
            "(store.close(), or `with SqliteStateStore(...) as store:`), or wrap sqlite3 "
            "connections in contextlib.closing(...). Opened at:\n" + "\n---\n".join(leaks),
            pytrace=False,
        )
