"""``python -m benchmarks``: run the core benchmark (see :mod:`benchmarks.core` for options)."""

from benchmarks.core import main

if __name__ == "__main__":
    raise SystemExit(main())
