"""flowing's API (:class:`Flow`) as a thin façade over plan → execute → snapshot.

Place in the data flow: the top layer. A :class:`Flow` holds its terminal tasks, the latest
:class:`~flowplan.snapshot.Snapshot` and any pending overrides. ``run()`` builds the graph
(``TaskGraph.from_terminals``, so detached tasks declared later are discovered), plans it
(``plan``) and executes it (``execute``); ``resume()`` plans again from the latest snapshot.
Results are presented as flowing's :class:`StepResult` values. There is no scheduling logic
here. With ``journal_path=`` the plan also reuses steps journalled by earlier processes
(:class:`~flowplan.store.JournalStore`).
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import Executor
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, overload

import attrs

from flowplan._suggest import did_you_mean
from flowplan._tally import record_order
from flowplan._typecheck import resolve_check_types
from flowplan.cache import ResultCache
from flowplan.errors import InvalidOptionError, TaskFailedError, UnknownTaskError
from flowplan.executors import validate_max_workers
from flowplan.graph import TaskGraph
from flowplan.hooks import Hook, StructlogHook
from flowplan.interpreter import execute
from flowplan.plan import plan
from flowplan.policies import RetryBudget
from flowplan.registry import Registry
from flowplan.report import root_cause_lines
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus, _Ok, _Records
from flowplan.spec import MappedTaskSpec, TaskSpec
from flowplan.store._journal import JournalStore
from flowplan.store._owner import DEFAULT_LEASE_S, Owner, drop, new_owner, owned_error
from flowplan.store._protocol import StateStore

if TYPE_CHECKING:
    from flowplan.plan import Plan

__all__ = ["Flow", "StepResult", "StepState"]

T = TypeVar("T")


class StepState(enum.Enum):
    """flowing's task states, plus ``CANCELLED`` (never started because the run stopped early)
    and ``IN_DOUBT`` (an ``effect="at_most_once"`` attempt whose outcome was lost).

    ``RETRYING`` is kept so flowing code that mentions it still runs; results are read after a
    run, when every task is terminal, so it is never reported.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    IN_DOUBT = "in_doubt"


_STATES = {status: StepState(status.value) for status in TaskStatus}
_EXPLAINED = (StepState.SKIPPED, StepState.CANCELLED, StepState.IN_DOUBT)


@attrs.frozen
class StepResult:
    """One task's outcome, as flowing reports it.

    Attributes:
        name: the task's name.
        state: its :class:`StepState`.
        value: the returned value (also the last value of an exhausted ``retry_until``).
        error: the exception of a FAILED task (never ``None`` for one): the live exception when
            this process saw it, else a :class:`~flowplan.errors.TaskFailedError` rebuilt from
            the recorded message.
        duration_ms: duration of the last attempt (0 for overrides and skipped tasks).
        attempts: attempts started (0 when a gate stopped it, it never ran, or was overridden).
        step_key: the step key it ran under (only with a journal).
        cached: replayed from the journal rather than run in this process.
        reason: why it was skipped, cancelled or failed, in words.
        root_cause: the task whose failure or gate caused this outcome.
        detached: whether the task is a detached side effect.
        overridden: the value came from :meth:`Flow.override`.
    """

    name: str
    state: StepState
    value: Any = attrs.field(default=None, repr=False)
    error: BaseException | None = attrs.field(default=None, eq=False)
    duration_ms: float = 0.0
    attempts: int = 0
    step_key: str | None = None
    cached: bool = False
    reason: str | None = None
    root_cause: str | None = None
    detached: bool = False
    overridden: bool = False

    @classmethod
    def from_record(cls, record: TaskRecord, *, detached: bool = False) -> StepResult:
        """Present a snapshot's :class:`~flowplan.snapshot.TaskRecord` as a flowing result."""
        error: BaseException | None = None
        if record.error is not None or record.status is TaskStatus.FAILED:
            detail = record.error or record.reason or "no error was recorded"
            error = (record.error and record.error.exception) or TaskFailedError(
                f"task {record.name!r} failed: {detail}", task=record.name, status="failed"
            )
        return cls(
            name=record.name,
            state=_STATES[record.status],
            value=record.value,
            error=error,
            duration_ms=record.duration_ms,
            attempts=record.attempts,
            step_key=record.step_key,
            cached=record.cached,
            reason=record.reason,
            root_cause=record.root_cause,
            detached=detached,
            overridden=record.overridden,
        )


