"""The ``Engine``: flowrun's API as a thin shell over plan → aexecute → store.

Place in the data flow: façade. The Engine keeps a :class:`TaskRegistry` of specs per DAG;
a run builds the DAG's :class:`~flowplan.graph.TaskGraph`, calls :func:`flowplan.plan` and
:func:`flowplan.aexecute` (with the run's context, the state store and a hook adapter), and
returns the run id. Resume is ``plan(graph, stored snapshot, rerun=from_tasks)`` — succeeded
work is reused, the rest runs. There is no scheduling logic here.

Choices (flowrun leaves them open):

* A failed task skips its downstream tasks; independent branches keep running (no fail-fast).
* ``max_parallel`` caps the tasks running at once *per run*; sync tasks run on the executor.
* A run whose tasks to run are all sync, with no hook of the user's, goes to the core's thread
  driver in one awaited thread (``_sync_driver.py``), not through the loop task by task.
* A registry where no task names a ``dag=`` is one implicit DAG (flowrun's legacy mode): any
  DAG name selects it. Once DAGs are named, tasks without ``dag=`` form the DAG ``"default"``
  and unknown names are errors.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, Unpack, overload

import attrs

from flowplan._daemon_threads import DaemonThreads
from flowplan._remote import is_remote
from flowplan._typecheck import resolve_check_types
from flowplan.cache import ResultCache
from flowplan.errors import FlowplanError, InvalidOptionError, UnknownTaskError
from flowplan.executors import validate_max_workers
from flowplan.graph import TaskGraph
from flowplan.hooks import Hook
from flowplan.interpreter import aexecute
from flowplan.plan import Plan, plan
from flowplan.policies import RetryBudget
from flowplan.snapshot import Snapshot

from ._context import RunContext, requires_context
from ._context_check import check_context_type, declare_deps
from ._dags import DagCatalog
from ._decorators import TaskDecorator, TaskTemplate
from ._events import RunHook
from ._flowrun_state import StateStoreProtocol
from ._hooks import EngineHook
from ._options import TaskOptions
from ._registry import TaskRegistry
from ._report import build_report, render_tree
from ._scope import DagScope, TaskRef
from ._store import EngineStore, MemoryRunStore
from ._store_adapter import engine_store
from ._sync_driver import arun_sync

__all__ = ["Engine", "EngineClosedError", "SchedulerConfig", "build_default_engine"]

P = ParamSpec("P")
R = TypeVar("R")
DepsT = TypeVar("DepsT")

_default_logger = logging.getLogger("flowplan.engine")


class EngineClosedError(FlowplanError, RuntimeError):
    """A run was asked of an :class:`Engine` after :meth:`Engine.close`."""


def _check_max_parallel(instance: object, attribute: object, value: int) -> None:
    validate_max_workers(value, "max_parallel")


def _check_budget(instance: object, attribute: object, budget: RetryBudget | None) -> None:
    value: object = budget  # typed for attrs; checked, since callers may pass anything
    if value is not None and not isinstance(value, RetryBudget):
        raise InvalidOptionError(
            f"retry_budget must be a RetryBudget or None, got {value!r} "
            f"({type(value).__name__}); e.g. RetryBudget(max_retries=10)",
            option="retry_budget",
            value=value,
        )


@attrs.frozen
class SchedulerConfig:
    """How runs are scheduled. ``max_parallel``: tasks running at once per run (>= 1);
    ``retry_budget``: a run-wide cap on retries for each run (``None``: no cap)."""

    max_parallel: int = attrs.field(default=4, validator=_check_max_parallel)
    retry_budget: RetryBudget | None = attrs.field(default=None, validator=_check_budget)


def _names(refs: Sequence[TaskRef] | None, option: str) -> list[str]:
    if isinstance(refs, str):
        raise InvalidOptionError(
            f"{option} must be a list of task names, got the string {refs!r}; "
            f"write {option}=[{refs!r}]",
            option=option,
            value=refs,
        )
    return [ref if isinstance(ref, str) else ref.name for ref in refs or ()]


class Engine:
    """Register tasks into DAGs, run them, resume them, report on them (flowrun's ``Engine``).

    Build one with :func:`build_default_engine`. Use ``async with engine:`` (or
    :meth:`close`) to shut down the thread pool the engine owns; an executor you pass in is
    never shut down by the engine, nor is a state store you pass in closed.

    Attributes:
        task: the decorator declaring tasks (``@engine.task(name=, dag=, deps=, ...)``).
        process_workers: the size of the process pool each run owns for its
            ``isolation="process"`` tasks (``None``: ``min(os.cpu_count(), isolated tasks)``).
        check_types: check each DAG's edges by type when its graph is built
            (``TaskGraph.build``'s option; ``None`` checks when beartype is installed).
        cache: the :class:`~flowplan.cache.ResultCache` runs look ``cache=True`` /
            ``effect="pure"`` tasks up in (``None``: no result caching).
        state_store: the store runs are kept in (an :class:`EngineStore`): the one given, or
            — for a store written to flowrun's ``StateStoreProtocol`` — the adapter driving
            it (its ``store`` attribute is yours); by default a :class:`MemoryRunStore`.
    """

    def __init__(
        self,
        *,
        registry: TaskRegistry | None = None,
        state_store: EngineStore | StateStoreProtocol | None = None,
        executor: Executor | None = None,
        max_workers: int = 8,
        config: SchedulerConfig | None = None,
        logger: logging.Logger | None = None,
        hooks: Sequence[RunHook | Hook] | None = None,
        process_workers: int | None = None,
        check_types: bool | None = None,
        cache: ResultCache | None = None,
    ) -> None:
        validate_max_workers(max_workers)
        resolve_check_types(check_types)  # a bad value or a missing extra fails here
        if process_workers is not None:
            validate_max_workers(process_workers, "process_workers")
        self.process_workers = process_workers
        if cache is not None and not isinstance(cache, ResultCache):
            raise InvalidOptionError(
                f"cache must implement ResultCache (strict, get, put, latest), got {cache!r} "
                f"({type(cache).__name__}); use flowplan.SqliteCache(path) or MemoryCache()",
                option="cache",
                value=cache,
            )
        self.cache = cache
        self.registry: TaskRegistry = registry if registry is not None else TaskRegistry()
        # The one place a flowrun-protocol store is adapted to the store the engine runs with.
        self.state_store: EngineStore = engine_store(
            state_store if state_store is not None else MemoryRunStore(), self._retains
        )
        self.config: SchedulerConfig = config if config is not None else SchedulerConfig()
        self.logger: logging.Logger = logger or _default_logger
        self.hooks: tuple[RunHook | Hook, ...] = tuple(hooks or ())
        self._owns_executor = executor is None
        self.executor: Executor = (
            executor
            if executor is not None
            # daemon threads: sync tasks a cancelled run abandons never hold the process
            else DaemonThreads(max_workers, thread_name_prefix="flowplan-engine")
        )
        self.task: TaskDecorator = TaskDecorator(self.registry)
        self._closed = False
        self._active_runs = 0
        self._dags = DagCatalog(self.registry, check_types=check_types)
        self._dag_deps: dict[str, type] = {}  # DAG name → its declared Deps (engine.dag)

    def _retains(self, dag_name: str, task: str) -> bool:
        """Whether ``task`` of DAG ``dag_name`` keeps its value (unknown tasks do)."""
        for dag in (dag_name, None):
            try:
                return self.registry.spec(task, dag).retain_result
            except UnknownTaskError:
                continue
        return True

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Engine {state}: DAGs {self.list_dags()}, max_parallel={self.config.max_parallel}>"

    # -- declaring ------------------------------------------------------------------------
    def task_template(
        self, fn: Callable[P, R], /, **options: Unpack[TaskOptions]
    ) -> TaskTemplate[P, R]:
        """A template registering ``fn`` once per ``bind(name, **fixed_kwargs)``."""
        return TaskTemplate(fn, self.registry, options)

    @overload
    def dag(self, name: str) -> DagScope[Any]: ...
    @overload
    def dag(self, name: str, *, deps: type[DepsT]) -> DagScope[DepsT]: ...
    def dag(self, name: str, *, deps: type[Any] | None = None) -> DagScope[Any]:
        """A scope declaring and running tasks of DAG ``name`` without repeating ``dag=``.

        With ``deps=Deps`` the scope is typed (its runs take a ``RunContext[Deps]``), and the
        engine checks at the start of every run of the DAG that ``context.deps`` is a ``Deps``.

        Raises:
            InvalidOptionError: ``name`` is not a non-empty string, ``deps`` is not a class, or
                the DAG was already declared with another ``deps``.
        """
        given: object = name
        if not isinstance(given, str) or not given:
            raise InvalidOptionError(
                f"a DAG name must be a non-empty string, got {given!r}", option="dag", value=given
            )
        if deps is not None:
            declare_deps(self._dag_deps, name, deps)
        return DagScope(self, name, deps)

    # -- graphs ---------------------------------------------------------------------------
    def list_dags(self) -> list[str]:
        """The DAG names, sorted."""
        return self.registry.list_dags()

    def graph(self, dag_name: str) -> TaskGraph:
        """The validated :class:`~flowplan.graph.TaskGraph` of a DAG (cached until it changes).

        Raises:
            UnknownTaskError: no such DAG ("did you mean ...", with the DAG names).
            GraphValidationError: missing or cross-DAG dependencies, cycles, signatures.
        """
        return self._dags.graph(dag_name)

    def validate(self, dag_name: str) -> None:
        """Check a DAG: it exists, dependencies exist in it, no cycles, signatures fit.

        Raises:
            UnknownTaskError: no such DAG.
            GraphValidationError: every problem found, together (a ``ValueError``).
        """
        self.graph(dag_name)

    def list_tasks(self, dag_name: str) -> list[str]:
        """The DAG's task names in topological order (declaration order breaks ties)."""
        return list(self.graph(dag_name).order)

    def display_dag(self, dag_name: str) -> str:
        """The DAG as a readable tree: each task with the tasks that depend on it, indented."""
        return render_tree(dag_name, self.graph(dag_name))

    # -- running --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError(
                "this Engine is closed (close() or `async with engine` ended); it runs nothing "
                "more — build a new engine with build_default_engine()"
            )

    def _check_context(self, dag_name: str, planned: Plan, context: object) -> None:
        if context is not None:
            check_context_type(dag_name, planned, context, self._dag_deps.get(dag_name))
            return
        needing = [
            name
            for name in planned.to_run
            if (spec := planned.graph.specs[name]).context_param is not None
            and requires_context(spec.signature, spec.context_param)
        ]
        if needing:
            param = planned.graph.specs[needing[0]].context_param
            raise InvalidOptionError(
                f"DAG {dag_name!r}: task(s) {', '.join(map(repr, needing))} take a RunContext "
                f"(parameter {param!r}) but the run got context=None; pass "
                "context=RunContext(YourDeps(...)) or give the parameter a default",
                option="context",
                value=None,
                task=needing[0],
            )

    def _sync_only(self, planned: Plan) -> bool:
        """Whether the run may go to the thread driver: no ``async def`` task to run, no
        hook of the user's (hooks are called on the event loop's thread), attempts on local
        threads."""
        if self.hooks or is_remote(self.executor):
            return False
        specs = planned.graph.specs
        return not any(specs[name].is_async for name in planned.to_run)

    async def _execute(
        self,
        dag_name: str,
        graph: TaskGraph,
        *,
        context: object,
        snapshot: Snapshot | None = None,
        targets: Sequence[str] | None = None,
        rerun: Sequence[str] = (),
        resumed_from: str | None = None,
        rerun_changed: bool = False,
    ) -> str:
        self._check_open()
        run_id = str(uuid.uuid4())
        planned = plan(
            graph,
            snapshot,
            targets=targets,
            rerun=rerun,
            run_id=run_id,
            cache=self.cache,
            rerun_changed=rerun_changed,
        )
        self._check_context(dag_name, planned, context)
        self.state_store.create_run(
            planned, dag_name=dag_name, targets=targets, resumed_from=resumed_from
        )
        run_hooks = [h for h in self.hooks if not isinstance(h, Hook)]
        adapter = EngineHook(dag_name, graph, run_hooks, self.logger)
        core_hooks = [adapter, *(h for h in self.hooks if isinstance(h, Hook))]
        self._active_runs += 1
        try:
            if self._sync_only(planned):
                await arun_sync(
                    planned,
                    executor=self.executor,
                    limit=self.config.max_parallel,
                    hooks=core_hooks,
                    store=self.state_store,
                    context=context,
                    retry_budget=self.config.retry_budget,
                    process_workers=self.process_workers,
                )
                return run_id
            await aexecute(
                planned,
                executor=self.executor,
                max_workers=self.config.max_parallel,
                fail_fast=False,
                hooks=core_hooks,
                store=self.state_store,
                context=context,
                retry_budget=self.config.retry_budget,
                process_workers=self.process_workers,
            )
        except BaseException:
            # a run refused before it began keeps no ownership of its lineage (one that began
            # gave it up when it finished)
            release = getattr(self.state_store, "release_run", None)
            if release is not None:
                release(run_id)
            raise
        finally:
            self._active_runs -= 1
            if self._closed and self._active_runs == 0:
                self._shutdown()
        return run_id

    async def run_once(self, dag_name: str, context: RunContext[Any] | None = None) -> str:
        """Run every task of ``dag_name`` once; return the run id.

        Raises:
            UnknownTaskError: no such DAG. GraphValidationError: the DAG is invalid.
            InvalidOptionError: a task needs a RunContext and ``context`` is ``None``; or
                ``context`` is not a ``RunContext``, or its ``deps`` is not of the class the
                DAG declares (``engine.dag(name, deps=Deps)``) or a task's parameter
                annotation names (``RunContext[Deps]``).
            EngineClosedError: the engine is closed (a ``RuntimeError``).
        """
        self._check_open()
        return await self._execute(dag_name, self.graph(dag_name), context=context)

    async def run_subgraph(
        self, dag_name: str, targets: Sequence[TaskRef], context: RunContext[Any] | None = None
    ) -> str:
        """Run ``targets`` and every task they depend on; return the run id.

        Raises:
            UnknownTaskError: no such DAG, or a target is not one of its tasks ("did you mean").
        """
        self._check_open()
        names = _names(targets, "targets")
        if not names:
            raise InvalidOptionError(
                "run_subgraph needs at least one target; use run_once to run the whole DAG",
                option="targets",
                value=targets,
            )
        graph = self.graph(dag_name)
        return await self._execute(dag_name, graph, context=context, targets=names)

    async def resume(
        self,
        run_id: str,
        from_tasks: Sequence[TaskRef] | None = None,
        context: RunContext[Any] | None = None,
        *,
        rerun_changed: bool = False,
    ) -> str:
        """Run again what did not succeed in ``run_id`` (and ``from_tasks`` with everything
        downstream of them); succeeded tasks are reused, not re-run. Return the new run id.

        A subgraph run resumes as a subgraph (the same targets). A reused task whose code
        changed since it succeeded is reported (its ``task_reused`` event carries
        ``code_changed``); ``rerun_changed=True`` runs such tasks, and everything downstream
        of them, again (see ``plan(rerun_changed=...)``).

        Raises:
            UnknownTaskError: no such run, or a name in ``from_tasks`` is not a task of the
                run ("did you mean ...").
        """
        self._check_open()
        info = self.state_store.get_run(run_id)
        snapshot = self.state_store.load(run_id)
        if info.dag_name is None:
            raise InvalidOptionError(
                f"run {run_id!r} was not started by an Engine (it records no DAG name); "
                "resume it with flowplan.plan(graph, store.load(run_id))",
                option="run_id",
                value=run_id,
            )
        graph = self.graph(info.dag_name)
        rerun = _names(from_tasks, "from_tasks")
        for name in rerun:
            if name not in graph.specs:
                raise graph.unknown(name, what="task in from_tasks")
            if info.targets is not None and name not in info.tasks:
                raise UnknownTaskError(
                    f"from_tasks names {name!r}, which is not part of run {run_id!r} (a "
                    f"subgraph run of {', '.join(map(repr, info.targets))}); its tasks are "
                    f"{', '.join(map(repr, info.tasks))}",
                    name=name,
                    known=sorted(info.tasks),
                )
        return await self._execute(
            info.dag_name,
            graph,
            context=context,
            snapshot=snapshot,
            targets=info.targets,
            rerun=rerun,
            resumed_from=run_id,
            rerun_changed=rerun_changed,
        )

    # -- reporting ------------------------------------------------------------------------
    def get_run_report(self, run_id: str) -> dict[str, Any]:
        """flowrun's run report (see :func:`flowplan.engine._report.build_report`).

        Raises:
            UnknownTaskError: no such run in the state store ("did you mean ...").
        """
        info = self.state_store.get_run(run_id)
        snapshot = self.state_store.load(run_id)
        if info.dag_name is not None and info.dag_name in self.list_dags():
            from flowplan.store._typed import restore_readable

            snapshot = restore_readable(snapshot, self.graph(info.dag_name))  # typed results
        return build_report(info, snapshot)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _shutdown(self) -> None:
        if self._owns_executor:
            self.executor.shutdown(wait=False)
            self.logger.debug("Engine closed: shut down its thread pool")

    def close(self) -> None:
        """Refuse new runs and shut down the owned thread pool (idempotent).

        Runs still in flight finish first; the pool is shut down when the last one ends.
        """
        if self._closed:
            return
        self._closed = True
        if self._active_runs == 0:
            self._shutdown()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def build_default_engine(  # noqa: PLR0917 - flowrun passes these positionally
    executor: Executor | None = None,
    max_workers: int = 8,
    max_parallel: int = 4,
    logger: logging.Logger | None = None,
    hooks: Sequence[RunHook | Hook] | None = None,
    state_store: EngineStore | StateStoreProtocol | None = None,
    *,
    registry: TaskRegistry | None = None,
    process_workers: int | None = None,
    check_types: bool | None = None,
) -> Engine:
    """Build an :class:`Engine` (flowrun's constructor).

    Args:
        executor: runs sync tasks (default: a pool of ``max_workers`` daemon threads the
            engine owns, so sync tasks a cancelled run abandons never hold the process).
        max_workers: the owned thread pool's size (>= 1).
        max_parallel: tasks running at once per run (>= 1).
        logger: a stdlib logger (default ``logging.getLogger("flowplan.engine")``).
        hooks: ``RunHook`` objects (or flowplan ``Hook`` objects, given the raw events).
        state_store: where runs are kept: a flowplan store (``SqliteStateStore``; default: one
            in memory) or any store written to flowrun's ``StateStoreProtocol`` (e.g.
            :class:`InMemoryStateStore`), which the engine drives with ``create_run``,
            ``mark_*`` and ``get_run``.
        registry: a :class:`TaskRegistry` already holding tasks (e.g. from the global ``@task``).
        process_workers: the size of the process pool each run owns for its
            ``isolation="process"`` tasks (default: ``min(os.cpu_count(), isolated tasks)``).
        check_types: check each DAG's edges by type when its graph is built
            (``TaskGraph.build``'s option): ``None`` checks when beartype is installed,
            ``True`` requires it, ``False`` skips the check.

    Raises:
        InvalidOptionError: ``max_workers`` or ``max_parallel`` is below 1, or a bad
            ``check_types``.
        MissingExtraError: ``check_types=True`` without beartype
            (``pip install 'flowplan[typecheck]'``).

    >>> engine = build_default_engine(max_parallel=2)
    >>> engine.config.max_parallel
    2
    >>> engine.close()
    """
    config = SchedulerConfig(max_parallel=max_parallel)
    return Engine(
        registry=registry,
        state_store=state_store,
        executor=executor,
        max_workers=max_workers,
        config=config,
        logger=logger,
        hooks=hooks,
        process_workers=process_workers,
        check_types=check_types,
    )
