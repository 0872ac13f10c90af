"""Pictures and tables of graphs, plans and snapshots: mermaid, Graphviz dot, ascii, text tables.

Place in the data flow: beside the hooks, at the end — it reads a
:class:`~flowplan.graph.TaskGraph`, a :class:`~flowplan.plan.Plan` or a
:class:`~flowplan.snapshot.Snapshot` and returns text; it never changes anything. Nodes are
styled by task status when a snapshot is given, by planned action for a plan. Names are escaped
for each format (quotes, spaces, unicode, markup characters), so any task name draws safely.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from flowplan._tally import task_counts, was_reused
from flowplan.graph import TaskGraph
from flowplan.plan import Plan
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus

if TYPE_CHECKING:
    import networkx as nx

    from flowplan.events import Event

__all__ = [
    "format_duration",
    "format_table",
    "format_time",
    "root_cause_lines",
    "snapshot_table",
    "status_counts",
    "to_ascii",
    "to_dot",
    "to_html",
    "to_mermaid",
    "to_networkx",
]

Source = TaskGraph | Plan | Snapshot

# (fill, stroke) per style class: task statuses, and plan actions for a Plan.
_COLORS: Mapping[str, tuple[str, str]] = {
    "succeeded": ("#d4edda", "#28a745"),
    "failed": ("#f8d7da", "#dc3545"),
    "skipped": ("#e2e3e5", "#6c757d"),
    "cancelled": ("#fff3cd", "#d39e00"),
    "in_doubt": ("#ffe5d0", "#fd7e14"),
    "running": ("#cce5ff", "#007bff"),
    "pending": ("#ffffff", "#999999"),
    "run": ("#cce5ff", "#007bff"),
    "reuse": ("#d4edda", "#28a745"),
    "not_needed": ("#f5f5f5", "#bbbbbb"),
}
_CRITICAL = "#d63384"  # the critical path's outline and edges


def _parts(
    source: Source, snapshot: Snapshot | None
) -> tuple[list[str], list[tuple[str, str, bool]], dict[str, str]]:
    """Nodes (in order), edges ``(from, to, into_detached)`` and each node's style class."""
    if isinstance(source, Snapshot):
        graph: TaskGraph | None = None
        snapshot = source if snapshot is None else snapshot
        nodes = list(source.records)
    else:
        graph = source.graph if isinstance(source, Plan) else source
        nodes = list(graph.order)
    edges = (
        [(p, n, n in graph.detached) for n in graph.order for p in graph.predecessors[n]]
        if graph is not None
        else []
    )
    styles: dict[str, str] = {}
    if snapshot is not None:
        for name in nodes:
            record = snapshot.records.get(name)
            if record is not None:
                styles[name] = record.status.value
    elif isinstance(source, Plan):
        styles = {n: d.action.value for n, d in source.decisions.items()}
    return nodes, edges, styles


def _root_names(snapshot: Snapshot | None) -> frozenset[str]:
    """The root causes among ``snapshot``'s tasks: failed, gated by their own ``when=``, or
    named as another task's root cause."""
    if snapshot is None:
        return frozenset()
    return frozenset(
        name
        for name, record in snapshot.records.items()
        if record.status is TaskStatus.FAILED or record.root_cause == name
    ) | frozenset(snapshot.root_causes())


def _mermaid_label(name: str) -> str:
    out = []
    for ch in name:
        if ch in '#"<>&`|[]{}()' or ch == "\\":
            out.append(f"#{ord(ch)};")
        elif ch in "\r\n\t":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _critical_edges(path: Sequence[str]) -> frozenset[tuple[str, str]]:
    return frozenset(itertools.pairwise(path))


