"""Tests for flowplan.keys: step keys must track behaviour, not cosmetics."""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowplan import keys
from flowplan.errors import SerializationError
from flowplan.keys import code_fingerprint, step_key

MODULE_NAME = "flowplan_keys_edited"


def _load(tmp_path: Path, source: str) -> types.ModuleType:
    """Write ``source`` to a fresh directory under tmp_path and import it (simulated edit)."""
    directory = tmp_path / f"edit{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    path = directory / "edited.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fn(module: types.ModuleType, name: str = "task") -> Callable[..., object]:
    fn = getattr(module, name)
    assert callable(fn)
    return fn  # type: ignore[no-any-return]


def _fp(tmp_path: Path, source: str, name: str = "task") -> str:
    return code_fingerprint(_fn(_load(tmp_path, source), name))


BASE = """
SCALE = 3

def helper_of_helper(v):
    return v * 2

def helper(v):
    return helper_of_helper(v) + 1

def task(x, y=1, *, z=(1, 2)):
    inner = lambda q: q + 10
    return helper(x) * SCALE + inner(y) + z[0]
"""


def test_same_function_same_key(tmp_path: Path) -> None:
    module = _load(tmp_path, BASE)
    first = code_fingerprint(_fn(module))
    assert first == code_fingerprint(_fn(module))
    assert first == _fp(tmp_path, BASE)
    assert len(first) == 64
    int(first, 16)
    keys = {step_key(_fn(module), dep_keys={"a": "k"}) for _ in range(3)}
    assert len(keys) == 1


def test_rename_keeps_key(tmp_path: Path) -> None:
    renamed = BASE.replace("def task(", "def renamed_task(")
    assert _fp(tmp_path, BASE) == _fp(tmp_path, renamed, "renamed_task")


def test_moving_and_docstring_edits_keep_key(tmp_path: Path) -> None:
    moved = "\n\n\n# a comment\n\ndef unrelated():\n    return 0\n\n\n" + BASE
    assert _fp(tmp_path, BASE) == _fp(tmp_path, moved)
    with_doc = BASE.replace("z=(1, 2)):\n", 'z=(1, 2)):\n    """Old words."""\n')
    edited_doc = with_doc.replace("Old words.", "New, longer words.")
    assert _fp(tmp_path, with_doc) == _fp(tmp_path, edited_doc)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("z[0]", "z[1]", id="constant"),
        pytest.param("* SCALE +", "* SCALE -", id="operator"),
        pytest.param("y=1,", "y=2,", id="default"),
        pytest.param("z=(1, 2)", "z=(1, 3)", id="kw-default"),
        pytest.param("q + 10", "q + 11", id="lambda-constant"),
        pytest.param(
            "return helper_of_helper(v) + 1", "return helper_of_helper(v) + 2", id="helper"
        ),
        pytest.param("return v * 2", "return v * 4", id="helper-of-helper"),
        pytest.param("SCALE = 3", "SCALE = 4", id="module-constant"),
        pytest.param("SCALE = 3", "SCALE = 3.0", id="constant-type"),
        pytest.param("SCALE = 3", "SCALE = (3,)", id="constant-tuple"),
        pytest.param("return v * 2", "return v * 2.0", id="int-vs-float"),
    ],
)
def test_behaviour_changes_change_key(tmp_path: Path, old: str, new: str) -> None:
    assert old in BASE
    assert _fp(tmp_path, BASE) != _fp(tmp_path, BASE.replace(old, new))


def test_nested_function_constant_changes_key(tmp_path: Path) -> None:
    source = """
    def task(x):
        def nested(v):
            return [v * k for k in range(3)]
        return nested(x)
    """
    assert _fp(tmp_path, source) != _fp(tmp_path, source.replace("range(3)", "range(4)"))
    assert _fp(tmp_path, source) != _fp(tmp_path, source.replace("v * k", "v + k"))


