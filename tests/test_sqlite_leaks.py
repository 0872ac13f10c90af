"""The suite's guard against unclosed SQLite connections (``sqlite_leaks``) finds them."""

from __future__ import annotations

import gc
import sqlite3
from contextlib import closing
from pathlib import Path

import sqlite_leaks
from flowplan import SqliteCache
from flowplan.store import SqliteStateStore


def _collect() -> list[str]:
    gc.collect()
    return sqlite_leaks.take_leaks()


def test_an_unclosed_connection_is_found_with_where_it_was_opened(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "a.db")
    conn.execute("CREATE TABLE t (x)")
    del conn
    (leak,) = _collect()
    assert "test_sqlite_leaks.py" in leak
    assert 'sqlite3.connect(tmp_path / "a.db")' in leak


def test_with_connect_commits_but_does_not_close(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.execute("CREATE TABLE t (x)")
    del conn
    assert len(_collect()) == 1
    with closing(sqlite3.connect(tmp_path / "a.db")) as conn, conn:
        conn.execute("INSERT INTO t VALUES (1)")
    del conn
    assert _collect() == []


def test_unclosed_stores_and_caches_are_found_and_closed_ones_are_not(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "runs.db")
    cache = SqliteCache(tmp_path / "cache.db")
    del store, cache
    leaks = _collect()
    assert len(leaks) == 2
    assert any("SqliteStateStore(" in leak for leak in leaks)
    assert any("SqliteCache(" in leak for leak in leaks)
    with SqliteStateStore(tmp_path / "runs.db"), SqliteCache(tmp_path / "cache.db"):
        pass
    assert _collect() == []


def test_a_connection_of_a_custom_factory_keeps_its_class(tmp_path: Path) -> None:
    class Mine(sqlite3.Connection):
        pass

    with closing(sqlite3.connect(tmp_path / "a.db", factory=Mine)) as conn:
        assert isinstance(conn, Mine)
    assert _collect() == []