def to_mermaid(
    source: Source,
    *,
    snapshot: Snapshot | None = None,
    direction: str = "LR",
    critical_path: Sequence[str] = (),
) -> str:
    """The graph as a mermaid ``flowchart`` (renders in GitHub markdown and many editors).

    Args:
        source: a graph; a plan (nodes styled by action: run, reuse, not needed); or a snapshot
            alone (nodes styled by status, no edges — a snapshot does not know them).
        snapshot: style a graph's or plan's nodes by the task statuses in this snapshot.
        direction: ``"LR"`` (left to right) or ``"TD"`` (top down).
        critical_path: tasks to highlight as the critical path (``Plan.estimate(...)``'s
            ``critical_path``): their nodes get the ``critical`` class, the edges between them
            a thick line.

    Edges into a detached task are dotted. Node ids are ``n0``, ``n1`` …; names are labels,
    escaped with mermaid's ``#code;`` entities, so quotes and brackets are safe. With a
    snapshot, root causes (failed or gated tasks, see :func:`root_cause_lines`) also get the
    ``rootcause`` class: a thick border, apart from the tasks they skipped.

    >>> from flowplan.spec import Dependency, TaskSpec
    >>> a = TaskSpec("extract", lambda: 1)
    >>> b = TaskSpec('say "hi"', lambda extract: extract, deps=(Dependency("extract", a),))
    >>> print(to_mermaid(TaskGraph.build([a, b])))
    flowchart LR
        n0["extract"]
        n1["say #34;hi#34;"]
        n0 --> n1
    """
    nodes, edges, styles = _parts(source, snapshot)
    ids = {name: f"n{i}" for i, name in enumerate(nodes)}
    lines = [f"flowchart {direction}"]
    lines.extend(f'    {ids[n]}["{_mermaid_label(n)}"]' for n in nodes)
    lines.extend(f"    {ids[a]} {'-.->' if d else '-->'} {ids[b]}" for a, b, d in edges)
    used = sorted(set(styles.values()))
    for style in used:
        fill, stroke = _COLORS[style]
        lines.append(f"    classDef {style} fill:{fill},stroke:{stroke},color:#000")
    for style in used:
        members = ",".join(ids[n] for n in nodes if styles.get(n) == style)
        lines.append(f"    class {members} {style}")
    roots = _root_names(source if isinstance(source, Snapshot) else snapshot)
    if roots:  # a thick border, over the status colours: root causes apart from cascades
        lines.append("    classDef rootcause stroke-width:4px")
        lines.append(f"    class {','.join(ids[n] for n in nodes if n in roots)} rootcause")
    on_path = [n for n in critical_path if n in ids]
    if on_path:
        lines.append("    classDef critical stroke:#d63384,stroke-width:3px")
        lines.append(f"    class {','.join(ids[n] for n in on_path)} critical")
        hot = _critical_edges(on_path)
        indexes = [str(i) for i, (a, b, _) in enumerate(edges) if (a, b) in hot]
        if indexes:
            lines.append(f"    linkStyle {','.join(indexes)} stroke:#d63384,stroke-width:3px")
    return "\n".join(lines)


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(
    source: Source,
    *,
    snapshot: Snapshot | None = None,
    name: str = "flowplan",
    critical_path: Sequence[str] = (),
) -> str:
    """The graph in Graphviz ``dot`` (render with ``dot -Tsvg``).

    Args:
        source: a graph, a plan or a snapshot, as for :func:`to_mermaid`.
        snapshot: fill a graph's or plan's nodes by the task statuses in this snapshot; root
            causes (see :func:`root_cause_lines`) get a thick border.
        name: the digraph's name.
        critical_path: tasks to highlight as the critical path: their outlines and the edges
            between them are drawn thick, in the critical colour.

    >>> from flowplan.spec import TaskSpec
    >>> print(to_dot(TaskGraph.build([TaskSpec("load data", lambda: 1)])))
    digraph "flowplan" {
        rankdir=LR;
        node [shape=box, style="rounded,filled", fillcolor="#ffffff"];
        "load data";
    }
    """
    nodes, edges, styles = _parts(source, snapshot)
    roots = _root_names(source if isinstance(source, Snapshot) else snapshot)
    lines = [
        f"digraph {_dot_quote(name)} {{",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff"];',
    ]
    on_path = frozenset(critical_path)
    for node in nodes:
        style = styles.get(node)
        if node in on_path:
            fill = _COLORS[style][0] if style is not None else "#ffffff"
            tooltip = _dot_quote(f"{style}, critical path" if style else "critical path")
            lines.append(
                f'    {_dot_quote(node)} [fillcolor="{fill}", color="{_CRITICAL}", '
                f"tooltip={tooltip}, penwidth=3];"
            )
        elif style is None:
            lines.append(f"    {_dot_quote(node)};")
        else:
            fill, stroke = _COLORS[style]
            root = node in roots
            tooltip = _dot_quote(f"{style}, root cause" if root else style)
            bold = ", penwidth=3" if root else ""
            lines.append(
                f'    {_dot_quote(node)} [fillcolor="{fill}", color="{stroke}", '
                f"tooltip={tooltip}{bold}];"
            )
    hot = _critical_edges(list(critical_path))
    for a, b, detached in edges:
        attributes = ["style=dashed"] if detached else []
        if (a, b) in hot:
            attributes += [f'color="{_CRITICAL}"', "penwidth=3"]
        extra = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"    {_dot_quote(a)} -> {_dot_quote(b)}{extra};")
    lines.append("}")
    return "\n".join(lines)


