"""flowing's durable journal (``journal_path=``) and :class:`flowplan.store.JournalStore`.

The cross-process tests write a pipeline script to ``tmp_path`` and run it in a new Python
process, as a user re-running a script would; task bodies append their names to a side-effect
file so the tests count real calls. In-process tests make "edited code" with closures (a
closure's contents are part of the step key).
"""

from __future__ import annotations

import datetime as dt
import doctest
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from flowplan import Flow, SerializationError, StepState, StoreError, clear_registry, task
from flowplan.spec import TaskSpec
from flowplan.store import JournalStore, _journal
from flowplan.store._journal import JOURNAL_FORMAT

SCRIPT = """
import json
import pathlib

from flowplan import Flow, task

HERE = pathlib.Path(__file__).resolve().parent


def note(name):
    with open(HERE / "calls.txt", "a") as f:
        f.write(name + "\\n")


@task{extract_opts}
def extract():
    note("extract")
    return {items}


@task(depends_on=[extract]{transform_opts})
def transform(extract):
    note("transform")
    return [x * {factor} for x in extract]


@task(depends_on=[transform])
def {load}(transform):
    note("load")
    return sum(transform)


@task(depends_on=[transform], detached=True)
def announce(transform):
    note("announce")


flow = Flow({load}, journal_path=HERE / "journal.jsonl")
results = flow.run()
out = {{
    name: {{"state": r.state.value, "cached": r.cached, "value": r.value}}
    for name, r in results.items()
}}
(HERE / "out.json").write_text(json.dumps(out))
"""

DEFAULTS = {
    "extract_opts": "",
    "items": "[1, 2, 3]",
    "transform_opts": "",
    "factor": "10",
    "load": "load",
}


def run_script(tmp_path: Path, **params: str) -> tuple[dict[str, Any], list[str]]:
    """Run the pipeline in a new process; return its results and the bodies it called."""
    (tmp_path / "pipeline.py").write_text(SCRIPT.format(**{**DEFAULTS, **params}))
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "pipeline.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    return out, calls.read_text().split() if calls.exists() else []


def cached(out: dict[str, Any]) -> dict[str, bool]:
    return {name: entry["cached"] for name, entry in out.items()}


def test_a_new_process_replays_unchanged_steps_and_reruns_edited_ones(tmp_path: Path) -> None:
    out, calls = run_script(tmp_path)
    assert calls == ["extract", "transform", "load", "announce"]
    assert out["load"] == {"state": "succeeded", "cached": False, "value": 60}

    out, calls = run_script(tmp_path)
    assert calls == []  # nothing ran: every step, the detached one too, came from the journal
    assert set(cached(out).values()) == {True}
    assert out["load"]["value"] == 60
    assert out["transform"]["value"] == [10, 20, 30]

    out, calls = run_script(tmp_path, factor="100")  # edit one step's code
    assert calls == ["transform", "load", "announce"]  # it and everything downstream
    assert cached(out) == {"extract": True, "transform": False, "load": False, "announce": False}
    assert out["load"]["value"] == 600

    out, calls = run_script(tmp_path)  # back to the old code: its entries are still there
    assert calls == []
    assert out["load"]["value"] == 60


def test_renaming_and_cosmetic_knobs_do_not_invalidate(tmp_path: Path) -> None:
    run_script(tmp_path)
    out, calls = run_script(
        tmp_path,
        load="finish",  # the task's and the function's name
        transform_opts=", retry=3, retry_backoff_base_ms=5, timeout_s=30, name='transform'",
    )
    assert calls == []
    assert out["finish"] == {"state": "succeeded", "cached": True, "value": 60}


def test_an_explicit_version_wins_over_the_code(tmp_path: Path) -> None:
    out, calls = run_script(tmp_path, extract_opts="(version='1')")
    assert calls == ["extract", "transform", "load", "announce"]

    out, calls = run_script(tmp_path, extract_opts="(version='1')", items="[1, 2, 3, 4]")
    assert calls == []  # same version: the edit is deliberately ignored
    assert out["load"]["value"] == 60

    out, calls = run_script(tmp_path, extract_opts="(version='2')", items="[1, 2, 3, 4]")
    assert calls == ["extract", "transform", "load", "announce"]  # keys chain downstream
    assert out["load"]["value"] == 100


# -- in-process ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    clear_registry()
    yield
    clear_registry()


def pipeline(factor: int, calls: list[str]) -> TaskSpec[..., Any]:
    @task
    def source() -> list[int]:
        calls.append("source")
        return [1, 2]

    @task(depends_on=[source])
    def scale(source: list[int]) -> list[int]:
        calls.append("scale")
        return [x * factor for x in source]

    @task(depends_on=[scale])
    def total(scale: list[int]) -> int:
        calls.append("total")
        return sum(scale)

    return total


def flow_of(terminal: TaskSpec[..., Any], journal: Path) -> Flow:
    return Flow(terminal, journal_path=journal, logger=structlog.testing.CapturingLogger())


