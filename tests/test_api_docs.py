"""The API reference: every public name is documented, and the site covers every namespace."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api"
NAMESPACES = (
    "flowplan",
    "flowplan.attempt",
    "flowplan.cache",
    "flowplan.engine",
    "flowplan.errors",
    "flowplan.events",
    "flowplan.executors",
    "flowplan.observe",
    "flowplan.policies",
    "flowplan.simulate",
    "flowplan.store",
)


def _own_doc(obj: object) -> str:
    """``obj``'s own docstring (a class's is not inherited from a base)."""
    if inspect.isclass(obj):
        return (obj.__dict__.get("__doc__") or "").strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def _undocumented(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    missing = [] if _own_doc(module) else [module_name]
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj)):
            continue  # constants and type aliases: documented where they are defined
        if not _own_doc(obj):
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj) and obj.__module__.startswith("flowplan"):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not inspect.isfunction(member):
                    continue
                if not _own_doc(member):
                    missing.append(f"{module_name}.{name}.{attr}")
    return missing


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_public_name_has_a_docstring(namespace: str) -> None:
    assert _undocumented(namespace) == []


def test_the_reference_covers_every_namespace() -> None:
    covered = {
        match
        for page in API.glob("*.md")
        for match in re.findall(r"^::: ([\w.]+)$", page.read_text(encoding="utf-8"), re.M)
    }
    assert covered == set(NAMESPACES)
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in API.glob("*.md"):
        assert f"api/{page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name in nav, f"the guide page {page.name} is not in mkdocs.yml's nav"
