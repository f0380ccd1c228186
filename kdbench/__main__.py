"""``python -m kdbench``: the same as the ``kdbench`` command."""

import sys

from kdbench.cli import main

sys.exit(main())
