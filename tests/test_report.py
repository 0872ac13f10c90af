"""Pictures and tables (flowplan.report): mermaid, dot, ascii; escaping; status styling."""

from __future__ import annotations

import doctest

import pytest

import flowplan
from flowplan import Registry, Snapshot, TaskGraph, TaskRecord, TaskStatus, plan, task
from flowplan.report import (
    format_duration,
    format_table,
    snapshot_table,
    status_counts,
    to_ascii,
    to_dot,
    to_mermaid,
)


def _graph(registry: Registry) -> TaskGraph:
    @task
    def extract() -> int:
        return 1

    @task(name='say "hi" [x]', depends_on=[extract])
    def quoted(extract: int) -> int:
        return extract

    @task(name="données chargées", depends_on=[extract])
    def unicode_name(extract: int) -> int:
        return extract

    @task(depends_on=[quoted, unicode_name])
    def join(**upstream: int) -> int:
        return sum(upstream.values())

    @task(depends_on=[join], detached=True)
    def notify(join: int) -> None:
        return None

    return TaskGraph.from_terminals(join, registry=registry)


@pytest.fixture
def graph(registry: Registry) -> TaskGraph:
    return _graph(registry)


def _snapshot() -> Snapshot:
    return Snapshot(
        "r1",
        {
            "extract": TaskRecord("extract", TaskStatus.SUCCEEDED, attempts=1, duration_ms=3),
            'say "hi" [x]': TaskRecord(
                'say "hi" [x]',
                TaskStatus.FAILED,
                attempts=2,
                error=flowplan.ErrorInfo("builtins.ValueError", "boom\nsecond line"),
            ),
            "données chargées": TaskRecord("données chargées", TaskStatus.SUCCEEDED, attempts=1),
            "join": TaskRecord(
                "join",
                TaskStatus.SKIPPED,
                reason="upstream 'say \"hi\" [x]' failed",
                root_cause='say "hi" [x]',
            ),
            "notify": TaskRecord(
                "notify", TaskStatus.CANCELLED, reason="the run stopped", root_cause="extract"
            ),
        },
    )


def test_mermaid_escapes_names_and_draws_detached_edges_dotted(graph: TaskGraph) -> None:
    text = to_mermaid(graph)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '    n1["say #34;hi#34; #91;x#93;"]' in lines
    assert '    n2["données chargées"]' in lines
    assert "    n3 -.-> n4" in lines  # join -> notify (detached)
    assert "    n0 --> n1" in lines
    assert "classDef" not in text  # no snapshot: no styling
    assert '"' not in "".join(line.split('["', 1)[-1][:-2] for line in lines[1:6])


def test_mermaid_styles_nodes_by_snapshot_status(graph: TaskGraph) -> None:
    text = to_mermaid(graph, snapshot=_snapshot())
    assert "classDef failed fill:#f8d7da" in text
    assert "    class n0,n2 succeeded" in text
    assert "    class n1 failed" in text
    assert "    class n3 skipped" in text
    assert "    class n4 cancelled" in text


def test_mermaid_of_a_plan_styles_by_action(graph: TaskGraph) -> None:
    first = plan(graph, _snapshot(), targets=["données chargées"])
    text = to_mermaid(first)
    assert "class n0,n2 reuse" in text
    assert "class n1,n3,n4 not_needed" in text


def test_mermaid_of_a_snapshot_alone_has_nodes_without_edges() -> None:
    text = to_mermaid(_snapshot(), direction="TD")
    assert text.startswith("flowchart TD")
    assert "-->" not in text
    assert "class n1 failed" in text


def test_dot_quotes_and_escapes(graph: TaskGraph) -> None:
    text = to_dot(graph, snapshot=_snapshot(), name='my "dag"')
    assert text.startswith('digraph "my \\"dag\\"" {')
    assert '"say \\"hi\\" [x]" [fillcolor="#f8d7da"' in text
    assert '"extract" -> "données chargées";' in text
    assert '"join" -> "notify" [style=dashed];' in text
    assert text.endswith("}")


def test_dot_escapes_backslashes_and_newlines() -> None:
    spec = flowplan.TaskSpec("a\\b\nc", lambda: 1)
    text = to_dot(TaskGraph.build([spec]))
    assert '"a\\\\b\\nc";' in text


def test_ascii_tree_marks_shared_detached_and_status(graph: TaskGraph) -> None:
    text = to_ascii(graph, snapshot=_snapshot())
    assert text.splitlines() == [
        "extract [succeeded]",
        '├── say "hi" [x] [failed]',
        "│   └── join [skipped]",
        "│       └── notify [cancelled] (detached)",
        "└── données chargées [succeeded]",
        "    └── join [skipped] (see above)",
        "root causes:",
        "  extract succeeded -> cancelled 1: notify",
        '  say "hi" [x] failed (ValueError: boom) -> skipped 1: join',
    ]
    assert to_ascii(_snapshot()).splitlines()[0] == "extract [succeeded]"
    assert "[not needed]" in to_ascii(plan(graph, targets=["extract"]))


def test_snapshot_table_shows_first_error_line_and_root_cause() -> None:
    lines = snapshot_table(_snapshot(), reused=["extract"]).splitlines()
    assert lines[0].split() == ["TASK", "STATUS", "ATTEMPTS", "DURATION", "DETAIL"]
    assert lines[1].endswith("reused from an earlier run")
    assert lines[2].endswith("ValueError: boom")
    assert "second line" not in "\n".join(lines)
    assert lines[5].endswith("the run stopped (root cause: extract)")
    assert status_counts(_snapshot(), reused=["extract"]) == (
        "1 succeeded, 1 reused, 1 failed, 1 skipped, 1 cancelled"
    )
    assert status_counts(Snapshot("e", {})) == "no tasks"


@pytest.mark.parametrize(
    ("ms", "text"),
    [(None, "-"), (0, "0ms"), (0.4, "<1ms"), (12.4, "12ms"), (1500, "1.5s"), (7_500_000, "2h05m")],
)
def test_format_duration(ms: float | None, text: str) -> None:
    assert format_duration(ms) == text


def test_format_table_aligns_columns() -> None:
    assert format_table(["A", "BB"], [["xxx", ""]]) == "A    BB\nxxx"


def test_exported_from_flowplan() -> None:
    assert flowplan.to_mermaid is to_mermaid
    assert flowplan.to_dot is to_dot
    assert flowplan.to_ascii is to_ascii


def test_module_doctests() -> None:
    import flowplan.report

    failures, tests = doctest.testmod(flowplan.report)
    assert tests > 0
    assert failures == 0
