"""Run a markdown page's ```python blocks the way a reader copies them.

Each block runs on its own, in a fresh namespace, unless its first line says what it continues:

- ``# continues the example above``: it runs after the page's previous python block, in that
  block's namespace;
- ``# continues the "Heading" example``: it runs in the namespace the last python block under
  the section ``Heading`` (earlier on the page) left.

A block that uses a name from another block without saying so fails with ``NameError``, as it
would for a reader who copied it alone.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
_CONTINUES = re.compile(r'^#\s*continues the (?:example above|"(?P<heading>[^"]+)" example)\b')


@attrs.frozen
class Block:
    """One ```python block: the section it is under, its first line number, its code."""

    heading: str
    line: int
    code: str

    @property
    def continues(self) -> str | None:
        """``""`` for "the example above", a heading, or ``None`` (the block stands alone)."""
        first = self.code.lstrip("\n").split("\n", 1)[0]
        found = _CONTINUES.match(first)
        if found is None:
            return None
        return found.group("heading") or ""


def python_blocks(page: Path) -> list[Block]:
    """The page's ```python blocks, with the heading each is under (fences parsed properly,
    so a ``#`` comment inside a block is no heading)."""
    blocks: list[Block] = []
    heading = ""
    fence: str | None = None
    language = ""
    start = 0
    body: list[str] = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        found = _FENCE.match(line)
        if fence is None:
            if found:
                fence, language, start, body = found.group(1), found.group(2).strip(), number, []
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
            continue
        if found and found.group(1).startswith(fence) and not found.group(2).strip():
            if language == "python":
                blocks.append(Block(heading, start + 1, "\n".join(body) + "\n"))
            fence = None
            continue
        body.append(line)
    return blocks


def run_blocks(page: Path, module_prefix: str) -> Iterator[tuple[Block, dict[str, Any]]]:
    """Run each python block of ``page`` as a reader would; yield it with its namespace.

    Raises:
        AssertionError: a block continues a heading with no earlier python block.
        Exception: whatever a block raises (``NameError`` for an undeclared continuation).
    """
    previous: dict[str, Any] | None = None
    by_heading: dict[str, dict[str, Any]] = {}
    added: list[str] = []
    try:
        yield from _run(page, module_prefix, previous, by_heading, added)
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _run(
    page: Path,
    module_prefix: str,
    previous: dict[str, Any] | None,
    by_heading: dict[str, dict[str, Any]],
    added: list[str],
) -> Iterator[tuple[Block, dict[str, Any]]]:
    for index, block in enumerate(python_blocks(page)):
        continues = block.continues
        if continues is None:
            module = types.ModuleType(f"{module_prefix}_{index}")  # dataclasses look it up
            sys.modules[module.__name__] = module
            added.append(module.__name__)
            namespace: dict[str, Any] = module.__dict__
        elif continues == "":
            assert previous is not None, f"{page.name}:{block.line} continues no earlier block"
            namespace = previous
        else:
            assert continues in by_heading, (
                f"{page.name}:{block.line} continues {continues!r}, but no python block "
                f"comes earlier under that heading (headings: {sorted(by_heading)})"
            )
            namespace = by_heading[continues]
        padding = "\n" * (block.line - 1)  # tracebacks name the page's own line numbers
        exec(compile(padding + block.code, str(page), "exec"), namespace)
        previous = by_heading[block.heading] = namespace
        yield block, namespace
