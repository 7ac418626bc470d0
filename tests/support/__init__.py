"""Fakes and helpers the tests import (fixtures stay in ``conftest.py``, which no test imports)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
