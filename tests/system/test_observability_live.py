"""Every PromQL expression of the dashboards and alert rules, against a real Prometheus scraping a real processor.

One module-wide pipeline: the embedded broker, ``vector-trainer run`` as its own
process (all three engines; engine 3 with trainer=openai on the OpenAI-compatible
loopback server of tests/fake_openai.py, driven by the real openai SDK), generated
traffic (clustered requests, feedback, broken events), and Debian's ``prometheus``
scraping the processor every second with deploy/alerts.yml loaded.  One function's
fine-tuning job succeeds (losses, a model) and another's is scripted to fail, so
the training series exist because things happened, not because of a fixture.

Then: every alert rule must be loaded healthy, its expression valid, and every series
it reads must exist; every dashboard query (template variables substituted) must be
valid and return at least one finite value.  The values are printed (``pytest -s``).
The same pipeline feeds the tests of ``vector-trainer top`` and ``vector-trainer plot``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from stream.cli import app
from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker, free_port
from stream.tools.dashboards import all_dashboards, expressions
from stream.tools.prometheus import PrometheusServer, prometheus_binary
from stream.tools.scrape import Scrape
from stream.tools.top import Snapshot, render
from stream.tools.traffic import DEMO_FUNCTIONS, ROUTE_TICKET, TrafficGenerator, produce_traffic
from tests.support import ROOT
from tests.support.fake_openai import FakeOpenAI
from tests.support.promql_selectors import selectors

pytestmark = pytest.mark.broker

ALERTS = ROOT / "deploy" / "alerts.yml"
KEY = "sk-live-observability-SECRET-0a1b2c3d"
# A second function shaped like route_ticket (twenty kinds of request), so two functions
# collect enough golden samples to train: one job succeeds, the other's is scripted to fail.
TRIAGE = dataclasses.replace(ROUTE_TICKET, name="triage_ticket", dim=40)
FUNCTIONS = (*DEMO_FUNCTIONS, TRIAGE)
SUCCEEDS, FAILS = ROUTE_TICKET.name, TRIAGE.name
EVENTS = 3600
# Grafana's own variables, as Grafana would fill them for a dashboard over the last hour.
GRAFANA_VARS = {"$__rate_interval": "2m", "$__interval": "15s", "$__range": "1h", "$function": ".*"}


@dataclass
class Live:
    metrics_url: str
    prometheus: PrometheusServer
    state_dir: Path
    bootstrap: str
    prefix: str
    openai: FakeOpenAI
    sent: int
    evaluated_at: float


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback
            return resp.status == 200
    except OSError:
        return False


def _wait(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the processor exited ({proc.returncode}) waiting for {what}: {log.read_text()[-3000:] if log else ''}")
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"; log tail: {log.read_text()[-3000:]}" if log else ""))


def _scrape(url: str) -> Scrape | None:
    try:
        return Scrape.fetch(url)
    except OSError:
        return None


@pytest.fixture(scope="module")
def live(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if prometheus_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing in CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("observability")
    tag = uuid.uuid4().hex[:8]
    prefix = f"o{tag}."
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    log = work / "processor.log"
    with FakeOpenAI(api_key=KEY) as openai:
        openai.scripts[FAILS] = "fail_after_step"
        env = {
            **os.environ,
            "OPENAI_API_KEY": KEY,
            "VT_LOG_LEVEL": "INFO",
            "VT_TRAINING_TRAINER": "openai",
            "VT_TRAINING_OPENAI_BASE_URL": openai.base_url,
            "VT_TRAINING_THRESHOLD": "15",
            "VT_TRAINING_EPOCHS": "2",
            "VT_TRAINING_POLL_INITIAL_S": "0.05",
            "VT_TRAINING_POLL_MAX_S": "0.2",
            "VT_RUNTIME_CHECKPOINT_INTERVAL_S": "1",
            "VT_RUNTIME_POLL_TIMEOUT_MS": "200",
        }
        cmd = [sys.executable, "-m", "stream.cli", "run", "--bootstrap", broker.bootstrap, "--topic-prefix", prefix,
               "--group-id", f"g{tag}", "--state-dir", str(work / "state"), "--metrics-port", str(port)]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        prom = PrometheusServer(work / "prometheus", [f"127.0.0.1:{port}"], rule_files=[ALERTS])
        try:
            prom.start()  # while the processor starts
            _wait(lambda: _http_ok(f"http://127.0.0.1:{port}/ready"), 60, "the processor to be ready", proc, log)
            prom.wait_scraped()  # so the run below is seen from its start, scrape by scrape
            gen = TrafficGenerator(seed=11, functions=FUNCTIONS, bad_ratio=0.02, feedback_ratio=0.1)
            names = TopicNames(prefix)
            sent = asyncio.run(produce_traffic(broker.bootstrap, names.physical, _take(gen.stream(), EVENTS)))

            def settled() -> bool:
                s = _scrape(metrics_url)
                return (s is not None and s.total("vt_events_consumed_total", topic="executions") + s.total("vt_events_consumed_total", topic="feedback") >= sent
                        and s.total("vt_consumer_lag_records") == 0
                        and s.total("vt_training_jobs_total", function=SUCCEEDS, status="succeeded") >= 1
                        and s.total("vt_training_jobs_total", function=FAILS, status="failed") >= 1
                        and bool(s.select("vt_hook_version")))

            _wait(settled, 90, "traffic processed, one job succeeded, one failed, a hook released", proc, log)
            # Prometheus has the final values once two scrapes after that have happened.
            time.sleep(2.5)
            yield Live(metrics_url, prom, work / "state", broker.bootstrap, prefix, openai, sent, time.time())
        finally:
            prom.stop()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            text = log.read_text(errors="replace") if log.exists() else ""
            assert KEY not in text, "the API key must never be logged"


def _take(it: Iterator[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(it):
        if i >= n:
            return
        yield item


def _query(live: Live, expr: str) -> dict[str, Any]:
    return live.prometheus.query(expr, at=live.evaluated_at)


def _summary(result: list[dict[str, Any]], limit: int = 6) -> str:
    """A short rendering of an instant vector: 'n series: {labels}=value, ...'."""
    parts = []
    for r in result[:limit]:
        labels = ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items()) if k not in ("job", "instance"))
        parts.append(f"{{{labels}}}={float(r['value'][1]):.4g}")
    more = f" (+{len(result) - limit} more)" if len(result) > limit else ""
    return f"{len(result)} series: " + " ".join(parts) + more


def test_every_alert_rule_is_healthy_and_reads_only_series_that_exist(live: Live) -> None:
    groups = live.prometheus.api("rules")["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    wanted = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert set(loaded) == {r["alert"] for r in wanted}
    lines, problems = [], []
    for rule in wanted:
        name, expr = rule["alert"], rule["expr"]
        if loaded[name]["health"] != "ok":
            problems.append(f"{name}: rule health {loaded[name]['health']}: {loaded[name].get('lastError')}")
        res = _query(live, expr)
        if res.get("status") != "success":
            problems.append(f"{name}: invalid: {res.get('error')}")
            continue
        value = _summary(res["data"]["result"]) if res["data"]["result"] else "empty (not firing)"
        lines.append(f"{name:38} expr -> {value}; state {loaded[name]['state']}")
        sels = selectors(expr)
        assert sels, f"{name}: found no selector in {expr!r}"
        for sel in sels:
            got = _query(live, f"count({sel})")
            n = int(float(got["data"]["result"][0]["value"][1])) if got.get("status") == "success" and got["data"]["result"] else 0
            lines.append(f"{'':38}   {sel}: {n} series")
            if n == 0:
                problems.append(f"{name}: {sel} has no series")
    print("\nalert rules on a live processor (evaluated at the end of the run):\n" + "\n".join(lines))
    assert not problems, "\n".join(problems)


def _substitute(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown template variable left in {expr!r}"
    return expr


def test_every_dashboard_panel_query_returns_data(live: Live) -> None:
    lines, problems, count = [], [], 0
    for d in all_dashboards():
        model = d.to_json()
        lines.append(f"[{model['title']}]")
        for title, ref, expr in expressions(model):
            count += 1
            res = _query(live, _substitute(expr))
            if res.get("status") != "success":
                problems.append(f"{d.uid} / {title} / {ref}: invalid: {res.get('error')}")
                continue
            result = res["data"]["result"]
            finite = [r for r in result if math.isfinite(float(r["value"][1]))]
            lines.append(f"  {title} [{ref}] -> {_summary(finite) if finite else 'NO FINITE VALUE'}")
            if not finite:
                problems.append(f"{d.uid} / {title} / {ref}: no data ({len(result)} series, none finite): {expr}")
        for var in model["templating"]["list"]:
            if var["type"] == "query":  # label_values(metric, label)
                metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["definition"]).groups()
                values = live.prometheus.api(f"label/{label}/values", **{"match[]": metric})["data"]
                lines.append(f"  variable ${var['name']} = {values}")
                if set(values) < {SUCCEEDS, FAILS}:
                    problems.append(f"{d.uid}: variable {var['name']} lists {values}")
    print(f"\ndashboard queries on a live processor ({count} queries, {GRAFANA_VARS}):\n" + "\n".join(lines))
    assert count >= 40
    assert not problems, "\n".join(problems)


def test_a_broken_expression_would_be_caught(live: Live) -> None:
    """The checks above can fail: an unknown metric has no series, bad syntax is an error."""
    assert _query(live, "count(vt_no_such_metric_total)")["data"]["result"] == []
    assert _query(live, "sum(rate(vt_events_consumed_total[2m])")["status"] == "error"
    assert selectors('sum by (topic) (rate(vt_dead_letters_total{reason="x"}[5m])) / on (topic) vt_up') == [
        'vt_dead_letters_total{reason="x"}', "vt_up"]


def test_top_renders_the_live_processor(live: Live) -> None:
    first = Snapshot(Scrape.fetch(live.metrics_url), time.monotonic() - 2.0)
    now = Snapshot(Scrape.fetch(live.metrics_url), time.monotonic())
    console = Console(record=True, width=220, color_system=None, file=io.StringIO())
    console.print(render(live.metrics_url, now, first))
    text = console.export_text()
    print("\n" + text)
    s = now.scrape
    assert "consuming" in text and live.metrics_url in text
    for fn in {spec.name for spec in FUNCTIONS}:
        assert fn in text
    version = max(x.value for x in s.select("vt_hook_version"))
    assert f"v{version:.0f}" in text
    consumed = s.total("vt_events_consumed_total", topic="executions")
    assert f"{consumed:,.0f}" in text
    row = next(line for line in text.splitlines() if f" {SUCCEEDS} " in line)
    assert "succeeded 1" in row
    loss = s.select("vt_training_loss", function=SUCCEEDS, split="train")[0].value
    assert f"{loss:.3f}" in row
    golden = s.select("vt_golden_samples", function=SUCCEEDS, strategy="steady")[0].value
    assert f" {golden:,.0f} " in row
    assert "failed 1" in next(line for line in text.splitlines() if f" {FAILS} " in line)
    assert "dead letters by reason:" in text
    down = Console(record=True, width=120, color_system=None, file=io.StringIO())
    down.print(render("http://127.0.0.1:1/metrics", None, None, "connection refused"))
    assert "cannot read http://127.0.0.1:1/metrics: connection refused" in down.export_text()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and zlib.crc32(data[12:16 + length]) == struct.unpack(">I", data[16 + length:20 + length])[0]
    return struct.unpack(">II", data[16:24])


def test_plot_draws_the_live_checkpoint_and_the_loss_curves(live: Live, tmp_path_factory: pytest.TempPathFactory) -> None:
    import matplotlib.image

    from stream.tools.plot import load_points

    out = tmp_path_factory.mktemp("plots")
    result = CliRunner().invoke(app, [
        "plot", "--state-dir", str(live.state_dir), "--bootstrap", live.bootstrap, "--topic-prefix", live.prefix, "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted([*(f"density-{spec.name}.png" for spec in FUNCTIONS), "training-loss.png"])
    for path in out.glob("*.png"):
        w, h = _png_size(path)
        assert w >= 600 and h >= 400
        pixels = matplotlib.image.imread(path)
        assert pixels.std() > 0.05, f"{path.name} is blank"
    points = load_points(live.state_dir, SUCCEEDS)
    assert len(points.density) > 100 and (points.strategy == "steady").sum() >= 15
    assert points.density.max() > points.density.min()
    print(f"\nPNG files in {out}: {names}")
    keep = os.environ.get("VT_KEEP_PLOTS")
    if keep:
        import shutil

        shutil.copytree(out, keep, dirs_exist_ok=True)
