"""Import time: ``import flowplan`` and ``import flowplan.engine`` beside ``import structlog``.

Place: benchmarks (not collected by pytest). Each figure is the wall time of the import
statement alone (``time.perf_counter`` around it) in a fresh interpreter (``python -c``; the
interpreter's own start-up is not counted), the median of ``repeat`` interpreters. The three
statements are measured in turn within each round, so a burst of load on a shared machine
hits them alike; the ratio column divides a median by ``import structlog``'s, which makes
figures from machines of different speed (or load) comparable.

``python -m benchmarks.imports [--repeat N] [--json PATH]``; ``python -m benchmarks`` prints the
same table after the core one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["STATEMENTS", "main", "measure_imports", "render_imports"]

# The reference last: it is what the other rows are divided by.
STATEMENTS: tuple[str, ...] = ("import flowplan", "import flowplan.engine", "import structlog")
REFERENCE = "import structlog"

_TIMER = """\
import time
started = time.perf_counter()
{statement}
print(time.perf_counter() - started)
"""


def _time_once(statement: str) -> float:
    """Seconds ``statement`` takes in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _TIMER.format(statement=statement)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{statement!r} failed in a fresh interpreter:\n{done.stderr}")
    return float(done.stdout.split()[-1])


def measure_imports(repeat: int = 9) -> list[dict[str, Any]]:
    """One row per statement: median, fastest and every sample (ms), and ratio to structlog's."""
    samples: dict[str, list[float]] = {statement: [] for statement in STATEMENTS}
    _time_once("import flowplan.engine, structlog")  # warm the file-system cache, untimed
    for _ in range(repeat):
        for statement in STATEMENTS:
            samples[statement].append(_time_once(statement) * 1000)
    reference = statistics.median(samples[REFERENCE])
    return [
        {
            "statement": statement,
            "median_ms": statistics.median(times),
            "fastest_ms": min(times),
            "ratio_to_structlog": statistics.median(times) / reference,
            "samples_ms": times,
        }
        for statement, times in samples.items()
    ]


def render_imports(rows: Sequence[dict[str, Any]], repeat: int) -> str:
    """The rows as a table."""
    lines = [
        f"Import time (fresh interpreter per sample, median of {repeat}; ms)",
        f"{'statement':<24} {'median':>8} {'fastest':>8} {'/ structlog':>12}",
    ]
    lines.extend(
        f"{row['statement']:<24} {row['median_ms']:>8.1f} {row['fastest_ms']:>8.1f} "
        f"{row['ratio_to_structlog']:>12.2f}"
        for row in rows
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the table (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.imports", description=__doc__)
    parser.add_argument("--repeat", type=int, default=9, help="interpreters per figure (median)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    rows = measure_imports(args.repeat)
    print(render_imports(rows, args.repeat))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
