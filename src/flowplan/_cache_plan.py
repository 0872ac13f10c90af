"""Result caching in a plan and in a run: keys with parts, lookups, write-back.

Place in the data flow: keys → **cache planning** → plan → interpreter. :func:`plan_cache` runs
inside :func:`~flowplan.plan.plan`: for each cache-eligible task whose inputs are known before
the run (its defaults, values reused from a snapshot or override, cached upstream keys) it
computes the key and looks it up — a hit becomes a reused record, a miss says which parts
changed. A task whose inputs are only known at run time (a value from a task that is not cached,
the run's context) is looked up by :class:`CacheRun` when it becomes ready. Successful results
are written back under their key.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from flowplan._stored import Unstructured
from flowplan.cache import ResultCache, UnfingerprintableInputError, describe_changes
from flowplan.errors import SerializationError
from flowplan.graph import TaskGraph
from flowplan.keys import CacheKey, code_fingerprint, code_parts
from flowplan.keys import value_fingerprint as _fingerprint
from flowplan.snapshot import TaskRecord, TaskStatus
from flowplan.spec import TaskSpec

__all__ = ["CachePlan", "CacheRun", "eligible", "plan_cache"]

_GATES = ("when", "validate", "retry_until")
_VARIADIC = (2, 4)  # inspect.Parameter.VAR_POSITIONAL, VAR_KEYWORD


def eligible(spec: TaskSpec[..., Any]) -> bool:
    """Whether a task's result may be cached: ``cache=True`` or ``effect="pure"``.

    A fan-out task (``fan_out=``) is not cached: its elements are opened at run time.
    """
    return (spec.cache or spec.effect == "pure") and spec.fan_out is None


def _unfingerprintable(name: str, param: str, value: object) -> UnfingerprintableInputError:
    kind = type(value).__qualname__
    text = repr(value)
    shown = text if len(text) <= 60 else f"{text[:57]}..."
    return UnfingerprintableInputError(
        f"task {name!r}: input `{param}` cannot be fingerprinted for the result cache: expected "
        "a value the JSON serializer encodes (None, bool, int, float, str, bytes, list, tuple, "
        f"dict, set, datetime, ...), got {shown} ({kind}). Fix: pass plain data "
        f"(e.g. an id or a path instead of the {kind}), or drop cache=True from {name!r}; "
        "a non-strict cache leaves such a task uncached instead of failing",
        task=name,
        parameter=param,
        value_type=kind,
    )


def _not_cached(exc: UnfingerprintableInputError) -> str:
    return f"not cached: input `{exc.parameter}` ({exc.value_type}) has no stable fingerprint"


def _fingerprint_input(name: str, param: str, value: object) -> str:
    try:
        return _fingerprint(value)
    except SerializationError as exc:
        raise _unfingerprintable(name, param, value) from exc


def static_parts(graph: TaskGraph, name: str) -> dict[str, str]:
    """The parts of ``name``'s key known from its definition: code, helpers, gates, defaults.

    Raises:
        UnfingerprintableInputError: a default value has no stable fingerprint.
    """
    spec = graph.specs[name]
    parts = code_parts(spec.fn, version=spec.version)
    for gate in _GATES:
        fn = getattr(spec, gate)
        if fn is not None:
            parts[f"gate:{gate}"] = code_fingerprint(fn)
    fed = {*graph.inputs[name], spec.context_param, spec.upstream_param}
    for param in spec.signature.parameters.values():
        if param.name in fed or param.default is param.empty or param.kind in _VARIADIC:
            continue
        parts[f"input:{param.name}"] = _fingerprint_input(name, param.name, param.default)
    return parts


def _hit(name: str, key: CacheKey, value: object, step_key: str | None) -> TaskRecord:
    return TaskRecord(
        name,
        TaskStatus.SUCCEEDED,
        value=value,
        has_value=True,
        cached=True,
        step_key=step_key,
        reason=f"cache hit (key {key.digest[:12]})",
    )


def _get(
    cache: ResultCache, graph: TaskGraph, name: str, key: CacheKey
) -> tuple[object, bool, str]:
    """Look ``key`` up: (value, found, why not found); a typed value is structured back."""
    try:
        entry = cache.get(name, key.digest)
    except SerializationError as exc:
        return None, False, f"the stored entry cannot be read ({exc})"
    if entry is None:
        return None, False, describe_changes(cache.latest(name), key.parts)
    value = entry.value
    if type(value) is Unstructured:  # stored by the task's declared type: rebuild it
        from flowplan.store._typed import from_stored, record_type

        hint = record_type(graph, name)
        if hint is None:
            why = (
                f"the stored entry is a typed value ({value.type_name}) the task no longer declares"
            )
            return None, False, why
        try:
            value = from_stored(value, hint, name)
        except SerializationError as exc:
            return None, False, f"the stored entry cannot be read ({exc})"
    return value, True, ""


def _to_cache(cache: ResultCache, graph: TaskGraph, name: str, value: object) -> object:
    """``value`` as ``cache`` should store it: unstructured by its declared type for JSON.

    Raises:
        SerializationError: the typed value cannot be stored.
    """
    from flowplan.store._typed import record_type, stores_typed, to_stored

    if not stores_typed(getattr(cache, "serializer", None)):
        return value
    hint = record_type(graph, name)
    return value if hint is None else to_stored(value, hint, name)


@attrs.frozen
class CachePlan:
    """What planning decided about caching (carried by the :class:`~flowplan.plan.Plan`).

    Attributes:
        cache: the result cache.
        static: eligible task → its definition parts (code, helpers, gates, defaults).
        uncacheable: eligible task → why it is not cached (non-strict caches only).
        keys: task → key computed at plan time (looked up already: hits and misses, and
            reused values the cache holds under their key).
        no_lookup: tasks that run without a lookup (rerun requested) but are written back.
        misses: task → why its plan-time lookup missed ("cache miss: input `x` changed").
    """

    cache: ResultCache
    static: Mapping[str, Mapping[str, str]] = attrs.field(hash=False, repr=False)
    uncacheable: Mapping[str, str] = attrs.field(hash=False, repr=False)
    keys: Mapping[str, CacheKey] = attrs.field(hash=False, repr=False)
    no_lookup: frozenset[str] = attrs.field(repr=False)
    misses: Mapping[str, str] = attrs.field(factory=dict, hash=False, repr=False)


def plan_cache(
    graph: TaskGraph,
    cache: ResultCache,
    *,
    run: Iterable[str],
    reused: Mapping[str, TaskRecord],
    rerun: Container[str],
    step_keys: Mapping[str, str],
) -> tuple[CachePlan, dict[str, TaskRecord], dict[str, str]]:
    """Compute plan-time keys and look them up.

    Args:
        graph: the graph.
        cache: the result cache.
        run: the tasks the plan would run (before caching).
        reused: the records the plan reuses (snapshot, overrides), whose values are known.
        rerun: tasks whose rerun was requested (never looked up).
        step_keys: journal step keys, copied onto hit records.

    Returns:
        The :class:`CachePlan`; task → hit record (to reuse); task → why it runs (cache words).

    Raises:
        UnfingerprintableInputError: with a strict cache, an input known at plan time has no
            stable fingerprint.
    """
    to_run = set(run)
    static: dict[str, Mapping[str, str]] = {}
    uncacheable: dict[str, str] = {}
    keys: dict[str, CacheKey] = {}
    hits: dict[str, TaskRecord] = {}
    reasons: dict[str, str] = {}
    for name in graph.order:
        if name in reused and eligible(graph.specs[name]):
            _key_reused(graph, cache, name, keys, reused)
            continue
        if name not in to_run or not eligible(graph.specs[name]):
            continue
        try:
            static[name] = MappingProxyType(static_parts(graph, name))
            deferred = _plan_key(graph, name, static[name], keys, reused)
        except UnfingerprintableInputError as exc:
            if cache.strict:
                raise
            static.pop(name, None)
            uncacheable[name] = reasons[name] = _not_cached(exc)
            continue
        if name in rerun:
            continue
        if isinstance(deferred, str):
            reasons[name] = f"cache looked up when its inputs are known ({deferred})"
            continue
        key = deferred
        keys[name] = key
        value, found, why = _get(cache, graph, name, key)
        if found:
            hits[name] = _hit(name, key, value, step_keys.get(name))
        else:
            reasons[name] = f"cache miss: {why}"
    plan = CachePlan(
        cache,
        MappingProxyType(static),
        MappingProxyType(uncacheable),
        MappingProxyType(keys),
        frozenset(n for n in static if n in rerun),
        MappingProxyType({n: reasons[n] for n in keys if n in reasons}),
    )
    return plan, hits, reasons


def _key_reused(
    graph: TaskGraph,
    cache: ResultCache,
    name: str,
    keys: dict[str, CacheKey],
    reused: Mapping[str, TaskRecord],
) -> None:
    """Give a reused eligible task its key when the cache holds its very value under it.

    Its consumers then name it as ``upstream:`` like a fresh run does, so what a resume
    stores is found by later runs. A value that differs from the cached one (older code, an
    override) keeps being fingerprinted as an ``input:``.
    """
    record = reused[name]
    if not record.has_value or record.released:
        return
    try:
        key = _plan_key(graph, name, static_parts(graph, name), keys, reused)
        if not isinstance(key, CacheKey):
            return
        entry = cache.get(name, key.digest)  # not _get: no explanation (cache.latest) needed
        if entry is not None and _fingerprint(entry.value) == _fingerprint(record.value):
            keys[name] = key
    except (UnfingerprintableInputError, SerializationError):
        return  # no stable fingerprint: consumers fingerprint the value (or refuse it)


def _plan_key(
    graph: TaskGraph,
    name: str,
    static: Mapping[str, str],
    keys: Mapping[str, CacheKey],
    reused: Mapping[str, TaskRecord],
) -> CacheKey | str:
    """The key of ``name`` from what is known before the run, or why it must wait."""
    parts = dict(static)
    for dep in graph.predecessors[name]:
        record = reused.get(dep)
        if dep in keys:
            parts[f"upstream:{dep}"] = keys[dep].digest
        elif record is not None and record.has_value and not record.released:
            parts[f"input:{dep}"] = _fingerprint_input(name, dep, record.value)
        elif eligible(graph.specs[dep]):
            return f"upstream `{dep}` is looked up at run time"
        else:
            return f"`{dep}` comes from {dep!r}, which is not cached"
    context = graph.specs[name].context_param
    if context is not None:
        return f"it receives the run's context as `{context}`"
    return CacheKey(parts)


class CacheRun:
    """A run's caching state (private, mutable, used by the scheduling machine only)."""

    def __init__(self, plan: CachePlan, graph: TaskGraph, context: object) -> None:
        self.plan = plan
        self.cache = plan.cache
        self.graph = graph
        self.context = context
        # Keys of values this run holds under a key (cache hits, successes): downstream tasks
        # use the key as their "upstream" part instead of fingerprinting the value.
        self.actual: dict[str, CacheKey] = {}
        self.pending: dict[str, CacheKey] = {}  # ready/running task → key to write back under
        # task → what its succeeded record's reason says about caching
        self.notes: dict[str, str] = {**plan.uncacheable, **plan.misses}
        # A simulation (``flowplan.simulate``) looks up but never writes: its values are
        # scripted, not computed.
        self.read_only = False

    def seed(self, reused: Mapping[str, TaskRecord]) -> None:
        """Register the keys of reused values (hits, and values the cache holds under their
        key): they feed downstream keys."""
        for name in reused:
            if name in self.plan.keys:
                self.actual[name] = self.plan.keys[name]

    def _key(self, name: str, records: Mapping[str, TaskRecord]) -> CacheKey:
        parts = dict(self.plan.static[name])
        for dep in self.graph.predecessors[name]:
            record = records.get(dep)
            if dep in self.actual and record is not None and record.succeeded:
                parts[f"upstream:{dep}"] = self.actual[dep].digest
            else:  # what the body receives: None for a dependency that did not succeed
                value = record.value if record is not None and record.succeeded else None
                parts[f"input:{dep}"] = _fingerprint_input(name, dep, value)
        context = self.graph.specs[name].context_param
        if context is not None:
            parts[f"input:{context}"] = _fingerprint_input(name, context, self.context)
        return CacheKey(parts)

    def lookup(
        self, name: str, records: Mapping[str, TaskRecord], step_key: str | None
    ) -> TaskRecord | UnfingerprintableInputError | None:
        """For a task about to run: its hit record, a strict-mode error, or ``None`` (run it)."""
        if name not in self.plan.static:
            return None
        try:
            key = self._key(name, records)
        except UnfingerprintableInputError as exc:
            if self.cache.strict:
                return exc
            self.notes[name] = _not_cached(exc)
            return None
        self.pending[name] = key
        if name in self.plan.no_lookup or self.plan.keys.get(name) == key:
            return None  # rerun requested, or the plan looked this very key up already
        value, found, why = _get(self.cache, self.graph, name, key)
        if not found:
            self.notes[name] = f"cache miss: {why}"
            return None
        del self.pending[name]
        self.actual[name] = key
        return _hit(name, key, value, step_key)

    def write(self, record: TaskRecord) -> str | None:
        """Write a succeeded task's value back; return what its record's reason should say
        about caching (why it missed and that it was stored, or why it was not cached)."""
        name = record.name
        key = self.pending.pop(name, None)
        note = self.notes.pop(name, None)
        if key is None:
            return note
        self.actual[name] = key  # the key describes the value, stored or not
        if self.read_only:
            why = "not stored: a simulated (scripted) result is never written to the cache"
            return f"{note}; {why}" if note else why
        try:
            self.cache.put(name, key, _to_cache(self.cache, self.graph, name, record.value))
        except SerializationError as exc:
            return f"not cached: its value cannot be serialized ({exc})"
        except Exception as exc:  # a cache that cannot write never fails the task
            return f"not cached: the cache could not store it ({type(exc).__name__}: {exc})"
        return f"{note}; result stored" if note else "result stored in the cache"
