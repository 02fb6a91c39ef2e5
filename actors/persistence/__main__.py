"""``python -m actors.persistence``: the journal inspection tool (see :mod:`._cli`)."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
