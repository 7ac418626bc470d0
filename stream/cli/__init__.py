"""The ``vector-trainer`` command line.

Each command is a thin call into the module that does the work.  Settings come
from ``VT_*`` environment variables and the flags below (flags win); see
``vector-trainer config`` for every setting and its variable.  One module per
area registers its commands on the shared root app.
"""

from __future__ import annotations

import sys

from . import console, core, hooks, observability, tools, train  # noqa: F401  (they register their commands)
from .common import app

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
