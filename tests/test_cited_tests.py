"""Every test a guarantee cites (``test_x.py::test_name`` in README and docs) exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CITATION = re.compile(r"(test_\w+\.py)::(\w+)")


def _citations() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        for file, name in CITATION.findall(page.read_text(encoding="utf-8")):
            found.append((page.name, file, name))
    return found


def test_the_guarantees_cite_tests() -> None:
    assert len(_citations()) >= 40


@pytest.mark.parametrize(("page", "file", "name"), sorted(set(_citations())))
def test_a_cited_test_exists(page: str, file: str, name: str) -> None:
    path = ROOT / "tests" / file
    assert path.exists(), f"{page} cites {file}, which is not in tests/"
    source = path.read_text(encoding="utf-8")
    defined = re.search(
        rf"^(?:\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b|{re.escape(name)}\s*=)",
        source,
        re.M,
    )
    assert defined, f"{page} cites {file}::{name}, which {file} does not define"