def test_closure_contents_change_key(tmp_path: Path) -> None:
    source = """
    def plus_one(v):
        return v + 1

    def make(n, fn):
        def task(x):
            return fn(x) + n
        return task

    task = make(1, plus_one)
    """
    base = _fp(tmp_path, source)
    assert base == _fp(tmp_path, source)
    assert base != _fp(tmp_path, source.replace("make(1,", "make(2,"))
    assert base != _fp(tmp_path, source.replace("v + 1", "v + 5"))


def _closing_over(value: object) -> Callable[[], object]:
    def body() -> object:
        return value

    return body


def test_closure_cells_count_like_globals() -> None:
    """Simple values by value, callables by code, anything else (state, clients) by type."""
    key = code_fingerprint
    counter: dict[str, int] = {"calls": 0}
    before = key(_closing_over(counter))
    counter["calls"] += 1  # the task mutates state it captured: its behaviour did not change
    assert key(_closing_over(counter)) == before
    assert key(_closing_over({"other": 5})) == before  # another dict: same type, same key
    assert key(_closing_over([1])) == key(_closing_over([2, 3]))
    assert key(_closing_over([1])) != before  # a list is not a dict
    client = types.SimpleNamespace(url="a")
    assert key(_closing_over(client)) == key(_closing_over(types.SimpleNamespace(url="b")))
    # simple immutable values count by value
    assert key(_closing_over(1)) != key(_closing_over(2))
    assert key(_closing_over((1, "a"))) != key(_closing_over((1, "b")))
    assert key(_closing_over(frozenset({1}))) != key(_closing_over(frozenset({2})))
    assert key(_closing_over(SerializationError)) != key(_closing_over(ValueError))
    # callables count by their code
    assert key(_closing_over(lambda: 1)) != key(_closing_over(lambda: 2))
    assert key(_closing_over(lambda: 1)) == key(_closing_over(lambda: 1))


def test_globals_count_like_closure_cells(tmp_path: Path) -> None:
    source = """
    import enum

    class Mode(enum.Enum):
        FAST = 1
        SLOW = 2

    MODE = Mode.FAST
    STATE = {"calls": 0}

    def task(x):
        STATE["calls"] += 1
        return x if MODE is Mode.FAST else -x
    """
    module: Any = _load(tmp_path, source)
    before = code_fingerprint(_fn(module))
    module.STATE["calls"] = 99  # state it mutates: not behaviour
    assert code_fingerprint(_fn(module)) == before
    module.STATE = {"another": "dict"}
    assert code_fingerprint(_fn(module)) == before
    module.STATE = ["a", "list"]  # another type
    assert code_fingerprint(_fn(module)) != before
    module.STATE = {"calls": 0}
    module.MODE = module.Mode.SLOW  # an enum member counts by value
    assert code_fingerprint(_fn(module)) != before


def test_mutual_recursion_terminates_and_tracks_changes(tmp_path: Path) -> None:
    source = """
    def is_even(n):
        return True if n == 0 else is_odd(n - 1)

    def is_odd(n):
        return False if n == 0 else is_even(n - 1)

    def task(n):
        return is_even(n) and fact(n) > 0

    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)
    """
    module = _load(tmp_path, source)
    assert code_fingerprint(_fn(module)) == _fp(tmp_path, source)
    assert code_fingerprint(_fn(module, "is_even")) != code_fingerprint(_fn(module, "is_odd"))
    changed = source.replace("False if n == 0", "n == 1 or False if n == 0")
    assert _fp(tmp_path, source) != _fp(tmp_path, changed)
    assert _fp(tmp_path, source) != _fp(tmp_path, source.replace("n * fact", "n + fact"))


def test_version_wins_over_code(tmp_path: Path) -> None:
    old = _fn(_load(tmp_path, BASE))
    new = _fn(_load(tmp_path, BASE.replace("q + 10", "q + 99")))
    deps = {"upstream": "abc"}
    assert step_key(old, dep_keys=deps, version="1") == step_key(new, dep_keys=deps, version="1")
    assert step_key(old, dep_keys=deps, version="1") != step_key(old, dep_keys=deps, version="2")
    assert step_key(old, dep_keys=deps) != step_key(new, dep_keys=deps)
    assert step_key(old, dep_keys=deps, version="1") != step_key(old, dep_keys=deps)


