"""The HTML run report: a self-contained page (summary, DAG, timeline, table), in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowplan import (
    RecordingHook,
    Registry,
    Snapshot,
    TaskGraph,
    TaskSpec,
    TaskStatus,
    execute,
    plan,
    task,
)
from flowplan.report import to_html
from flowplan.spec import Dependency
from flowplan.store import SqliteStateStore

HOSTILE = '<script>alert("x")</script> & "quotes"'


def _run(registry: Registry) -> tuple[TaskGraph, Snapshot, RecordingHook]:
    tries = {"flaky": 0}

    @task
    def extract() -> list[int]:
        time.sleep(0.02)
        return [1, 2, 3]

    @task(depends_on=[extract])
    def clean(extract: list[int]) -> list[int]:
        time.sleep(0.05)
        return extract

    @task(depends_on=[extract], retry=2, retry_backoff_base_ms=20)
    def flaky(extract: list[int]) -> int:
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise ConnectionError("try again")
        return 1

    @task(depends_on=[extract], timeout_s=0.05)
    def slow(extract: list[int]) -> int:
        time.sleep(0.5)
        return 1

    @task(depends_on=[clean, flaky])
    def load(clean: list[int], flaky: int) -> int:
        return 1

    @task(depends_on=[slow])
    def notify(slow: int) -> None:
        return None

    @task(depends_on=[load], name=HOSTILE)
    def hostile(load: int) -> None:
        raise ValueError("<b>not bold</b>")

    graph = TaskGraph.build([extract, clean, flaky, slow, load, notify, hostile])
    hook = RecordingHook()
    snapshot = execute(plan(graph), hooks=[hook], fail_fast=False)
    return graph, snapshot, hook


def _nodes(page: str) -> dict[str, str]:
    """data-task → the node's classes, from the DAG's SVG."""
    return {
        m.group(2): m.group(1)
        for m in re.finditer(r'<g class="node ([^"]*)" data-task="([^"]*)"', page)
    }


def _row(page: str, task: str) -> str:
    """The timeline row of ``task``."""
    found = re.search(rf'<g class="row[^"]*" data-task="{task}">(.*?)</g>', page)
    assert found is not None, f"no timeline row for {task}"
    return found.group(1)


def test_the_page_is_self_contained_and_escapes_every_name(registry: Registry) -> None:
    graph, snapshot, hook = _run(registry)
    page = to_html(graph, snapshot, events=hook.events)
    assert page.startswith("<!DOCTYPE html>")
    for external in ("<script", "<link", "src=", "@import", "url(http", "<iframe"):
        assert external not in page
    assert "default-src 'none'" in page  # the browser refuses anything external too
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page


def test_the_dag_has_a_node_per_task_coloured_by_status(registry: Registry) -> None:
    graph, snapshot, hook = _run(registry)
    nodes = _nodes(to_html(graph, snapshot, events=hook.events))
    assert len(nodes) == len(graph)
    assert nodes["extract"].startswith("succeeded")
    assert nodes["slow"].split()[0] == "failed"
    assert nodes["notify"].split()[0] == "skipped"
    assert "rootcause" in nodes["slow"]
    assert "rootcause" not in nodes["notify"]  # a cascade, not a cause
    cancelled = Snapshot(
        "r",
        {
            **snapshot.records,
            "notify": snapshot["notify"].__class__("notify", TaskStatus.CANCELLED, reason="stop"),
        },
    )
    assert _nodes(to_html(graph, cancelled))["notify"].split()[0] == "cancelled"


def test_the_timeline_draws_every_attempt_wait_and_timeout(registry: Registry) -> None:
    graph, snapshot, hook = _run(registry)
    exact = to_html(graph, snapshot, events=hook.events)
    flaky_row = _row(exact, "flaky")
    assert flaky_row.count('class="attempt retried"') == 2
    assert flaky_row.count('class="attempt succeeded"') == 1
    assert flaky_row.count('class="wait"') == 2  # the two backoff waits
    assert 'class="attempt timeout"' in _row(exact, "slow")
    assert "Attempts are exact" in exact
    rebuilt = to_html(graph, snapshot)  # from the records alone: the same attempts, marked so
    flaky_rebuilt = _row(rebuilt, "flaky")
    assert flaky_rebuilt.count('class="attempt') == 3
    assert flaky_rebuilt.count('class="wait"') == 2
    assert "reconstructed from the record" in flaky_rebuilt
    assert 'class="attempt timeout"' in _row(rebuilt, "slow")


def test_the_critical_path_summary_and_table(registry: Registry) -> None:
    graph, snapshot, hook = _run(registry)
    page = to_html(graph, snapshot, events=hook.events, title="nightly <etl>")
    assert "<title>nightly &lt;etl&gt;</title>" in page
    assert "Critical path: extract → " in page
    path = re.search(r"Critical path: ([^<]*)</p>", page)
    assert path is not None
    names = path.group(1).split(" → ")
    assert all(n in page for n in names)
    assert 'class="node succeeded critical"' in page  # extract is on it
    assert "4 succeeded, 2 failed, 1 skipped" in page
    assert "TaskTimeoutError" in page
    assert "<details><summary>traceback</summary>" in page
    assert "root cause</span>" in page


def test_reused_tasks_and_a_snapshot_without_graph(registry: Registry) -> None:
    graph, snapshot, _ = _run(registry)
    page = to_html(graph, snapshot, reused=["extract"])
    assert _nodes(page)["extract"].split()[0] == "reused"
    assert '<g class="row" data-task="extract">' not in page  # no attempt drawn
    alone = to_html(None, snapshot)
    assert "cannot be drawn from a snapshot alone" in alone
    assert "<table" in alone


def test_two_thousand_tasks_stay_usable() -> None:
    specs: list[TaskSpec[..., object]] = []
    for i in range(2000):
        deps = (Dependency(specs[i - 1].name, specs[i - 1]),) if i % 40 else ()
        specs.append(TaskSpec(f"task_{i}", lambda **_: None, deps=deps))
    graph = TaskGraph.build(specs)
    snapshot = execute(plan(graph))
    page = to_html(graph, snapshot)
    assert len(_nodes(page)) == 2000
    assert "<details><summary>2000 tasks (folded: open to draw)</summary>" in page
    assert len(page) < 3_000_000


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _browse(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    browser = _chromium()
    if browser is None:
        if os.environ.get("FLOWPLAN_REQUIRE_BROWSER"):
            pytest.fail("FLOWPLAN_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium here (apt-get install chromium); .ci/run installs it")
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--log-level=0",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_report_in_a_real_browser(registry: Registry, tmp_path: Path) -> None:
    graph, snapshot, hook = _run(registry)
    page = tmp_path / "report.html"
    page.write_text(to_html(graph, snapshot, events=hook.events), encoding="utf-8")
    dom = _browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no error, no refused load, nothing logged by the page
    assert len(re.findall(r'<g class="node ', dom.stdout)) == len(graph)
    shot = tmp_path / "report.png"
    taken = _browse(page, tmp_path, "--window-size=1300,1100", f"--screenshot={shot}")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a page was drawn, not a blank


def test_the_browser_test_would_see_a_console_error(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        to_html(None, Snapshot("r", {})).replace(
            "</main>", '<img src="https://example.invalid/x.png"></main>'
        ),
        encoding="utf-8",
    )
    dom = _browse(page, tmp_path, "--dump-dom")
    assert any(":CONSOLE" in line and "x.png" in line for line in dom.stderr.splitlines())


def test_cli_report_writes_the_page(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(
        "from flowplan import task\n\n"
        "@task\ndef extract() -> int:\n    return 1\n\n"
        "@task(depends_on=[extract])\ndef load(extract: int) -> int:\n"
        "    raise OSError('disk full')\n",
        encoding="utf-8",
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowplan", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert cli("run", "pipeline.py").returncode == 1
    done = cli("report", "last", "--html", "out.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert set(_nodes(page)) == {"extract", "load"}
    assert "OSError" in page
    assert "disk full" in page
    assert "<b>dag</b> pipeline" in page
    with SqliteStateStore(tmp_path / ".flowplan" / "runs.db") as store:
        run_id = store.list_runs()[0].run_id
    assert run_id in page
    stdout = cli("report", run_id[:8], "--html", "-")
    assert stdout.stdout.startswith("<!DOCTYPE html>")
