"""``python -m flowplan``: the ``flowplan`` command (see :mod:`flowplan.cli`)."""

import sys

from flowplan.cli import main

if __name__ == "__main__":
    sys.exit(main())