def test_dep_keys_change_key(tmp_path: Path) -> None:
    fn = _fn(_load(tmp_path, BASE))
    base = step_key(fn, dep_keys={"a": "k1", "b": "k2"})
    assert base == step_key(fn, dep_keys={"b": "k2", "a": "k1"})
    assert base != step_key(fn, dep_keys={"a": "k1", "b": "k3"})
    assert base != step_key(fn, dep_keys={"a": "k1", "c": "k2"})
    assert base != step_key(fn, dep_keys={"a": "k1"})
    assert step_key(fn, dep_keys={"ab": "c"}) != step_key(fn, dep_keys={"a": "bc"})


SETS = """
def task(x, allowed={"alpha", "beta", "gamma", "delta"}, opts={"k1": 1, "k2": (2, 3)}):
    if x in {"one", "two", "three", "four", "five"}:
        return sorted({"p", "q", "r", "s"} | allowed), opts
    return {"m": frozenset({1.5, "x", b"y"})}
"""


def test_set_literals_ignore_source_order(tmp_path: Path) -> None:
    reordered = (
        SETS.replace('"alpha", "beta", "gamma", "delta"', '"delta", "gamma", "beta", "alpha"')
        .replace('"one", "two", "three", "four", "five"', '"five", "three", "one", "four", "two"')
        .replace('"p", "q", "r", "s"', '"s", "r", "q", "p"')
    )
    assert _fp(tmp_path, SETS) == _fp(tmp_path, reordered)
    assert _fp(tmp_path, SETS) != _fp(tmp_path, SETS.replace('"k2": (2, 3)', '"k2": (2, 4)'))