def to_ascii(
    source: Source, *, snapshot: Snapshot | None = None, critical_path: Sequence[str] = ()
) -> str:
    """The graph as an indented text tree: each root, then what depends on it, and so on.

    A task reached again (it has several upstream tasks) shows ``(see above)`` and is not
    expanded twice; detached tasks show ``(detached)``; with a snapshot or a plan, each task
    shows its status or action in brackets. With a snapshot, the run's root causes follow the
    tree, apart from the cascades they caused (see :func:`root_cause_lines`). Tasks on
    ``critical_path`` show ``(critical)``, and the path follows the tree on a line of its own.

    >>> from flowplan.spec import Dependency, TaskSpec
    >>> a = TaskSpec("extract", lambda: 1)
    >>> b = TaskSpec("load", lambda extract: extract, deps=(Dependency("extract", a),))
    >>> print(to_ascii(TaskGraph.build([a, b])))
    extract
    └── load
    """
    nodes, _, styles = _parts(source, snapshot)
    on_path = frozenset(critical_path)

    def label(name: str, seen: bool) -> str:
        text = name
        if name in styles:
            text += f" [{styles[name].replace('_', ' ')}]"
        if graph is not None and name in graph.detached:
            text += " (detached)"
        if name in on_path:
            text += " (critical)"
        return text + (" (see above)" if seen else "")

    graph: TaskGraph | None = None
    if not isinstance(source, Snapshot):
        graph = source.graph if isinstance(source, Plan) else source
    shown = source if isinstance(source, Snapshot) else snapshot
    causes = root_cause_lines(shown) if shown is not None else []
    if critical_path:
        causes.append("critical path: " + " → ".join(critical_path))
    if graph is None:
        return "\n".join([*(label(n, False) for n in nodes), *causes])
    lines: list[str] = []
    seen: set[str] = set()
    roots = [n for n in graph.order if not graph.predecessors[n]]
    # (name, prefix for this line, prefix for its children)
    stack: list[tuple[str, str, str]] = [(r, "", "") for r in reversed(roots)]
    while stack:
        name, prefix, child_prefix = stack.pop()
        lines.append(prefix + label(name, name in seen))
        if name in seen:
            continue
        seen.add(name)
        children = graph.successors[name]
        for i in reversed(range(len(children))):
            last = i == len(children) - 1
            stack.append(
                (
                    children[i],
                    child_prefix + ("└── " if last else "├── "),
                    child_prefix + ("    " if last else "│   "),
                )
            )
    return "\n".join([*lines, *causes])