def _shown(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _refuse(option: str, value: object, message: str) -> NoReturn:
    raise InvalidOptionError(message, option=option, value=value)


def _builtin_log(hooks: tuple[Hook, ...], logger: Any, log: object) -> tuple[Hook, ...]:
    """Flow's own :class:`StructlogHook`: none when ``log=False`` or when ``hooks`` has one
    (the user's replaces it: an event is logged once)."""
    if not isinstance(log, bool):
        _refuse("log", log, f"log must be True or False, got {_shown(log)}")
    own = any(isinstance(h, StructlogHook) for h in hooks)
    if logger is not None and not log:
        _refuse(
            "logger",
            logger,
            "logger= sets the logger of Flow's built-in StructlogHook, which log=False turns "
            "off, so it would be ignored; drop logger=, or drop log=False",
        )
    if logger is not None and own:
        _refuse(
            "logger",
            logger,
            "logger= sets the logger of Flow's built-in StructlogHook, but hooks= holds a "
            "StructlogHook of its own, which replaces the built-in one; give it the logger "
            "instead: hooks=[StructlogHook(logger)]",
        )
    return () if own or not log else (StructlogHook(logger),)


class _Stores:
    """Fan a run's records out to the user's store and the journal (journal first)."""

    def __init__(self, *stores: StateStore) -> None:
        self._stores = stores
        # at_most_once tasks need one store that records attempt starts (the journal does not)
        self.records_starts = any(getattr(st, "records_starts", True) for st in stores)
        self.keeps_step_keys = any(getattr(st, "keeps_step_keys", False) for st in stores)

    def flush(self) -> None:
        for store in self._stores:
            flush = getattr(store, "flush", None)
            if flush is not None:
                flush()

    def begin_run(self, plan: Plan) -> None:
        for store in self._stores:
            store.begin_run(plan)

    def save_record(self, run_id: str, record: TaskRecord) -> None:
        for store in self._stores:
            store.save_record(run_id, record)

    def finish_run(self, snapshot: Snapshot, status: str) -> None:
        for store in self._stores:
            store.finish_run(snapshot, status)


class Flow:
    """Run a DAG given by its terminal tasks; resume it; override steps — flowing's ``Flow``.

    Args:
        *terminals: the tasks to run; their upstream tasks and any detached task (from the
            registry) whose dependencies are all in the graph join at ``run()`` time.
        max_workers: thread-pool size (ignored with ``executor``).
        fail_fast: on a main task's failure start nothing new; never-started tasks are
            recorded as skipped/cancelled with the root cause. Detached tasks still run.
        journal_path: a JSON-lines journal; succeeded steps are appended and replayed by a
            later ``run()`` (in any process) while their step key is unchanged.
        store: any :class:`~flowplan.store.StateStore` that should record the runs too.
        executor: a ``concurrent.futures`` executor to run attempts on.
        hooks: extra observers of the event stream. A
            :class:`~flowplan.hooks.StructlogHook` among them replaces the built-in one, so
            no event is ever logged twice.
        logger: the structlog logger of the built-in :class:`~flowplan.hooks.StructlogHook`
            (default: ``structlog.get_logger("flowplan")``).
        log: ``False`` turns the built-in :class:`~flowplan.hooks.StructlogHook` off (the
            flow then logs nothing unless a hook of ``hooks`` does).
        registry: where detached tasks are discovered (default: the active registry).
        retry_budget: a run-wide cap on retries for each run
            (:class:`~flowplan.policies.RetryBudget`).
        process_workers: the size of the process pool each run owns for its
            ``isolation="process"`` tasks (default: ``min(os.cpu_count(), isolated tasks)``).
        check_types: check edges by type when the graph is built (``TaskGraph.build``'s
            option): ``None`` checks when beartype is installed, ``True`` requires it,
            ``False`` skips the check.
        cache: a :class:`~flowplan.cache.ResultCache`: ``cache=True`` / ``effect="pure"``
            tasks reuse results stored by earlier runs while their cache key is unchanged.

    Raises:
        InvalidOptionError: no terminals, a terminal that is not a task, a bad
            ``max_workers``, ``store``, hook, ``log`` or ``check_types``; ``logger`` with
            ``log=False`` or with a ``StructlogHook`` in ``hooks`` (it would be ignored).
        MissingExtraError: ``check_types=True`` without beartype
            (``pip install 'flowplan[typecheck]'``).

    >>> import structlog
    >>> from flowplan import Flow, task
    >>> @task
    ... def fetch() -> dict[str, list[int]]:
    ...     return {"items": [1, 2, 3]}
    >>> @task(depends_on=[fetch])
    ... def total(fetch: dict[str, list[int]]) -> int:
    ...     return sum(fetch["items"])
    >>> flow = Flow(total, logger=structlog.testing.CapturingLogger())
    >>> flow.run()["total"].value
    6
    >>> flow.value(total)
    6
    >>> flow.override(fetch, {"items": [10]})
    >>> flow.results["fetch"].value, flow.results["fetch"].attempts
    ({'items': [10]}, 0)
    """

    def __init__(
        self,
        *terminals: TaskSpec[..., Any],
        max_workers: int = 5,
        fail_fast: bool = True,
        journal_path: str | os.PathLike[str] | None = None,
        store: StateStore | None = None,
        executor: Executor | None = None,
        hooks: Iterable[Hook] = (),
        logger: Any = None,
        log: bool = True,
        registry: Registry | None = None,
        retry_budget: RetryBudget | None = None,
        process_workers: int | None = None,
        check_types: bool | None = None,
        cache: ResultCache | None = None,
    ) -> None:
        resolve_check_types(check_types)  # a bad value or a missing extra fails here, not later
        self._check_types = check_types
        if not terminals:
            _refuse(
                "terminals",
                terminals,
                "Flow requires at least one terminal task, got none; "
                "pass the last task(s) of the pipeline, e.g. Flow(store)",
            )
        for t in terminals:
            if not isinstance(t, TaskSpec):
                _refuse(
                    "terminals",
                    t,
                    "Flow terminals must be tasks (functions decorated "
                    f"with @task), got {_shown(t)}; decorate it with @task",
                )
        if store is not None and not isinstance(store, StateStore):
            _refuse(
                "store",
                store,
                "store must implement StateStore (begin_run, save_record, "
                f"finish_run), got {_shown(store)}; use flowplan.MemoryStore()",
            )
        extra = tuple(hooks)
        for h in extra:
            if not isinstance(h, Hook):
                _refuse(
                    "hooks",
                    h,
                    f"hooks must have an on_event(event) method, got "
                    f"{_shown(h)}; wrap a function in flowplan.CallbackHook",
                )
        self.terminals: tuple[TaskSpec[..., Any], ...] = terminals
        self.max_workers: int = validate_max_workers(max_workers)
        self.fail_fast = fail_fast
        self.journal: JournalStore | None = (
            JournalStore(journal_path) if journal_path is not None else None
        )
        self._store = store
        if cache is not None and not isinstance(cache, ResultCache):
            _refuse(
                "cache",
                cache,
                "cache must implement ResultCache (strict, get, put, latest), got "
                f"{_shown(cache)}; use flowplan.MemoryCache() or flowplan.SqliteCache(path)",
            )
        self._cache = cache
        self._executor = executor
        self._hooks: tuple[Hook, ...] = (*_builtin_log(extra, logger, log), *extra)
        self._registry = registry
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            _refuse(
                "retry_budget",
                retry_budget,
                f"retry_budget must be a RetryBudget, got {_shown(retry_budget)}; "
                "e.g. flowplan.RetryBudget(max_retries=10)",
            )
        self._retry_budget = retry_budget
        self._process_workers = (
            None
            if process_workers is None
            else validate_max_workers(process_workers, "process_workers")
        )
        self._snapshot: Snapshot | None = None
        self._graph: TaskGraph | None = None
        # keys are names; typed wider only because plan() takes names or specs
        self._overrides: dict[str | TaskSpec[..., Any], object] = {}
        self._view = Snapshot("", {})
        self._results: dict[str, StepResult] = {}
        self._running: Owner | None = None  # the run live on some thread, if any
        self._running_lock = threading.Lock()

    # -- running --------------------------------------------------------------------------
    def run(self) -> dict[str, StepResult]:
        """Run the whole DAG from scratch (journalled steps with unchanged keys are replayed).

        Returns:
            Task name → :class:`StepResult`, in topological order.

        Raises:
            GraphValidationError: the tasks do not form a valid graph (a ``ValueError``).
        """
        graph = self._build_graph()
        if self.journal is None:
            return self._execute(graph, None)
        return self._execute(graph, self.journal.load(graph.step_keys()))

    def resume(self, *, rerun_changed: bool = False) -> dict[str, StepResult]:
        """Run again from the latest results: succeeded tasks are reused, the others run.

        Failed, skipped and cancelled tasks run; succeeded ones (detached included) never run
        again; pending overrides are honoured. Before any ``run()`` this is ``run()``.

        Args:
            rerun_changed: with a ``store=`` that records step keys (``SqliteStateStore``),
                also run again the succeeded tasks whose code changed since (and everything
                downstream); without it they are reused and their ``task_reused`` event says
                ``code_changed`` (see ``plan(rerun_changed=...)``).

        Returns:
            Task name → :class:`StepResult`, in topological order.
        """
        if self._snapshot is None:
            return self.run()
        return self._execute(self._build_graph(), self._snapshot, rerun_changed=rerun_changed)

    def override(self, task: TaskSpec[..., Any] | str, value: object) -> None:
        """Record ``value`` as the task's succeeded result (before or after a run).

        The task shows as SUCCEEDED (attempts 0, duration 0) at once and the next ``run()`` or
        ``resume()`` reuses the value without running the task. With a journal the override is
        journalled at once, so a new process reuses it too.

        Raises:
            UnknownTaskError: the task is not part of this flow ("did you mean ...").
            SerializationError: with a journal, the value cannot be encoded.
        """
        graph = self._build_graph()
        name = self._resolve(graph, task)
        if self.journal is not None:
            self.journal._types.bind("override", graph)  # the task's declared value type
            try:
                self.journal.save_record("override", self._override_record(graph, name, value))
            finally:
                self.journal._types.forget("override")
        self._overrides[name] = value
        self._graph = graph
        self._refresh()

    # -- reading results ------------------------------------------------------------------
    @property
    def results(self) -> Mapping[str, StepResult]:
        """Task name → :class:`StepResult` of the latest run, with overrides (read-only)."""
        return MappingProxyType(self._results)

    @property
    def detached_failures(self) -> list[StepResult]:
        """The FAILED detached tasks of the latest run or resume (they never fail the run)."""
        return [r for r in self._results.values() if r.detached and r.state is StepState.FAILED]

    @property
    def snapshot(self) -> Snapshot | None:
        """The latest run's :class:`~flowplan.snapshot.Snapshot` (without pending overrides)."""
        return self._snapshot

    # A fan-out task's value is the list of its elements' values: MappedTaskSpec (a TaskSpec
    # subclass) comes first, so it wins over the TaskSpec overloads below.
    @overload
    def value(self, task: MappedTaskSpec[..., Coroutine[Any, Any, T]]) -> list[T]: ...
    @overload
    def value(self, task: MappedTaskSpec[..., T]) -> list[T]: ...
    @overload
    def value(self, task: TaskSpec[..., Coroutine[Any, Any, T]]) -> T: ...
    @overload
    def value(self, task: TaskSpec[..., T]) -> T: ...
    @overload
    def value(self, task: str) -> Any: ...
    def value(self, task: TaskSpec[..., Any] | str) -> Any:
        """The value of a succeeded task (an ``async def`` task's awaited value).

        Raises:
            UnknownTaskError: the task has no result (also a ``KeyError``, as in flowing).
            TaskFailedError: the task did not succeed (a ``RuntimeError``, as in flowing).
        """
        name = task if isinstance(task, str) else task.name
        if name not in self._view:
            raise self._missing(name)
        return self._view.value(name)

    def summary(self) -> str:
        """One line per task, in topological order, as flowing prints it.

        Each line reads ``  STATUS    name (12ms)`` (``(12ms, 3 attempts)`` after retries),
        followed by ``[detached]``, ``[cached]`` (journal replay), ``[overridden]``, ``err=...``
        for failures and the reason with its root cause for skipped or cancelled tasks. When
        something failed or was gated, a ``root causes:`` block follows: one line per root
        cause, with the tasks it skipped or cancelled (:func:`flowplan.report.root_cause_lines`).
        """
        lines: list[str] = []
        records = self._view.records
        for name, result in self._results.items():
            record = records[name]
            attempts = f", {result.attempts} attempts" if result.attempts > 1 else ""
            status = result.state.value.upper()
            line = f"  {status:9s} {name} ({result.duration_ms:.0f}ms{attempts})"
            flags = (
                (result.detached, " [detached]"),
                (result.cached, " [cached]"),
                (result.overridden, " [overridden]"),
            )
            line += "".join(text for on, text in flags if on)
            if record.error is not None:
                gate = record.error.kind in ("when", "validate")
                kind = f" (in {record.error.kind}=)" if gate else ""
                line += f" err={record.error}{kind}"
            elif result.state is StepState.FAILED and result.error is not None:
                line += f" err={result.error}"
            if result.state in _EXPLAINED and result.reason:  # why it did not succeed
                cause = result.root_cause
                root = f" (root cause: {cause!r})" if cause and cause != name else ""
                line += f" {result.state.value}: {result.reason}{root}"
            lines.append(" ".join(line.splitlines()))
        lines.extend(root_cause_lines(self._view))  # apart from the cascades they caused
        return "\n".join(lines)

    def __repr__(self) -> str:
        names = ", ".join(t.name for t in self.terminals)
        counts: dict[str, int] = {}
        for result in self._results.values():
            counts[result.state.value] = counts.get(result.state.value, 0) + 1
        shown = ", ".join(f"{k}={v}" for k, v in counts.items()) or "not run"
        return f"<Flow terminals=({names}) {shown}>"

    # -- internals ------------------------------------------------------------------------
    def _build_graph(self) -> TaskGraph:
        return TaskGraph.from_terminals(
            *self.terminals, registry=self._registry, check_types=self._check_types
        )

    def _execute(
        self, graph: TaskGraph, previous: Snapshot | None, *, rerun_changed: bool = False
    ) -> dict[str, StepResult]:
        keys = graph.step_keys() if self.journal is not None else None
        the_plan = plan(
            graph,
            previous,
            overrides=self._overrides,
            step_keys=keys,
            cache=self._cache,
            rerun_changed=rerun_changed,
        )
        stores = tuple(s for s in (self.journal, self._store) if s is not None)
        store = stores[0] if len(stores) == 1 else _Stores(*stores) if stores else None
        with self._running_lock:  # one run of a Flow at a time (its snapshot is one lineage)
            live = self._running
            if live is not None:
                lineage = the_plan.lineage_id or the_plan.run_id
                raise owned_error(the_plan.run_id, lineage, live, "this Flow")
            self._running = owner = new_owner(the_plan.run_id, DEFAULT_LEASE_S)
        try:
            snapshot = execute(
                the_plan,
                executor=self._executor,
                max_workers=self.max_workers,
                fail_fast=self.fail_fast,
                hooks=self._hooks,
                store=store,
                retry_budget=self._retry_budget,
                process_workers=self._process_workers,
            )
        except BaseException as exc:  # an interrupt: keep what finished, so resume() works
            partial = getattr(exc, "flowplan_snapshot", None)
            if isinstance(partial, Snapshot):
                self._settle(graph, partial)
            raise
        else:
            self._settle(graph, snapshot)
        finally:  # settled first: a run started next plans from this one's snapshot
            with self._running_lock:
                self._running = None
            drop(owner.owner_id)
        return dict(self._results)

    def _settle(self, graph: TaskGraph, snapshot: Snapshot) -> None:
        self._graph = graph
        self._snapshot = snapshot
        self._overrides.clear()
        self._refresh()

    def _refresh(self) -> None:
        """Rebuild the view (latest snapshot + pending overrides) and the results, O(n)."""
        # A plain success of the run may still be its compact _Ok tuple: it is presented as
        # a StepResult directly, and its TaskRecord is built only if someone reads it.
        records: dict[str, TaskRecord | _Ok] = {}
        if self._snapshot is not None:
            kept = self._snapshot.records
            records = dict(kept._raw if type(kept) is _Records else kept)
        graph = self._graph
        for task, value in self._overrides.items():
            name = task if isinstance(task, str) else task.name
            records[name] = self._override_record(graph, name, value)
        order = list(records)
        if graph is not None:  # the one record order: graph order, elements after their task
            order = record_order([n for n in graph.order if n in records], records)
        detached = graph.detached if graph is not None else frozenset()
        run_id = self._snapshot.run_id if self._snapshot is not None else ""
        self._view = Snapshot(run_id, _Records({n: records[n] for n in order}))
        results: dict[str, StepResult] = {}
        succeeded = StepState.SUCCEEDED
        for n in order:
            record = records[n]
            if type(record) is tuple:  # == StepResult.from_record(ok_record(n, record))
                value, _, _, duration_ms, step_key = record
                results[n] = StepResult(
                    n, succeeded, value, None, duration_ms, 1, step_key, detached=n in detached
                )
            else:
                assert not isinstance(record, tuple)
                results[n] = StepResult.from_record(record, detached=n in detached)
        self._results = results

    def _override_record(self, graph: TaskGraph | None, name: str, value: object) -> TaskRecord:
        key = graph.step_keys()[name] if self.journal is not None and graph is not None else None
        return TaskRecord(
            name, TaskStatus.SUCCEEDED, value=value, has_value=True, overridden=True, step_key=key
        )

    def _resolve(self, graph: TaskGraph, task: TaskSpec[..., Any] | str) -> str:
        if not isinstance(task, str | TaskSpec):
            _refuse("task", task, f"override() expects a task or a task name, got {_shown(task)}")
        name = task if isinstance(task, str) else task.name
        if name not in graph.specs:
            raise graph.unknown(name, what="task to override")
        if isinstance(task, TaskSpec) and graph.specs[name] is not task:
            raise UnknownTaskError(
                f"task {name!r} given to override() is another definition than the one this "
                "flow runs (a task was redefined with the same name); pass the task object "
                "the flow's terminals depend on",
                name=name,
                known=sorted(graph.specs),
                suggestion=name,
            )
        return name

    def _missing(self, name: str) -> UnknownTaskError:
        known = list(self._view.records)
        if self._snapshot is None and not known:
            hint, best = "call run() first", None
        else:
            hint, best = did_you_mean(name, known)
        return UnknownTaskError(
            f"task {name!r} has no result in this flow; {hint}",
            name=name,
            known=sorted(known),
            suggestion=best,
        )
