"""Dynamic fan-out: one element instance per element of an upstream value, made at run time.

Place in the data flow: spec (``fan_out=``) → **graph** (:func:`check_fan_out`) → **plan**
(``_fanout_plan``: which element records of an earlier run are reused or in doubt) → **interpreter**
(:class:`FanOut`, owned by the scheduling machine ``_machine._Run`` only when the graph has a
fan-out task) → snapshot. When a fan-out task ``process`` becomes ready, :meth:`FanOut.expand`
reads its upstream value and, instead of handing ``process`` to a driver, hands out element
instances ``process[0]``, ``process[1]``, … — ordinary tasks for every driver (own program,
attempts, retries, timeout, gates, events, hooks and store rows). When the last element ends,
``process`` ends: SUCCEEDED with the list of its succeeded elements' values, in element order
(skipped elements are left out), FAILED when an element failed, CANCELLED when elements were
cancelled and none failed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Set
from typing import TYPE_CHECKING, Any

import attrs

from flowplan._effects import SETTLE_HINT
from flowplan._suggest import did_you_mean
from flowplan.errors import (
    DefinitionError,
    DuplicateTaskError,
    FanOutError,
    SignatureMismatchError,
)
from flowplan.events import (
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskInDoubt,
    TaskReleased,
    TaskReused,
    TaskStarted,
    TaskSucceeded,
)
from flowplan.snapshot import ErrorInfo, TaskStatus
from flowplan.spec import TaskSpec

if TYPE_CHECKING:
    from flowplan._machine import _Run

__all__ = [
    "FanOut",
    "check_fan_out",
    "element_key",
    "element_name",
    "element_spec",
    "origin",
    "split_element",
]

_SUCCEEDED = TaskStatus.SUCCEEDED


def element_name(parent: str, index: int) -> str:
    """The name of element ``index`` of fan-out task ``parent``: ``parent[index]``."""
    return f"{parent}[{index}]"


def split_element(name: str) -> tuple[str, int] | None:
    """``(parent, index)`` when ``name`` is spelled as an element (``parent[index]``), else
    ``None`` (whether ``parent`` is a fan-out task is the caller's to check)."""
    parent, bracket, index = name.rpartition("[")
    if not (bracket and index.endswith("]") and index[:-1].isdigit()):
        return None
    number = int(index[:-1])
    return (parent, number) if element_name(parent, number) == name else None


def element_key(parent_key: str | None, index: int) -> str | None:
    """An element's step key: derived from its parent's key and its index (``None`` without)."""
    if parent_key is None:
        return None
    return hashlib.sha256(f"{parent_key}\x00fan-out\x00{index}".encode()).hexdigest()


def element_spec(spec: TaskSpec[..., Any], name: str) -> TaskSpec[..., Any]:
    """The plain spec of element ``name`` of fan-out task ``spec``: every option of ``spec``
    but ``fan_out`` (a :class:`TaskSpec`, never a ``MappedTaskSpec``), values kept."""
    fields = {a.name: getattr(spec, a.name) for a in attrs.fields(TaskSpec) if a.init}
    fields.update(name=name, fan_out=None, retain_result=True)
    return TaskSpec(**fields)


def origin(run: _Run, name: str) -> str:
    """The planned task behind ``name``: its fan-out task for an element, else ``name``."""
    return name if run.fanout is None else run.fanout.owner.get(name, name)


def check_fan_out(
    spec: TaskSpec[..., Any],
    injected: tuple[str, ...],
    names: Iterable[str],
    problems: list[DefinitionError],
) -> None:
    """Check that ``spec.fan_out`` names a dependency a parameter receives (graph validation).

    Args:
        spec: a task with ``fan_out=``.
        injected: the dependencies its parameters receive by name.
        names: every task name of the graph (none may look like one of its elements).
        problems: where each problem is appended (reported together by the graph).
    """
    upstream = spec.fan_out
    if upstream is None:
        return
    prefix = f"{spec.name}["
    problems.extend(
        DuplicateTaskError(
            f"task {name!r} is named like element {name[len(prefix) : -1]} of fan-out task "
            f"{spec.name!r}, whose elements are named {spec.name}[0], {spec.name}[1], …; "
            f"rename {name!r}",
            task=name,
        )
        for name in names
        if name.startswith(prefix) and name.endswith("]") and name[len(prefix) : -1].isdigit()
    )
    dep = next((d for d in spec.deps if d.name == upstream), None)
    if dep is None:
        names = spec.dep_names
        hint, _ = did_you_mean(upstream, names) if names else ("", None)
        fix = f"{hint}; " if "did you mean" in hint else ""
        problems.append(
            DefinitionError(
                f"task {spec.name!r}: fan_out={upstream!r} must name one of its dependencies "
                f"({', '.join(map(repr, names)) or 'it has none'}), found no dependency "
                f"{upstream!r}; {fix}add {upstream!r} to its dependencies or map over one of them",
                task=spec.name,
            )
        )
        return
    if spec.upstream_param is None and upstream not in injected:
        problems.append(
            SignatureMismatchError(
                f"task {spec.name!r}: fan_out={upstream!r} maps over a dependency no parameter "
                f"receives; add a parameter named {upstream!r} to receive one element",
                task=spec.name,
            )
        )


def _items(spec: TaskSpec[..., Any], upstream: str, value: object) -> list[Any]:
    """The elements of ``value``, in order.

    Raises:
        FanOutError: ``value`` is not an ordered sized iterable.
    """
    kind = type(value).__name__
    if isinstance(value, str | bytes | bytearray | Set | Mapping) or not (
        isinstance(value, Iterable) and hasattr(value, "__len__")
    ):
        why = (
            "a string would be split into characters"
            if isinstance(value, str | bytes | bytearray)
            else "its order is not stable"
            if isinstance(value, Set | Mapping)
            else "it has no length"
        )
        raise FanOutError(
            f"task {spec.name!r} fans out over {upstream!r}, which gave {value!r:.80} ({kind}); "
            f"expected an ordered sized iterable such as a list or tuple ({why}). Fix: make "
            f"{upstream!r} return a list (e.g. `return sorted(...)` or `return list(...)`)",
            task=spec.name,
            upstream=upstream,
            value_type=kind,
        )
    return list(value)


class FanOut:
    """The fan-out bookkeeping of one run (private, mutable, single-threaded like ``_Run``).

    It gives the machine a private graph whose mappings grow with element instances (the
    plan's graph is never changed) and tracks which elements belong to which open task.
    """

    def __init__(self, run: _Run, parents: Mapping[str, str]) -> None:
        graph = run.graph
        self.run = run
        self.parents = parents  # fan-out task → the dependency it maps over
        self.specs: dict[str, TaskSpec[..., Any]] = dict(graph.specs)
        self.preds = dict(graph.predecessors)
        self.succs = dict(graph.successors)
        self.inputs = dict(graph.inputs)
        run.graph = attrs.evolve(
            graph,
            specs=self.specs,
            predecessors=self.preds,
            successors=self.succs,
            inputs=self.inputs,
        )
        run.plain = run.plain - parents.keys()  # never handed to a driver
        self.keys = dict(run.plan.step_keys)
        run.step_keys = self.keys
        self.owner: dict[str, str] = {}  # element → its fan-out task
        self.items: dict[str, Any] = {}  # element → its element value, until it ends
        self.members: dict[str, list[str]] = {}  # fan-out task → its elements, in order
        self.left: dict[str, int] = {}  # fan-out task → elements not yet ended
        self.opened: dict[str, float] = {}  # fan-out task → when it opened (perf_counter)

    # -- opening ---------------------------------------------------------------------------
    def expand(self, ready: list[str]) -> list[str]:
        """Replace each ready fan-out task in ``ready`` by its element instances."""
        if not any(name in self.parents for name in ready):
            return ready
        out: list[str] = []
        for name in ready:
            if name in self.parents:
                out.extend(self._open(name))
            else:
                out.append(name)
        return out

    def _open(self, parent: str) -> list[str]:
        run = self.run
        cancelled = run.should_cancel(parent)
        if cancelled is not None:
            return run.apply(cancelled)
        spec = self.specs[parent]
        upstream = self.parents[parent]
        record = run.record(upstream)
        value = record.value if record is not None else None
        run.apply(TaskStarted(run.run_id, run.clock(), parent, 1))
        self.opened[parent] = time.perf_counter()
        try:
            items = _items(spec, upstream, value)
        except FanOutError as exc:
            info = ErrorInfo.from_exception(exc, kind="fan_out")
            return run.apply(TaskFailed(run.run_id, run.clock(), parent, 1, info, str(exc)))
        members: list[str] = []
        start: list[str] = []
        prior = run.plan.elements
        parent_key = self.keys.get(parent)
        for index, item in enumerate(items):
            name = element_name(parent, index)
            members.append(name)
            key = element_key(parent_key, index)
            if key is not None:
                self.keys[name] = key
            self.owner[name] = parent
            earlier = prior.get(name)
            if earlier is not None:
                run.records[name] = earlier
                if run.store is not None:
                    run.store.save_record(run.run_id, earlier)
                if run.dispatch:
                    run.dispatch(TaskReused(run.run_id, run.clock(), name, earlier))
                continue
            self.specs[name] = element_spec(spec, name)
            self.preds[name] = self.preds[parent]
            self.succs[name] = ()
            self.inputs[name] = self.inputs[parent]
            self.items[name] = item
            start.append(name)
        self.members[parent] = members
        self.left[parent] = len(start)
        if run.budget is not None:  # its elements are the tasks executed in its place
            run.budget.add_tasks(len(start) - 1)
        if start:
            if parent in run.durable_starts:  # each at_most_once element records its start
                run.durable_starts = run.durable_starts | set(start)
            self._account(parent, start)
            return start
        return self._close(parent)

    def _account(self, parent: str, start: list[str]) -> None:
        """Count the elements as planned tasks of the run (and as consumers of its inputs)."""
        run = self.run
        count = len(start)
        run.unfinished += count
        if parent in run.graph.detached:
            run.graph = attrs.evolve(run.graph, detached=run.graph.detached | set(start))
        else:
            run.main_left += count
        for pred in self.preds[parent]:
            if pred in run.consumers_left:
                run.consumers_left[pred] += count

    def bind(self, name: str, kwargs: dict[str, Any], gate_kwargs: dict[str, Any]) -> None:
        """Give element ``name`` its element instead of the whole upstream value."""
        if name not in self.items:
            return
        item = self.items[name]
        upstream = self.parents[self.owner[name]]
        gate_kwargs[upstream] = item
        spec = self.specs[name]
        if spec.upstream_param is not None:
            kwargs[spec.upstream_param] = dict(gate_kwargs)
        elif upstream in kwargs:
            kwargs[upstream] = item

    # -- closing ---------------------------------------------------------------------------
    def finished(self, name: str) -> list[str]:
        """Element ``name`` ended; end its fan-out task after its last element."""
        self.items.pop(name, None)
        parent = self.owner[name]
        self.left[parent] -= 1
        if self.left[parent] > 0:
            return []
        return self._close(parent)

    def _close(self, parent: str) -> list[str]:
        run = self.run
        records = [run.view[name] for name in self.members[parent]]
        duration = (time.perf_counter() - self.opened.pop(parent)) * 1000
        failed = [r.name for r in records if r.status is TaskStatus.FAILED]
        cancelled = [r for r in records if r.status is TaskStatus.CANCELLED]
        doubt = [r.name for r in records if r.status is TaskStatus.IN_DOUBT]
        event: TaskEvent
        if doubt and not failed:
            shown = ", ".join(map(repr, doubt[:5])) + (" …" if len(doubt) > 5 else "")
            event = TaskInDoubt(
                run.run_id,
                run.clock(),
                parent,
                1,
                f"{len(doubt)} of {len(records)} element(s) of fan-out task {parent!r} are in "
                f"doubt: {shown}; {SETTLE_HINT} (override or rerun= of {parent!r} settles "
                "them all)",
            )
        elif failed:
            shown = ", ".join(map(repr, failed[:5])) + (" …" if len(failed) > 5 else "")
            message = (
                f"{len(failed)} of {len(records)} element(s) of fan-out task {parent!r} "
                f"failed: {shown}; resume re-runs only the elements that did not succeed"
            )
            first = next(r for r in records if r.status is TaskStatus.FAILED).error
            info = ErrorInfo(
                type=first.type if first else "flowplan.errors.FanOutError",
                message=message,
                traceback=first.traceback if first else "",
                kind="fan_out",
                exception=first.exception if first else None,
            )
            event = TaskFailed(run.run_id, run.clock(), parent, 1, info, message, duration)
        elif cancelled:
            reason = f"{len(cancelled)} of its {len(records)} element(s) were cancelled"
            event = TaskCancelled(run.run_id, run.clock(), parent, reason, cancelled[0].root_cause)
        else:
            value = [r.value for r in records if r.status is _SUCCEEDED]
            key = self.keys.get(parent)
            event = TaskSucceeded(run.run_id, run.clock(), parent, 1, value, duration, key)
        ready = run.apply(event)
        if isinstance(event, TaskSucceeded) and not self.specs[parent].retain_result:
            # the list holds the values now
            for record in records:
                if record.has_value and record.name in self.specs:
                    run.apply(TaskReleased(run.run_id, run.clock(), record.name))
        return ready

    def ordered(self, names: Iterable[str]) -> list[str]:
        """``names`` with each fan-out task's elements right after it (snapshot order)."""
        out: list[str] = []
        for name in names:
            out.append(name)
            out.extend(self.members.get(name, ()))
        return out
