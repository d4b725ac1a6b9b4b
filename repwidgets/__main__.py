"""``python -m repwidgets ...``: the ``repwidgets`` command (what torchrun's ``-m`` runs)."""

import sys

from repwidgets.cli import main

if __name__ == "__main__":
    sys.exit(main())
