"""Peak memory of one large value through ``SqliteStateStore``: written by a run, read back.

Place: benchmarks (not collected by pytest). Each case runs in a fresh child process: a
one-task graph returns a value of ``--mb`` megabytes, ``execute`` saves it to a new SQLite
file, and a second store loads it back. The figure is the child's peak resident set
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over its peak before the run, divided by the
value's size — 1.0 means no copy beyond the value itself. Cases:

- **bytes**: a ``bytes`` value, stored as itself (no serializer) and streamed with blob I/O;
- **bytearray**: the same as a ``bytearray`` (one frozen copy is made when it is saved);
- **str**: a ``str`` value, through ``JsonSerializer`` then streamed;
- **nested bytes**: ``{"blob": bytes}`` — nested binary data still goes through JSON (base64),
  shown for contrast.

Run: ``python -m benchmarks.store_memory [--mb 100] [--commit-every 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

__all__ = ["CASES", "main", "measure"]

CASES = ("bytes", "bytearray", "str", "nested bytes")

_CHILD = """
import json, os, resource, sys

from flowplan import TaskGraph, execute, plan, task
from flowplan.store import SqliteStateStore

kind, size, db, commit_every = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])


def make():
    if kind == "bytes":
        return os.urandom(size)
    if kind == "bytearray":
        return bytearray(os.urandom(size))
    if kind == "str":
        return "x" * size
    return {"blob": os.urandom(size)}


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@task
def big():
    return make()


before = peak()
with SqliteStateStore(db, commit_every=commit_every) as store:
    run_id = execute(plan(TaskGraph.build([big])), store=store).run_id
written = peak()
with SqliteStateStore(db) as store:
    store.load(run_id)
print(json.dumps({"written": written - before, "read": peak() - before}))
"""


def measure(kind: str, mb: int, commit_every: int = 1) -> dict[str, float]:
    """Peak over the value's size after writing and after reading, in a child process."""
    size = mb << 20
    extra = [str(commit_every)]
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, kind, str(size), os.path.join(tmp, "runs.db"), *extra],
            capture_output=True,
            text=True,
            check=True,
        )
    seen = json.loads(done.stdout)
    return {"written": seen["written"] / size, "read": seen["read"] / size}


def main(argv: Sequence[str] | None = None) -> int:
    """Print each case's peak memory as a multiple of the value's size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=int, default=100, help="value size in megabytes")
    parser.add_argument("--commit-every", type=int, default=1, help="SqliteStateStore option")
    args = parser.parse_args(argv)
    print(f"Peak memory of one {args.mb} MB value (x value size; 1.0 = no extra copy)")
    print(f"{'value':<14}{'run + write':>12}{'+ read back':>13}")
    for kind in CASES:
        seen = measure(kind, args.mb, args.commit_every)
        print(f"{kind:<14}{seen['written']:>12.2f}{seen['read']:>13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
