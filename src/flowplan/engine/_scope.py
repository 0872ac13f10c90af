"""``engine.dag("name", deps=Deps)``: one DAG of an engine, without repeating ``dag=``.

Place in the data flow: façade (flowrun's API over plan → aexecute → store). A scope only
forwards to its :class:`~flowplan.engine.Engine` with the DAG name filled in; its type
parameter is the DAG's ``Deps``, so a run's context is typed ``RunContext[Deps]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeAlias, TypeVar, Unpack

from flowplan.spec import TaskSpec

from ._context import RunContext
from ._decorators import TaskDecorator, TaskTemplate
from ._options import TaskOptions

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["DagScope", "TaskRef"]

P = ParamSpec("P")
R = TypeVar("R")
DepsT = TypeVar("DepsT")
TaskRef: TypeAlias = "str | TaskSpec[..., Any]"


class DagScope(Generic[DepsT]):
    """One DAG of an engine: declare and run its tasks without repeating ``dag=``.

    ``engine.dag("etl", deps=Deps)`` is a ``DagScope[Deps]``: its ``run_once`` /
    ``run_subgraph`` take a ``RunContext[Deps]`` (type checkers reject another ``Deps`` or a
    non-context), and every run of the DAG checks at its start that ``context.deps`` is a
    ``Deps``. ``engine.dag("etl")`` is a ``DagScope[Any]``.

    Attributes:
        task: the decorator declaring tasks in this DAG.
        deps: the DAG's declared ``Deps`` class, or ``None``.
    """

    def __init__(self, engine: Engine, name: str, deps: type[DepsT] | None = None) -> None:
        self.engine = engine
        self.name = name
        self.deps = deps
        self.task: TaskDecorator = TaskDecorator(engine.registry, name)

    def __repr__(self) -> str:
        return f"<DagScope {self.name!r}>"

    def task_template(
        self, fn: Callable[P, R], /, **options: Unpack[TaskOptions]
    ) -> TaskTemplate[P, R]:
        """A template whose variants belong to this DAG."""
        options["dag"] = self.name
        return self.engine.task_template(fn, **options)

    async def run_once(self, context: RunContext[DepsT] | None = None) -> str:
        """Run this DAG once; return the run id."""
        return await self.engine.run_once(self.name, context)

    async def run_subgraph(
        self, targets: Sequence[TaskRef], context: RunContext[DepsT] | None = None
    ) -> str:
        """Run ``targets`` and their upstream tasks; return the run id."""
        return await self.engine.run_subgraph(self.name, targets, context)

    def validate(self) -> None:
        """Check this DAG (see :meth:`Engine.validate`)."""
        self.engine.validate(self.name)

    def display(self) -> str:
        """This DAG as a readable tree."""
        return self.engine.display_dag(self.name)

    def list_tasks(self) -> list[str]:
        """This DAG's task names, in topological order."""
        return self.engine.list_tasks(self.name)
