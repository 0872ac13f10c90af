"""The run report as one self-contained HTML page: summary, DAG, timeline, table.

Place in the data flow: beside ``report.py``, at the end — it reads a graph and a snapshot (and,
when given, the run's events) and returns text; it never changes anything. The page works
offline: inline CSS and SVG, no script, no font or image from anywhere. The DAG is laid out in
layers (each task one layer right of its deepest dependency, ordered within a layer by its
dependencies' positions); the timeline draws every attempt, backoff wait and timeout — exactly
from events, or reconstructed from the records (marked so) when only a snapshot is at hand.
Every name and message is escaped, so hostile text renders as text.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from flowplan.events import (
    Event,
    TaskFailed,
    TaskRetrying,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
)
from flowplan.snapshot import Snapshot, TaskRecord, TaskStatus

if TYPE_CHECKING:
    from flowplan.graph import TaskGraph

__all__ = ["Attempt", "attempts_of", "observed_critical_path", "render_html"]

# fill, stroke per status (skipped and cancelled apart from failed)
_STATUS_COLORS: Mapping[str, tuple[str, str]] = {
    "succeeded": ("#d4edda", "#28a745"),
    "reused": ("#e8f4ea", "#7fb88d"),
    "failed": ("#f8d7da", "#dc3545"),
    "in_doubt": ("#ffe5d0", "#fd7e14"),
    "skipped": ("#e2e3e5", "#6c757d"),
    "cancelled": ("#fff3cd", "#d39e00"),
    "running": ("#cce5ff", "#007bff"),
    "pending": ("#ffffff", "#999999"),
}
_CRITICAL = "#d63384"
_NODE_W, _NODE_H, _GAP_X, _GAP_Y = 150, 28, 60, 14
_ROW_H, _GANTT_W, _LABEL_W = 16, 900, 180
_OPEN_DAG_UP_TO = 300  # graphs with more tasks are drawn inside a folded <details>
# Nothing may load from anywhere: no script, no font, no image, no stylesheet but our own.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@attrs.frozen
class Attempt:
    """One attempt on the timeline (seconds since the run's first start).

    Attributes:
        number: the attempt number (1-based).
        start_s: when it started.
        end_s: when it ended.
        outcome: ``"succeeded"``, ``"failed"``, ``"retried"`` or ``"timeout"``.
        wait_s: the backoff wait that followed it (before the next attempt), if any.
        exact: ``True`` when read from events, ``False`` when reconstructed from a record.
    """

    number: int
    start_s: float
    end_s: float
    outcome: str
    wait_s: float = 0.0
    exact: bool = True


def _origin(snapshot: Snapshot, events: Sequence[Event]) -> float:
    starts = [r.started_at for r in snapshot.records.values() if r.started_at is not None]
    starts.extend(e.time for e in events if isinstance(e, TaskStarted))
    return min(starts, default=0.0)


def attempts_of(
    snapshot: Snapshot, events: Sequence[Event] = (), *, reused: Iterable[str] = ()
) -> dict[str, tuple[Attempt, ...]]:
    """Each task's attempts: exact from ``events`` when they cover the task, else rebuilt from
    its record (the last attempt from its duration; earlier ones share the time before it,
    less the recorded backoff waits). Reused tasks have none."""
    origin = _origin(snapshot, events)
    again = frozenset(reused)
    exact = _from_events(events, origin)
    out: dict[str, tuple[Attempt, ...]] = {}
    for name, record in snapshot.records.items():
        if name in again or record.cached or record.overridden:
            continue
        if name in exact:
            out[name] = exact[name]
        else:
            rebuilt = _from_record(record, origin)
            if rebuilt:
                out[name] = rebuilt
    return out


def _from_events(events: Sequence[Event], origin: float) -> dict[str, tuple[Attempt, ...]]:
    open_at: dict[tuple[str, int], float] = {}
    done: dict[str, list[Attempt]] = {}
    timed_out: set[tuple[str, int]] = set()
    for event in events:
        if isinstance(event, TaskStarted):
            open_at[(event.task, event.attempt)] = event.time
        elif isinstance(event, TaskTimedOut):
            timed_out.add((event.task, event.attempt))
        elif isinstance(event, TaskSucceeded | TaskFailed | TaskRetrying):
            key = (event.task, event.attempt)
            began = open_at.pop(key, None)
            if began is None:
                continue
            ended = began + event.duration_ms / 1000 if event.duration_ms else event.time
            if key in timed_out:
                outcome = "timeout"
            elif isinstance(event, TaskSucceeded):
                outcome = "succeeded"
            elif isinstance(event, TaskRetrying):
                outcome = "retried"
            else:
                outcome = "failed"
            wait = event.delay_s if isinstance(event, TaskRetrying) else 0.0
            done.setdefault(event.task, []).append(
                Attempt(event.attempt, began - origin, ended - origin, outcome, wait)
            )
    return {name: tuple(attempts) for name, attempts in done.items()}


def _from_record(record: TaskRecord, origin: float) -> tuple[Attempt, ...]:
    if record.started_at is None or record.finished_at is None or record.attempts == 0:
        return ()
    first, end = record.started_at - origin, record.finished_at - origin
    last_start = max(first, end - record.duration_ms / 1000)
    error = record.error
    if record.status is TaskStatus.SUCCEEDED:
        last = "succeeded"
    elif error is not None and error.kind == "timeout":
        last = "timeout"
    else:
        last = "failed"
    n = record.attempts
    if n == 1:
        return (Attempt(1, last_start, end, last, exact=False),)
    waits = list(record.retry_delays[-(n - 1) :]) if record.retry_delays else []
    waits = [0.0] * (n - 1 - len(waits)) + waits
    earlier = max(0.0, (last_start - first) - sum(waits)) / (n - 1)
    attempts: list[Attempt] = []
    at = first
    for i in range(n - 1):
        attempts.append(Attempt(i + 1, at, at + earlier, "retried", waits[i], exact=False))
        at += earlier + waits[i]
    attempts.append(Attempt(n, last_start, end, last, exact=False))
    return tuple(attempts)


def observed_critical_path(
    graph: TaskGraph | None, attempts: Mapping[str, tuple[Attempt, ...]]
) -> tuple[str, ...]:
    """The chain of waits that ended the run: from the task that finished last, back through
    the dependency that finished last before it started (empty without a graph)."""
    if graph is None or not attempts:
        return ()
    spans = {name: (a[0].start_s, a[-1].end_s) for name, a in attempts.items() if a}
    last = max(spans, key=lambda name: (spans[name][1], name))
    chain = [last]
    seen = {last}
    while True:
        began = spans[chain[-1]][0]
        before = [
            dep
            for dep in graph.predecessors.get(chain[-1], ())
            if dep in spans and dep not in seen and spans[dep][1] <= began + 1e-6
        ]
        if not before:
            break
        nxt = max(before, key=lambda dep: spans[dep][1])
        chain.append(nxt)
        seen.add(nxt)
    chain.reverse()
    return tuple(chain)


def _layers(graph: TaskGraph, names: Sequence[str]) -> list[list[str]]:
    """Nodes by depth (one right of the deepest dependency), each layer ordered by the mean
    position of its dependencies in the layer before (fewer crossings), ties in graph order."""
    shown = set(names)
    depth: dict[str, int] = {}
    for name in graph.order:
        if name in shown:
            deps = [depth[d] for d in graph.predecessors[name] if d in depth]
            depth[name] = max(deps, default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in graph.order:
        if name in depth:
            layers[depth[name]].append(name)
    position: dict[str, float] = {}
    for layer in layers:
        order = {name: i for i, name in enumerate(layer)}

        def key(name: str, order: Mapping[str, int] = order) -> tuple[float, int]:
            deps = [position[d] for d in graph.predecessors[name] if d in position]
            return (sum(deps) / len(deps) if deps else float(order[name]), order[name])

        layer.sort(key=key)
        position.update((name, float(i)) for i, name in enumerate(layer))
    return layers


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _state(name: str, record: TaskRecord | None, reused: frozenset[str]) -> str:
    if record is None:
        return "pending"
    if name in reused or record.cached or record.overridden:
        return "reused"
    return record.status.value


def _dag_svg(
    graph: TaskGraph,
    snapshot: Snapshot,
    reused: frozenset[str],
    roots: frozenset[str],
    critical: Sequence[str],
) -> str:
    layers = _layers(graph, graph.order)
    xy: dict[str, tuple[int, int]] = {}
    for i, layer in enumerate(layers):
        for j, name in enumerate(layer):
            xy[name] = (10 + i * (_NODE_W + _GAP_X), 10 + j * (_NODE_H + _GAP_Y))
    width = 20 + len(layers) * (_NODE_W + _GAP_X)
    height = 20 + max((len(layer) for layer in layers), default=0) * (_NODE_H + _GAP_Y)
    hot = set(itertools.pairwise(critical))
    on_path = set(critical)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="the task graph, coloured by status">'
    ]
    for name in graph.order:
        x2, y2 = xy[name]
        for dep in graph.predecessors[name]:
            x1, y1 = xy[dep]
            sx, sy, ex, ey = x1 + _NODE_W, y1 + _NODE_H / 2, x2, y2 + _NODE_H / 2
            mid = (sx + ex) / 2
            critical_edge = (dep, name) in hot
            stroke = _CRITICAL if critical_edge else "#8a8a8a"
            dash = ' stroke-dasharray="4 3"' if name in graph.detached else ""
            parts.append(
                f'<path class="edge{" critical" if critical_edge else ""}" '
                f'd="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}" fill="none" '
                f'stroke="{stroke}" stroke-width="{3 if critical_edge else 1.2}"{dash}/>'
            )
    records = snapshot.records
    for name in graph.order:
        x, y = xy[name]
        state = _state(name, records.get(name), reused)
        fill, stroke = _STATUS_COLORS.get(state, _STATUS_COLORS["pending"])
        classes = ["node", state]
        width_px = 1.5
        if name in roots:
            classes.append("rootcause")
            width_px = 4
        if name in on_path:
            classes.append("critical")
            stroke, width_px = _CRITICAL, max(width_px, 3)
        label = name if len(name) <= 20 else name[:19] + "…"
        tip = f"{name}: {state}" + (" (root cause)" if name in roots else "")
        parts.append(
            f'<g class="{" ".join(classes)}" data-task="{_esc(name)}">'
            f"<title>{_esc(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{_NODE_W}" height="{_NODE_H}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width_px}"/>'
            f'<text x="{x + _NODE_W / 2}" y="{y + _NODE_H / 2 + 4}" '
            f'text-anchor="middle">{_esc(label)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _gantt_svg(
    order: Sequence[str], attempts: Mapping[str, tuple[Attempt, ...]], critical: Sequence[str]
) -> str:
    rows = [name for name in order if name in attempts]
    if not rows:
        return '<p class="empty">No attempt ran (every task was reused or never started).</p>'
    end = max((a[-1].end_s + a[-1].wait_s for a in attempts.values() if a), default=0.0)
    scale = _GANTT_W / end if end > 0 else 1.0
    height = 30 + len(rows) * _ROW_H
    on_path = set(critical)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="{_LABEL_W + _GANTT_W + 20}"'
        f' height="{height}" role="img" aria-label="every attempt on a timeline">'
    ]
    for tick in range(11):  # a scale every tenth of the run
        x = _LABEL_W + tick * _GANTT_W / 10
        parts.append(
            f'<line x1="{x}" y1="14" x2="{x}" y2="{height}" stroke="#eee"/>'
            f'<text x="{x}" y="11" class="tick" text-anchor="middle">'
            f"{_esc(_seconds(end * tick / 10))}</text>"
        )
    for i, name in enumerate(rows):
        y = 20 + i * _ROW_H
        cls = "row critical" if name in on_path else "row"
        label = name if len(name) <= 26 else name[:25] + "…"
        parts.append(
            f'<g class="{cls}" data-task="{_esc(name)}"><text x="4" y="{y + 11}" '
            f'class="label">{_esc(label)}</text>'
        )
        for attempt in attempts[name]:
            x = _LABEL_W + attempt.start_s * scale
            w = max(1.5, (attempt.end_s - attempt.start_s) * scale)
            color = {
                "succeeded": "#28a745",
                "failed": "#dc3545",
                "retried": "#f0ad4e",
                "timeout": "#6f42c1",
            }[attempt.outcome]
            outline = f' stroke="{_CRITICAL}" stroke-width="2"' if name in on_path else ""
            tip = (
                f"{name} attempt {attempt.number}: {attempt.outcome}, "
                f"{_seconds(attempt.end_s - attempt.start_s)}"
                + ("" if attempt.exact else " (reconstructed from the record)")
            )
            parts.append(
                f'<rect class="attempt {attempt.outcome}" x="{x:.1f}" y="{y + 2}" '
                f'width="{w:.1f}" height="{_ROW_H - 4}" fill="{color}"{outline}>'
                f"<title>{_esc(tip)}</title></rect>"
            )
            if attempt.wait_s > 0:
                wx = _LABEL_W + attempt.end_s * scale
                ww = max(1.0, attempt.wait_s * scale)
                parts.append(
                    f'<rect class="wait" x="{wx:.1f}" y="{y + 6}" width="{ww:.1f}" '
                    f'height="{_ROW_H - 12}" fill="url(#hatch)">'
                    f"<title>{_esc(f'{name}: backoff wait {_seconds(attempt.wait_s)}')}</title>"
                    "</rect>"
                )
        parts.append("</g>")
    parts.insert(
        1,
        '<defs><pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse">'
        '<path d="M0,4 L4,0" stroke="#999" stroke-width="1"/></pattern></defs>',
    )
    parts.append("</svg>")
    return "".join(parts)


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _table(
    order: Sequence[str],
    snapshot: Snapshot,
    reused: frozenset[str],
    roots: frozenset[str],
) -> str:
    rows = []
    for name in order:
        record = snapshot.records.get(name)
        if record is None:
            rows.append(
                f'<tr class="pending"><td>{_esc(name)}</td><td>not in this run</td>'
                "<td></td><td></td><td></td><td></td></tr>"
            )
            continue
        state = _state(name, record, reused)
        error = record.error
        detail = ""
        if error is not None:
            detail = f"<b>{_esc(error.type.rsplit('.', 1)[-1])}</b>: {_esc(error.message)}"
            if error.traceback:
                detail += (
                    f"<details><summary>traceback</summary><pre>{_esc(error.traceback)}</pre>"
                    "</details>"
                )
        elif record.reason:
            detail = _esc(record.reason)
        cause = record.root_cause if record.root_cause and record.root_cause != name else ""
        mark = ' <span class="badge">root cause</span>' if name in roots else ""
        rows.append(
            f'<tr class="{state}"><td>{_esc(name)}{mark}</td><td>{_esc(state)}</td>'
            f"<td>{record.attempts}</td>"
            f"<td>{_esc(_seconds(record.duration_ms / 1000)) if record.attempts else '-'}</td>"
            f"<td>{detail}</td><td>{_esc(cause)}</td></tr>"
        )
    return (
        '<table class="tasks"><thead><tr><th>task</th><th>status</th><th>attempts</th>'
        "<th>last attempt</th><th>error or reason</th><th>root cause</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222}
header{padding:16px 24px;background:#f6f8fa;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:24px 0 8px}
main{padding:0 24px 24px}.summary span{margin-right:18px}
.status-succeeded{color:#1e7e34}.status-failed{color:#bd2130}
.scroll{overflow:auto;max-height:70vh;border:1px solid #ddd;border-radius:6px;background:#fff}
svg text{font-size:11px;fill:#222}svg .tick{fill:#888;font-size:10px}
.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:4px;
vertical-align:-2px;border:1px solid #888}
table.tasks{border-collapse:collapse;width:100%}
table.tasks th,table.tasks td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;
vertical-align:top}
table.tasks tr.failed td:nth-child(2){color:#bd2130;font-weight:600}
.badge{background:#dc3545;color:#fff;border-radius:8px;padding:0 6px;font-size:11px}
pre{white-space:pre-wrap;font-size:12px;background:#f6f8fa;padding:6px}
.roots li{margin:2px 0}
"""


def render_html(
    graph: TaskGraph | None,
    snapshot: Snapshot,
    *,
    events: Sequence[Event] = (),
    reused: Iterable[str] = (),
    title: str | None = None,
    facts: Sequence[tuple[str, str]] = (),
    counts: str = "",
    status: str | None = None,
    root_lines: Sequence[str] = (),
) -> str:
    """The whole page (see :func:`flowplan.report.to_html`)."""
    again = frozenset(reused)
    records = snapshot.records
    roots = frozenset(
        name
        for name, record in records.items()
        if record.status is TaskStatus.FAILED or record.root_cause == name
    ) | frozenset(snapshot.root_causes())
    order: list[str] = list(graph.order) if graph is not None else []
    order.extend(name for name in records if name not in set(order))
    attempts = attempts_of(snapshot, events, reused=again)
    critical = observed_critical_path(graph, attempts)
    shown_status = status or (
        "failed" if any(r.status is TaskStatus.FAILED for r in records.values()) else "succeeded"
    )
    heading = title or f"flowplan run {snapshot.run_id}"
    summary = "".join(
        f"<span><b>{_esc(key)}</b> {_esc(value)}</span>"
        for key, value in (
            ("status", shown_status),
            ("run", snapshot.run_id),
            *facts,
            ("tasks", counts or str(len(records))),
        )
    )
    legend = "".join(
        f'<span><i style="background:{fill};border-color:{stroke}"></i>{_esc(state)}</span>'
        for state, (fill, stroke) in _STATUS_COLORS.items()
    )
    roots_html = (
        '<ul class="roots">'
        + "".join(f"<li>{_esc(line.strip())}</li>" for line in root_lines[1:])
        + "</ul>"
        if len(root_lines) > 1
        else ""
    )
    path_html = (
        f"<p>Critical path: {' → '.join(_esc(n) for n in critical)}</p>"
        if len(critical) > 1
        else ""
    )
    if graph is None:
        dag = "<p>No graph was given: the DAG cannot be drawn from a snapshot alone.</p>"
    else:
        drawing = f'<div class="scroll">{_dag_svg(graph, snapshot, again, roots, critical)}</div>'
        folded = len(graph) > _OPEN_DAG_UP_TO  # a big graph is drawn folded: open it to look
        dag = (
            f"<details{'' if folded else ' open'}><summary>{len(graph)} tasks"
            f"{' (folded: open to draw)' if folded else ''}</summary>{drawing}</details>"
        )
    exactness = (
        "Attempts are exact (from the run's events)."
        if events
        else "Attempts are reconstructed from the records: the last attempt of each task is "
        "exact; earlier attempts share the time before it, less the recorded backoff waits."
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(heading)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{_esc(heading)}</h1><div class="summary status-{_esc(shown_status)}">'
        f"{summary}</div>{roots_html}</header><main>"
        f'<h2>Graph</h2><div class="legend">{legend}<span>thick border: root cause</span>'
        f'<span style="color:{_CRITICAL}">pink: critical path</span></div>{dag}{path_html}'
        f'<h2>Timeline</h2><p class="note">{_esc(exactness)} Hatched: backoff waits; '
        f'purple: timeouts.</p><div class="scroll">{_gantt_svg(order, attempts, critical)}</div>'
        f"<h2>Tasks</h2>{_table(order, snapshot, again, roots)}"
        "</main></body></html>\n"
    )
