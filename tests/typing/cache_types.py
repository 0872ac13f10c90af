"""Static types of the result-cache API (checked by mypy and pyright, never run).

Covered: both caches satisfy the :class:`~flowplan.ResultCache` protocol (and a plain class with
the four members does too, with no base class); ``get`` returns ``CachedResult | None``;
``latest`` returns the stored parts; ``plan(..., cache=)``, ``Flow(cache=)`` and
``Engine(cache=)`` accept any ``ResultCache``; ``CacheKey`` parts and digest; the strict-mode
error's attributes. Lines with ``# type: ignore[code]`` pin mistakes mypy must reject.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_type

from flowplan import (
    CachedResult,
    Flow,
    MemoryCache,
    Plan,
    ResultCache,
    SqliteCache,
    TaskGraph,
    TaskSpec,
    UnfingerprintableInputError,
    plan,
)
from flowplan.cache import describe_changes
from flowplan.engine import Engine
from flowplan.keys import CacheKey, value_fingerprint


class DictCache:
    """A user cache: no base class, just the protocol's members."""

    @property
    def strict(self) -> bool:
        return False

    def get(self, task: str, key: str) -> CachedResult | None:
        return None

    def put(self, task: str, key: CacheKey, value: object) -> None:
        return None

    def latest(self, task: str) -> Mapping[str, str] | None:
        return None


class NotACache:
    def get(self, task: str) -> None:
        return None


def check(spec: TaskSpec[[], int], graph: TaskGraph) -> None:
    memory: ResultCache = MemoryCache(strict=True)
    sqlite: ResultCache = SqliteCache("cache.sqlite")
    mine: ResultCache = DictCache()
    wrong: ResultCache = NotACache()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    assert_type(memory.strict, bool)
    assert_type(sqlite.get("t", "k"), CachedResult | None)
    assert_type(mine.latest("t"), Mapping[str, str] | None)
    assert_type(plan(graph, cache=mine), Plan)
    plan(graph, cache="cache.sqlite")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Flow(spec, cache=MemoryCache())
    Engine(cache=SqliteCache("cache.sqlite"))

    key = CacheKey({"code": "1", "input:x": value_fingerprint(3)})
    assert_type(key.digest, str)
    assert_type(key.parts, Mapping[str, str])
    memory.put("t", key, 3)
    assert_type(describe_changes(None, key.parts), str)
    found = memory.get("t", key.digest)
    if found is not None:
        assert_type(found.value, object)
        assert_type(found.parts, Mapping[str, str])

    error = UnfingerprintableInputError("m", task="t", parameter="p", value_type="lock")
    assert_type(error.parameter, str)
    assert_type(error.value_type, str)
    assert_type(error.task, str | None)