def to_html(
    source: TaskGraph | Plan | None,
    snapshot: Snapshot,
    *,
    events: Sequence[Event] = (),
    reused: Iterable[str] = (),
    title: str | None = None,
) -> str:
    """A run as one self-contained HTML page (works offline: no script, no external file).

    At the top, the run's summary and root causes; then the DAG drawn as SVG, coloured by
    status (skipped and cancelled apart from failed; root causes with a thick border); a
    timeline of every attempt (retries, backoff waits hatched, timeouts in purple) with the
    run's critical path — the chain of waits that ended it — highlighted; and a table of every
    task with its attempts, duration, error (traceback folded) and root cause. Large runs stay
    usable: the graph and the timeline scroll in boxes of their own.

    Args:
        source: the run's graph (or plan), or ``None`` to skip the drawing.
        snapshot: the run.
        events: the run's events (e.g. ``RecordingHook().events``): attempts are then exact;
            without them, each task's earlier attempts are reconstructed from its record.
        reused: tasks reused from an earlier run (drawn and counted as reused).
        title: the page's title (default: ``flowplan run RUN_ID``).

    >>> from flowplan.snapshot import TaskRecord, TaskStatus
    >>> from flowplan.spec import TaskSpec
    >>> graph = TaskGraph.build([TaskSpec("<load>", lambda: 1)])
    >>> run = Snapshot("r", {"<load>": TaskRecord("<load>", TaskStatus.SUCCEEDED, attempts=1,
    ...                                           started_at=1.0, finished_at=2.0)})
    >>> page = to_html(graph, run)
    >>> page.startswith("<!DOCTYPE html>"), "&lt;load&gt;" in page, "<load>" in page
    (True, True, False)
    """
    from flowplan._html import render_html

    graph = source.graph if isinstance(source, Plan) else source
    again = frozenset(reused)
    return render_html(
        graph,
        snapshot,
        events=events,
        reused=again,
        title=title,
        counts=status_counts(snapshot, reused=again),
        root_lines=root_cause_lines(snapshot),
    )


def to_networkx(graph: TaskGraph | Plan, snapshot: Snapshot) -> nx.DiGraph[str]:
    """A run as a new ``networkx.DiGraph``, for networkx's algorithms and drawing tools.

    Nodes and edges are :meth:`TaskGraph.to_networkx`'s (the spec, its options, the receiving
    parameters); each node also carries what ``snapshot`` recorded: ``status`` (``"succeeded"``,
    ``"failed"``, … or ``None`` for a task the run has no record of), ``attempts``,
    ``duration_s`` (the last attempt's), ``started_at``/``finished_at`` (epoch seconds),
    ``error``, ``error_type`` and ``error_kind`` (``None`` unless it failed), ``cached``,
    ``outcome_reason`` and ``root_cause``.

    >>> from flowplan.snapshot import TaskRecord, TaskStatus
    >>> from flowplan.spec import TaskSpec
    >>> graph = TaskGraph.build([TaskSpec("a", lambda: 1)])
    >>> run = Snapshot("r", {"a": TaskRecord("a", TaskStatus.SUCCEEDED, attempts=1)})
    >>> node = to_networkx(graph, run).nodes["a"]
    >>> node["status"]
    'succeeded'
    """
    from flowplan._networkx import run_to_networkx

    return run_to_networkx(graph.graph if isinstance(graph, Plan) else graph, snapshot)


