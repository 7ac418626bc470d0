"""The floors are enforced: ``lint-imports`` (run by ``make test``) fails when an engine imports what it must not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # analyse the copy, not the installed packages
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for name in ("stream", "processors"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_an_engine_importing_prometheus_breaks_the_floors(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    kept = _lint(tree)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    engine = tree / "processors" / "density" / "engine.py"
    source = engine.read_text()
    engine.write_text(source.replace("import msgspec\n", "import msgspec\nimport prometheus_client  # noqa: F401\n", 1))
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "The engines are pure logic" in broken.stdout and "BROKEN" in broken.stdout
    assert "processors.density.engine -> prometheus_client" in broken.stdout


def test_the_contract_importing_the_runtime_breaks_the_floors(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    events = tree / "stream" / "contract" / "events.py"
    source = events.read_text()
    events.write_text(source.replace("import msgspec\n", "import msgspec\n\nimport stream.runtime.kafka  # noqa: F401\n", 1))
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "stream.contract.events -> stream.runtime.kafka" in broken.stdout