@pytest.mark.slow
def test_key_stable_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    module_path = tmp_path / "shared.py"
    module_path.write_text(textwrap.dedent(BASE + SETS.replace("def task", "def task2")))
    module_path.write_text(
        module_path.read_text() + "\ndef both(x):\n    return task(x), task2(x)\n"
    )
    script = textwrap.dedent(
        """
        import importlib.util, sys
        from flowplan.keys import step_key
        spec = importlib.util.spec_from_file_location(sys.argv[1], sys.argv[2])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(step_key(module.both, dep_keys={"b": "k2", "a": "k1"}))
        """
    )
    spec = importlib.util.spec_from_file_location(MODULE_NAME, module_path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = step_key(_fn(module, "both"), dep_keys={"a": "k1", "b": "k2"})
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script, MODULE_NAME, str(module_path)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert result.stdout.strip() == expected, result.stderr


def test_partial_is_unwrapped_structurally(tmp_path: Path) -> None:
    fn = _fn(_load(tmp_path, BASE))
    same = code_fingerprint(functools.partial(fn, 1, z=(5,)))
    assert same == code_fingerprint(functools.partial(fn, 1, z=(5,)))
    assert same != code_fingerprint(functools.partial(fn, 2, z=(5,)))
    assert same != code_fingerprint(functools.partial(fn, 1, z=(6,)))
    assert same != code_fingerprint(fn)
    other = _fn(_load(tmp_path, BASE.replace("q + 10", "q + 12")))
    assert same != code_fingerprint(functools.partial(other, 1, z=(5,)))


METHODS = """
import functools

class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, x):
        return x * self.factor

    def __call__(self, x):
        return x - self.factor

def deco(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)
    return wrapper

@deco
def task(x):
    return x + 1
"""


def test_bound_methods_callables_and_wrapped(tmp_path: Path) -> None:
    module = _load(tmp_path, METHODS)
    scaler_cls = module.Scaler
    bound = scaler_cls(2).apply
    assert code_fingerprint(bound) == code_fingerprint(scaler_cls.apply)
    assert code_fingerprint(bound) == code_fingerprint(scaler_cls(7).apply)
    assert code_fingerprint(scaler_cls(2)) == code_fingerprint(scaler_cls.__call__)
    assert code_fingerprint(_fn(module)) == code_fingerprint(_fn(module).__wrapped__)  # type: ignore[attr-defined]

    edited = _load(tmp_path, METHODS.replace("x * self.factor", "x ** self.factor"))
    assert code_fingerprint(bound) != code_fingerprint(edited.Scaler(2).apply)
    assert code_fingerprint(scaler_cls(2)) == code_fingerprint(edited.Scaler(2))
    assert code_fingerprint(_fn(module)) != _fp(tmp_path, METHODS.replace("x + 1", "x + 2"))


def test_builtins_use_qualified_names() -> None:
    assert code_fingerprint(len) == code_fingerprint(len)
    assert code_fingerprint(len) != code_fingerprint(abs)
    assert code_fingerprint([].append) == code_fingerprint([1].append)
    assert code_fingerprint([].append) != code_fingerprint(set().add)


def test_replaced_code_is_not_served_stale(tmp_path: Path) -> None:
    module = _load(tmp_path, BASE)
    fn = _fn(module)
    assert isinstance(fn, types.FunctionType)
    before = code_fingerprint(fn)
    edited = _fn(_load(tmp_path, BASE.replace("q + 10", "q + 20")))
    assert isinstance(edited, types.FunctionType)
    fn.__code__ = edited.__code__
    assert code_fingerprint(fn) == code_fingerprint(edited) != before


def test_opaque_defaults_do_not_leak_addresses(tmp_path: Path) -> None:
    source = """
    import pathlib

    SENTINEL = object()

    def task(x, marker=object(), where=pathlib.PurePosixPath("a/b")):
        return x is SENTINEL or x is marker, where
    """
    assert _fp(tmp_path, source) == _fp(tmp_path, source)
    assert _fp(tmp_path, source) != _fp(tmp_path, source.replace('"a/b"', '"a/c"'))


class _NoStore(dict[types.FunctionType, tuple[types.CodeType, set[types.FunctionType], str]]):
    def __setitem__(
        self, key: types.FunctionType, value: tuple[types.CodeType, set[types.FunctionType], str]
    ) -> None:
        pass


def test_per_call_cache_is_transparent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = """
    def a(n): return b(n) + c(n) + d(n)
    def b(n): return c(n) * a(n - 1) + e(n)
    def c(n): return d(n) - 1 + c(n - 1)
    def d(n): return b(n) or e(n)
    def e(n): return 7 + f(n)
    def f(n): return e(n) + g(n)
    def g(n): return 2
    def task(n): return a(n) + c(n) + e(n) + d(n) + g(n)
    """
    module = _load(tmp_path, source)
    names = ["a", "b", "c", "d", "e", "f", "g", "task"]
    cached = [code_fingerprint(_fn(module, name)) for name in names]
    assert len(set(cached)) == len(names)

    class UncachedCtx(keys._Ctx):
        def __init__(self) -> None:
            super().__init__()
            self.cache = _NoStore()

    monkeypatch.setattr(keys, "_Ctx", UncachedCtx)
    assert [code_fingerprint(_fn(module, name)) for name in names] == cached


def test_diamond_helper_graph_stays_fast_and_sensitive(tmp_path: Path) -> None:
    layers, width = 12, 3
    lines = [f"def h{layers}_{i}(n):\n    return n + {i}\n" for i in range(width)]
    for layer in range(layers - 1, -1, -1):
        for i in range(width):
            calls = " + ".join(f"h{layer + 1}_{j}(n)" for j in range(width))
            lines.append(f"def h{layer}_{i}(n):\n    return {calls}\n")
    source = "\n".join(lines)
    base = _fp(tmp_path, source, "h0_0")  # 3**12 paths: only feasible with the cache
    assert base != _fp(tmp_path, source.replace("return n + 2", "return n + 5"), "h0_0")


# -- keys with named parts (result cache) ------------------------------------------------------
def _parts(tmp_path: Path, source: str, version: str | None = None) -> dict[str, str]:
    return keys.code_parts(_fn(_load(tmp_path, source)), version=version)


def test_code_parts_name_each_helper_and_exclude_defaults(tmp_path: Path) -> None:
    parts = _parts(tmp_path, BASE)
    assert set(parts) == {"code", "helper:helper"}  # SCALE is a constant of the code part
    helper_edit = _parts(tmp_path, BASE.replace("return v * 2", "return v * 3"))
    assert helper_edit["code"] == parts["code"]
    assert helper_edit["helper:helper"] != parts["helper:helper"]  # a helper of a helper
    default_edit = _parts(tmp_path, BASE.replace("y=1", "y=2"))
    assert default_edit == parts  # defaults are inputs, fingerprinted by value elsewhere
    body_edit = _parts(tmp_path, BASE.replace("+ z[0]", "- z[0]"))
    assert body_edit["code"] != parts["code"]
    assert body_edit["helper:helper"] == parts["helper:helper"]
    assert _parts(tmp_path, BASE.replace("SCALE = 3", "SCALE = 4"))["code"] != parts["code"]


def test_code_parts_with_a_version_have_one_part(tmp_path: Path) -> None:
    parts = _parts(tmp_path, BASE, version="7")
    assert set(parts) == {"version"}
    assert _parts(tmp_path, BASE.replace("return v * 2", "return 0"), version="7") == parts
    assert _parts(tmp_path, BASE, version="8") != parts


def test_code_parts_of_callables_that_are_not_plain_functions(tmp_path: Path) -> None:
    fn = _fn(_load(tmp_path, BASE))
    partial = functools.partial(fn, 1)
    assert keys.code_parts(partial) == {"code": code_fingerprint(partial)}

    @functools.wraps(fn)
    def wrapped(*args: object, **kwargs: object) -> object:
        return fn(*args, **kwargs)

    assert keys.code_parts(wrapped) == keys.code_parts(fn)


def test_value_fingerprints_are_structural_and_process_independent() -> None:
    value = {"ids": frozenset({"b", "a", "c"}), "when": (1, 2.5, None)}
    expected = keys.value_fingerprint(value)
    assert keys.value_fingerprint({"ids": frozenset({"c", "a", "b"}), "when": (1, 2.5, None)}) == (
        expected
    )
    assert keys.value_fingerprint((1, 2)) != keys.value_fingerprint([1, 2])  # types are kept
    assert keys.value_fingerprint(1) != keys.value_fingerprint(True)
    script = (
        "from flowplan.keys import value_fingerprint; "
        "print(value_fingerprint({'ids': frozenset({'b', 'a', 'c'}), 'when': (1, 2.5, None)}))"
    )
    for seed in ("0", "99"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        assert done.stdout.strip() == expected, done.stderr


def test_a_value_without_a_fingerprint_raises() -> None:
    with pytest.raises(SerializationError):
        keys.value_fingerprint(object())


def test_a_graphs_keys_equal_each_tasks_own_key(tmp_path: Path) -> None:
    """Sharing fingerprints across a graph's tasks (each function once) changes no key."""
    from flowplan import TaskGraph
    from flowplan.spec import Dependency, TaskSpec

    module = _load(
        tmp_path,
        """
        def is_even(n):
            return True if n == 0 else is_odd(n - 1)

        def is_odd(n):
            return False if n == 0 else is_even(n - 1)

        def first(**deps):
            return is_even(4)

        def second(**deps):
            return is_odd(3) and first()

        def third(**deps):
            return second() or is_odd(1)
        """,
    )
    specs = [TaskSpec("a", _fn(module, "first"))]
    specs.append(TaskSpec("b", _fn(module, "second"), deps=(Dependency("a"),)))
    specs.append(TaskSpec("c", _fn(module, "first"), deps=(Dependency("b"),), version="v2"))
    specs.append(TaskSpec("d", _fn(module, "third"), deps=(Dependency("a"), Dependency("c"))))
    graph = TaskGraph.build(specs, check_types=False)
    one_by_one: dict[str, str] = {}
    for name in graph.order:
        spec = graph.specs[name]
        deps = {d: one_by_one[d] for d in graph.predecessors[name]}
        one_by_one[name] = step_key(spec.fn, dep_keys=deps, version=spec.version)
    assert dict(graph.step_keys()) == one_by_one