# -- tables ---------------------------------------------------------------------------------
def format_duration(ms: float | None) -> str:
    """``12ms``, ``1.5s``, ``3m04s``, ``2h05m``; ``-`` for ``None``.

    >>> format_duration(1500), format_duration(184_000)
    ('1.5s', '3m04s')
    """
    if ms is None:
        return "-"
    if 0 < ms < 1:
        return "<1ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_time(epoch: float | None) -> str:
    """A local ``YYYY-MM-DD HH:MM:SS`` time; ``-`` for ``None``."""
    if epoch is None:
        return "-"
    return _dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, the last column unpadded.

    >>> print(format_table(["A", "B"], [["x", "1"], ["long", "2"]]))
    A     B
    x     1
    long  2
    """
    table = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers) - 1)]
    out = []
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(out)


def _detail(record: TaskRecord, reused: bool) -> str:
    if reused:
        if record.overridden:
            return "overridden"
        if record.cached and record.reason:  # a result-cache hit says so
            return record.reason
        return "reused from an earlier run"
    if record.status is TaskStatus.FAILED:
        text = str(record.error) if record.error is not None else (record.reason or "")
        return text.strip().splitlines()[0] if text.strip() else ""
    if record.status in (TaskStatus.SKIPPED, TaskStatus.CANCELLED, TaskStatus.IN_DOUBT):
        reason = (record.reason or "").strip().splitlines()
        first = reason[0] if reason else record.status.value
        if record.root_cause and record.root_cause not in first:
            first += f" (root cause: {record.root_cause})"
        return first
    if record.cached:  # a result-cache hit says so in its reason; a journal replay has none
        return record.reason or "replayed from the journal"
    return ""


def snapshot_table(
    snapshot: Snapshot, *, reused: Iterable[str] = (), run_started_at: float | None = None
) -> str:
    """One row per task: status, attempts, duration, and the error's first line or why it
    was skipped (with the root cause); reused tasks say so: those named in ``reused``, and
    succeeded records the run did not produce itself (overridden, cached, or started before
    ``run_started_at``), as :func:`status_counts` counts them.

    >>> from flowplan.snapshot import TaskRecord, TaskStatus
    >>> snap = Snapshot("r", {"a": TaskRecord("a", TaskStatus.SUCCEEDED, attempts=1)})
    >>> print(snapshot_table(snap))
    TASK  STATUS     ATTEMPTS  DURATION  DETAIL
    a     succeeded  1         0ms
    """
    again = frozenset(reused)
    rows = [
        [
            name,
            record.status.value,
            str(record.attempts),
            format_duration(record.duration_ms),
            _detail(record, name in again or was_reused(record, run_started_at)),
        ]
        for name, record in snapshot.records.items()
    ]
    return format_table(["TASK", "STATUS", "ATTEMPTS", "DURATION", "DETAIL"], rows)


def status_counts(
    snapshot: Snapshot, *, reused: Iterable[str] = (), run_started_at: float | None = None
) -> str:
    """``"3 succeeded, 1 reused, 1 failed"``, in a fixed order: reused tasks — those named in
    ``reused``, and succeeded records the run did not produce itself (overridden, cached, or
    started before ``run_started_at``) — are counted apart (the run's ``run_finished`` counts).

    >>> from flowplan.snapshot import TaskRecord, TaskStatus
    >>> snap = Snapshot("r", {
    ...     "a": TaskRecord("a", TaskStatus.SUCCEEDED, attempts=1, started_at=5.0),
    ...     "b": TaskRecord("b", TaskStatus.SUCCEEDED, attempts=1, started_at=20.0),
    ...     "c": TaskRecord("c", TaskStatus.FAILED, attempts=1, started_at=21.0)})
    >>> status_counts(snap, run_started_at=10.0)
    '1 succeeded, 1 reused, 1 failed'
    """
    counts = task_counts(snapshot.records, run_started_at=run_started_at, reused=set(reused))
    return ", ".join(f"{n} {word}" for word, n in counts.items()) or "no tasks"


def root_cause_lines(snapshot: Snapshot) -> list[str]:
    """The run's root causes, apart from the cascades they caused: a ``root causes:`` header
    and one line per root cause, in record order (empty when nothing failed or was gated).

    A root cause is a task that failed, or was skipped by its own gate (``when=``), or that
    other tasks name as their ``root_cause``. Its line says how it ended and which tasks it
    skipped or cancelled.

    >>> from flowplan.snapshot import ErrorInfo, TaskRecord, TaskStatus
    >>> snap = Snapshot("r", {
    ...     "load": TaskRecord("load", TaskStatus.FAILED, error=ErrorInfo("x.OSError", "down")),
    ...     "save": TaskRecord("save", TaskStatus.SKIPPED, reason="upstream 'load' failed",
    ...                        root_cause="load")})
    >>> print("\\n".join(root_cause_lines(snap)))
    root causes:
      load failed (OSError: down) -> skipped 1: save
    """
    records = snapshot.records
    cascades: dict[str, dict[str, list[str]]] = {}
    for name, record in records.items():
        root = record.root_cause
        if root is not None and root != name and record.status is not TaskStatus.FAILED:
            by_status = cascades.setdefault(root, {})
            by_status.setdefault(record.status.value, []).append(name)
    lines: list[str] = []
    for name, record in records.items():
        own = record.status is TaskStatus.FAILED or record.root_cause == name
        if not own and name not in cascades:
            continue
        if record.status is TaskStatus.FAILED:
            text = str(record.error) if record.error is not None else (record.reason or "")
        else:
            text = record.reason or ""
        first = text.strip().splitlines()[0] if text.strip() else ""
        line = f"  {name} {record.status.value}" + (f" ({first})" if first else "")
        groups = cascades.get(name, {})
        if groups:
            line += " -> " + "; ".join(
                f"{status} {len(names)}: {', '.join(names)}" for status, names in groups.items()
            )
        lines.append(line)
    return ["root causes:", *lines] if lines else []
