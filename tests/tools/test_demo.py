"""``vector-trainer demo`` end to end (short), with the local Prometheus when installed and without it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from stream.tools import demo
from stream.tools.prometheus import prometheus_binary

pytestmark = pytest.mark.broker


def test_demo_runs_prometheus_next_to_the_processor_and_reports_promql(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing in CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("prometheus not installed")
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "demo", "--duration", "4", "--rate", "200", "--state-dir", str(tmp_path / "demo"),
         "--metrics-port", "0", "--console-port", "0"],
        capture_output=True, text=True, timeout=240,
        env={**{k: v for k, v in os.environ.items() if k != "VT_CONSOLE_TOKEN"}, "COLUMNS": "200"},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert re.search(r"Prometheus at http://127\.0\.0\.1:\d+ scraping the processor", out)
    assert "PromQL on the demo's Prometheus" in out
    assert re.search(r"web console at http://127\.0\.0\.1:\d+/, read-only", out), out[-3000:]
    consumed = re.search(r"executions=(\d+)", out)
    assert consumed and int(consumed.group(1)) > 500, out[-3000:]
    assert re.search(r"anomaly=\d+, steady=\d+", out)
    assert "every event was processed" in out


def test_without_prometheus_the_demo_goes_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(demo, "prometheus_binary", lambda: None)
    console = Console(record=True, width=120, file=io.StringIO())
    assert demo._start_prometheus(tmp_path, 9464, console) is None
    assert "prometheus is not installed (apt-get install prometheus): running without it" in console.export_text()
