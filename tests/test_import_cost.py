"""``import flowplan`` stays light: optional and heavy dependencies load when a feature needs them.

Each check runs in a fresh interpreter (``sys.modules`` of this test process holds everything
the rest of the suite imported), and every optional dependency is installed in the test
environment, so an eager import anywhere in the package would show.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Not imported by `import flowplan` (nor by anything it imports) until a feature needs them.
HEAVY = (
    "networkx",
    "rich",
    "sqlite3",
    "multiprocessing",
    "concurrent.futures.process",
    "distributed",
    "dask",
    "beartype",
    "cloudpickle",
    "cattrs",
    "opentelemetry",
    "structlog",
)


def _loaded_after(code: str) -> set[str]:
    """The names of ``HEAVY`` in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_all_heavy_dependencies_are_installed_here() -> None:
    # Otherwise the absence checks below would pass for the wrong reason.
    loaded = _loaded_after(
        "import importlib\nfor name in " + repr(HEAVY) + ": importlib.import_module(name)\n"
    )
    assert loaded == set(HEAVY)


def test_import_flowplan_imports_no_heavy_dependency() -> None:
    assert _loaded_after("import flowplan") == set()


_TWO_TASKS = textwrap.dedent(
    """
    import flowplan

    @flowplan.task
    def one() -> int:
        return 1

    @flowplan.task(depends_on=[one])
    def two(one: int) -> int:
        return one + 1
    """
)


def test_public_names_and_a_run_stay_light() -> None:
    # Reading every public name, declaring tasks, building a graph (edge types unchecked: that
    # is beartype's job) and running it in memory import nothing heavy.
    code = _TWO_TASKS + textwrap.dedent(
        """
        import flowplan.store
        for name in flowplan.__all__:
            getattr(flowplan, name)
        for name in ("JournalStore", "MemoryStore", "JsonSerializer", "PickleSerializer"):
            getattr(flowplan.store, name)
        graph = flowplan.TaskGraph.from_terminals(two, check_types=False)
        snapshot = flowplan.execute(flowplan.plan(graph), store=flowplan.MemoryStore())
        assert snapshot.value(two) == 2, snapshot
        """
    )
    assert _loaded_after(code) == set()


@pytest.mark.parametrize(
    ("code", "needed"),
    [
        ("import flowplan, os\nflowplan.SqliteCache(os.path.join({tmp!r}, 'c.db'))", "sqlite3"),
        ("from flowplan.store import SqliteStateStore", "sqlite3"),
        ("from flowplan.store import RunInfo", "sqlite3"),
        ("import flowplan\nflowplan.StructlogHook()", "structlog"),
        (_TWO_TASKS + "flowplan.TaskGraph.from_terminals(two)", "beartype"),
        (
            "import flowplan\ndef one() -> int: return 1\nflowplan.Flow(flowplan.task(one))",
            "structlog",
        ),
        ("import flowplan\nflowplan.ProcessExecutor(1).shutdown()", "multiprocessing"),
    ],
)
def test_a_feature_imports_what_it_needs(code: str, needed: str, tmp_path: object) -> None:
    assert needed in _loaded_after(code.format(tmp=str(tmp_path)))


def test_a_process_pool_is_still_recognised_as_remote() -> None:
    # `is_remote` no longer imports concurrent.futures.process; a pool made after
    # `import flowplan` is still recognised.
    code = """
        import flowplan
        from flowplan._remote import is_remote
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
        with ProcessPoolExecutor(max_workers=1) as pool:
            assert is_remote(pool)
        with ThreadPoolExecutor(max_workers=1) as threads:
            assert not is_remote(threads)
    """
    assert "concurrent.futures.process" in _loaded_after(code)