def test_torn_last_line_is_skipped_and_the_next_append_starts_fresh(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    calls: list[str] = []
    flow_of(pipeline(10, calls), journal).run()
    with journal.open("ab") as handle:
        handle.write(b'{"format": 1, "key": "0123')  # the process died mid-write

    calls.clear()
    flow = flow_of(pipeline(10, calls), journal)
    results = flow.run()
    assert calls == []
    assert results["total"].cached
    assert results["total"].value == 30
    assert flow.summary().splitlines()[2] == "  SUCCEEDED total (0ms) [cached]"

    results = flow_of(pipeline(20, calls), journal).run()
    assert calls == ["scale", "total"]
    lines = journal.read_text().splitlines()
    assert lines[3] == '{"format": 1, "key": "0123'
    assert [json.loads(line)["task"] for line in lines[4:]] == ["scale", "total"]
    assert all(line.endswith("}") for line in journal.read_text().split("\n")[4:-1])


def test_garbage_lines_are_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "j.jsonl"
    calls: list[str] = []
    flow_of(pipeline(10, calls), journal).run()
    lines = journal.read_text().splitlines()
    newer = json.dumps({"format": JOURNAL_FORMAT + 1, "key": "k", "task": "x"})
    journal.write_text("\n".join([lines[0], "not json at all", newer, *lines[1:]]) + "\n")

    calls.clear()
    with caplog.at_level(logging.WARNING, logger="flowplan"):
        results = flow_of(pipeline(10, calls), journal).run()
    assert calls == []
    assert results["total"].value == 30
    messages = [r.getMessage() for r in caplog.records if r.name == "flowplan"]
    assert any("line 2 skipped: not a JSON line" in m for m in messages)
    assert any("line 3 skipped: journal format 2 is not 1" in m for m in messages)


def test_unserializable_value_fails_the_task_and_keeps_the_journal_readable(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.jsonl"
    calls: list[str] = []

    @task
    def good() -> int:
        calls.append("good")
        return 1

    @task(depends_on=[good])
    def handle(good: int) -> object:
        calls.append("handle")
        return threading.Lock()

    @task(depends_on=[handle])
    def after(handle: object) -> None:
        calls.append("after")

    results = flow_of(after, journal).run()
    result = results["handle"]
    assert result.state is StepState.FAILED
    assert isinstance(result.error, SerializationError)
    assert "task 'handle': its value cannot be written to the journal" in str(result.error)
    assert "cannot serialize" in str(result.error)
    assert results["after"].state is StepState.SKIPPED

    calls.clear()
    results = flow_of(after, journal).run()
    assert results["good"].cached
    assert calls == ["handle"]  # replayed what was journalled, retried the rest


def test_rich_values_round_trip_through_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    value = {
        "tuple": (1, (2, 3)),
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 1),
        "nan-free floats": [1.5, -0.0],
        99: "int key",
    }

    @task
    def rich() -> dict[Any, Any]:
        return value

    flow_of(rich, journal).run()
    result = flow_of(rich, journal).run()["rich"]
    assert result.cached
    assert result.value == value
    assert type(result.value["tuple"]) is tuple
    assert type(result.value["frozenset"]) is frozenset
    assert result.value["when"].tzinfo == dt.UTC


def test_override_is_journalled_for_a_new_flow(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    calls: list[str] = []
    total = pipeline(10, calls)
    flow = flow_of(total, journal)
    flow.override("scale", (7, 8))
    assert flow.results["scale"].step_key is not None

    results = flow_of(pipeline(10, calls), journal).run()  # a new flow: nothing pending
    assert calls == ["source", "total"]
    assert results["scale"].value == (7, 8)
    assert results["scale"].cached
    assert results["scale"].overridden
    assert results["total"].value == 15


def test_unserializable_override_is_refused(tmp_path: Path) -> None:
    flow = flow_of(pipeline(10, []), tmp_path / "j.jsonl")
    with pytest.raises(SerializationError, match="task 'scale'"):
        flow.override("scale", object())
    assert "scale" not in flow.results


def test_resume_does_not_rewrite_reused_steps(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    broken = [True]

    @task
    def a() -> int:
        return 1

    @task(depends_on=[a])
    def b(a: int) -> int:
        if broken[0]:
            raise RuntimeError("transient")
        return a + 1

    flow = flow_of(b, journal)
    flow.run()
    broken[0] = False
    flow.resume()
    flow.resume()
    assert [json.loads(line)["task"] for line in journal.read_text().splitlines()] == ["a", "b"]


def test_each_line_is_versioned_json_with_the_step_key(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    flow = flow_of(pipeline(10, []), journal)
    results = flow.run()
    text = journal.read_text()
    assert text.endswith("\n")
    entries = [json.loads(line) for line in text.splitlines()]
    assert {e["format"] for e in entries} == {JOURNAL_FORMAT}
    assert {e["task"]: e["key"] for e in entries} == {
        name: r.step_key for name, r in results.items()
    }
    assert entries[1]["value"] == [10, 20]


def test_journal_store_load_without_a_file_is_empty(tmp_path: Path) -> None:
    assert len(JournalStore(tmp_path / "missing.jsonl").load({"a": "k"})) == 0


def test_journal_store_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist; create it first"):
        JournalStore(tmp_path / "no" / "such" / "j.jsonl")
    with pytest.raises(StoreError, match="is a directory"):
        JournalStore(tmp_path)


def test_without_a_journal_no_keys_are_computed(tmp_path: Path) -> None:
    results = Flow(pipeline(10, []), logger=structlog.testing.CapturingLogger()).run()
    assert {(r.step_key, r.cached) for r in results.values()} == {(None, False)}


def test_module_doctests() -> None:
    failures, tests = doctest.testmod(_journal)
    assert tests > 0
    assert failures == 0
