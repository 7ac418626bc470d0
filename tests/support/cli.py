"""Running ``vector-trainer`` as a user does: a subprocess of the installed entry point."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import ROOT


def vt(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
