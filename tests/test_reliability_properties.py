"""A state machine of crashes: random DAGs, random failures, runs cut at a random event (a
simulated kill: only the prefix is persisted) and resume loops; laws checked at every step."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from flowplan import (
    Dependency,
    InlineExecutor,
    MemoryStore,
    RecordingHook,
    Snapshot,
    TaskGraph,
    TaskSpec,
    TaskStarted,
    TaskStatus,
    execute,
    fold,
    plan,
)


class CrashAndResume(RuleBasedStateMachine):
    """Model: the expected value of task ``j`` is ``j + sum(values of its deps)``."""

    def __init__(self) -> None:
        super().__init__()
        self.graph: TaskGraph | None = None
        self.snapshot: Snapshot | None = None
        self.failing: set[str] = set()
        self.calls: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.runs = 0

    @initialize(
        deps=st.integers(1, 6).flatmap(
            lambda n: st.tuples(
                *(
                    st.sets(st.integers(0, j - 1), max_size=2) if j else st.just(set())
                    for j in range(n)
                )
            )
        ),
        data=st.data(),
    )
    def build(self, deps: tuple[set[int], ...], data: st.DataObject) -> None:
        names = [f"t{j}" for j in range(len(deps))]
        specs = []
        for j, ds in enumerate(deps):
            dep_names = tuple(names[d] for d in sorted(ds))
            specs.append(
                TaskSpec(
                    name=names[j],
                    fn=self._body(names[j], j),
                    deps=tuple(map(Dependency, dep_names)),
                )
            )
            self.expected[names[j]] = j + sum(self.expected[d] for d in dep_names)
        self.graph = TaskGraph.build(specs)
        self.failing = set(data.draw(st.sets(st.sampled_from(names), max_size=2)))

    def _body(self, name: str, j: int) -> Any:
        def body(**deps: int) -> int:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.failing:
                raise RuntimeError(f"{name} fails")
            return j + sum(deps.values())

        return body

    def _run(self, cut: float | None) -> None:
        assert self.graph is not None
        before = self.snapshot
        succeeded = {n for n, r in (before.records.items() if before else ()) if r.succeeded}
        recorder, store = RecordingHook(), MemoryStore()
        self.runs += 1
        the_plan = plan(self.graph, before, run_id=f"run-{self.runs}")
        result = execute(
            the_plan, executor=InlineExecutor(), hooks=[recorder], store=store, fail_fast=False
        )
        events = recorder.events
        started = {e.task for e in events if isinstance(e, TaskStarted)}
        assert not succeeded & started, "a succeeded task ran again"
        # the events fold to the snapshot that was returned and stored
        assert fold(events).records == result.records
        assert store.load(the_plan.run_id).records == result.records
        assert all(r.status.is_terminal for r in result.records.values())
        if cut is None:
            self.snapshot = result
            return
        # a kill after a random prefix of events: only that much reached the store
        prefix = events[: int(cut * len(events))]
        self.snapshot = fold(prefix, Snapshot(the_plan.run_id, dict(the_plan.reused)))

    @rule(cut=st.floats(0, 1))
    def crash_mid_run(self, cut: float) -> None:
        self._run(cut)

    @rule()
    def run_to_the_end(self) -> None:
        self._run(None)

    @precondition(lambda self: bool(self.failing))
    @rule(data=st.data())
    def fix_a_failure(self, data: st.DataObject) -> None:
        self.failing.discard(data.draw(st.sampled_from(sorted(self.failing))))

    @invariant()
    def succeeded_values_are_right(self) -> None:
        if self.snapshot is None:
            return
        for name, record in self.snapshot.records.items():
            if record.status is TaskStatus.SUCCEEDED:
                assert record.value == self.expected[name]

    def teardown(self) -> None:
        if self.graph is None:
            return
        self.failing.clear()
        self._run(None)
        assert self.snapshot is not None
        assert {n: r.value for n, r in self.snapshot.records.items()} == self.expected
        # succeeded exactly once per recorded success; crashes may repeat only cut-off bodies
        assert set(self.calls) == set(self.expected)


CrashAndResume.TestCase.settings = settings(max_examples=40, stateful_step_count=8, deadline=None)
TestCrashAndResume = CrashAndResume.TestCase
