"""``make demo``: embedded broker + processor + realistic traffic + a summary.

The processor runs as its own process (``vector-trainer run``), exactly as a user
would start it; the demo produces traffic, shows progress from the processor's
/metrics endpoint, waits until every event is processed, then reads every topic
and prints what appeared.  When Debian's ``prometheus`` is installed, a local
Prometheus scrapes the processor (with deploy/alerts.yml when the checkout has it)
and the summary ends with a few PromQL answers from it; without it the demo runs
the same, minus that.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from stream.contract.topics import ALL, TopicNames
from stream.runtime.broker import EmbeddedBroker, free_port
from stream.runtime.kafka import ensure_topics, read_topic
from stream.tools.prometheus import PrometheusError, PrometheusServer, prometheus_binary
from stream.tools.scrape import Scrape
from stream.tools.summary import sections
from stream.tools.traffic import DEMO_FUNCTIONS, TrafficGenerator, produce_traffic


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _progress_table(sent: int, target: int, scrape: Scrape | None, elapsed: float) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("elapsed", f"{elapsed:5.0f} s")
    table.add_row("events sent", f"{sent} / ~{target}")
    if scrape is not None:
        table.add_row("consumed", f"{scrape.total('vt_events_consumed_total'):.0f}")
        table.add_row("dead letters", f"{scrape.total('vt_dead_letters_total'):.0f}")
        table.add_row("consumer lag", f"{scrape.total('vt_consumer_lag_records'):.0f}")
        produced = scrape.by("vt_events_produced_total", "topic")
        table.add_row("produced", ", ".join(f"{k}={v:.0f}" for k, v in sorted(produced.items())) or "-")
    return table


def run_demo(
    *, duration: float, rate: float, state_dir: Path, seed: int, metrics_port: int, console: Console, prometheus: bool = True,
    web_console: bool = True, console_port: int = 8080, keep: bool = False,
) -> int:
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    names = TopicNames()
    console.rule("[bold]vector-trainer demo")
    with EmbeddedBroker(log_file=state_dir / "broker.log") as broker:
        console.print(f"embedded broker (Tansu, memory-only) on [bold]{broker.bootstrap}[/bold]")
        asyncio.run(ensure_topics(broker.bootstrap, names, partitions=3))
        port = metrics_port if metrics_port and _port_free(metrics_port) else free_port()
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        proc_log = state_dir / "processor.log"
        env = {**os.environ, "VT_LOG_LEVEL": os.environ.get("VT_LOG_LEVEL", "INFO")}
        # Engine 3 in a one-minute demo: datasets are exported (no trainer, so nothing is trained
        # or billed) once a function has 15 new golden samples, and again 20 s later if more came.
        env.update({"VT_TRAINING_TRAINER": "none"})
        env.setdefault("VT_TRAINING_THRESHOLD", "15")
        env.setdefault("VT_TRAINING_COOLDOWN_S", "20")
        cmd = [
            sys.executable, "-m", "stream.cli", "run", "--bootstrap", broker.bootstrap,
            "--state-dir", str(state_dir / "processor"), "--metrics-port", str(port),
        ]
        with open(proc_log, "wb") as log_fh:
            proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
        prom = _start_prometheus(state_dir / "prometheus", port, console) if prometheus else None
        web: subprocess.Popen[bytes] | None = None
        promql: Table | None = None
        try:
            if not _wait_ready(f"http://127.0.0.1:{port}/ready", proc, timeout=60):
                console.print(f"[red]the processor did not become ready; see {proc_log}[/red]")
                return 1
            console.print(f"processor pid {proc.pid} ready; metrics at [bold]{metrics_url}[/bold]; log {proc_log}")
            if web_console:
                web = _start_console(broker.bootstrap, metrics_url, state_dir, console_port, console)
            if prom is not None:
                prom = _wait_scraped(prom, console)
            sent = _produce_with_progress(broker.bootstrap, names, duration, rate, seed, metrics_url, console)
            drained = _wait_drained(metrics_url, sent, console)
            if prom is not None:
                time.sleep(2.5)  # two more scrapes: Prometheus holds the final values
                promql = _promql_table(prom)
            if keep:
                _keep_running(web, prom, console)
        finally:
            if web is not None:
                _stop(web)
            if prom is not None:
                prom.stop()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        records = asyncio.run(_read_all(broker.bootstrap, names))
    console.print()
    console.rule("[bold]summary")
    for fn in sections():
        renderable = fn(records)
        if renderable is not None:
            console.print(renderable)
    if promql is not None:
        console.print(promql)
    ok = drained and code == 0
    console.print(
        f"processor exited with code {code}; "
        + ("every event was processed." if drained else "[red]not every event was processed in time[/red].")
    )
    console.print(f"logs: {state_dir / 'processor.log'}, {state_dir / 'broker.log'}")
    return 0 if ok else 1


def _start_console(bootstrap: str, metrics_url: str, state_dir: Path, port: int, console: Console) -> subprocess.Popen[bytes] | None:
    """``vector-trainer console`` next to the processor (read-only unless VT_CONSOLE_TOKEN is set)."""
    port = port if port and _port_free(port) else free_port()
    log = state_dir / "console.log"
    cmd = [
        sys.executable, "-m", "stream.cli", "console", "--bootstrap", bootstrap, "--port", str(port),
        "--metrics-url", metrics_url, "--state-dir", str(state_dir / "processor"),
    ]
    with open(log, "wb") as fh:
        web = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    if not _wait_ready(f"{url}/api/v1/status", web, timeout=60):
        console.print(f"[yellow]the web console did not start (see {log}); going on without it[/yellow]")
        _stop(web)
        return None
    mode = "with changes allowed (VT_CONSOLE_TOKEN is set)" if os.environ.get("VT_CONSOLE_TOKEN") else "read-only (set VT_CONSOLE_TOKEN to allow changes)"
    console.print(f"web console at [bold]{url}/[/bold], {mode}; log {log}")
    return web


def _keep_running(web: subprocess.Popen[bytes] | None, prom: PrometheusServer | None, console: Console) -> None:
    """--keep: leave the loop up for exploring until Ctrl-C."""
    where = ", ".join(x for x in (
        "the web console" if web is not None else "", f"Prometheus ({prom.url})" if prom is not None else "",
    ) if x) or "the processor"
    console.print(f"[bold]--keep[/bold]: {where} and the broker stay up; Ctrl-C ends the demo")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "alerts.yml"  # present in a checkout
PROMQL = (
    ("records consumed by topic", "sum by (topic) (vt_events_consumed_total)"),
    ("p95 record latency, s", "histogram_quantile(0.95, sum by (le) (rate(vt_record_latency_seconds_bucket[5m])))"),
    ("golden set by strategy", "sum by (strategy) (vt_golden_samples)"),
    ("dead-letter ratio", "sum(increase(vt_dead_letters_total[5m])) / sum(increase(vt_events_consumed_total[5m]))"),
    ("firing alerts", 'count by (alertname) (ALERTS{alertstate="firing"})'),
)


def _start_prometheus(workdir: Path, metrics_port: int, console: Console) -> PrometheusServer | None:
    """A Prometheus scraping the processor every 2 s, if the ``prometheus`` binary is installed."""
    if prometheus_binary() is None:
        console.print("[dim]prometheus is not installed (apt-get install prometheus): running without it[/dim]")
        return None
    port = 9090 if _port_free(9090) else free_port()
    rules = [ALERTS] if ALERTS.is_file() else []
    prom = PrometheusServer(workdir, [f"127.0.0.1:{metrics_port}"], rule_files=rules, scrape_interval="2s", port=port)
    try:
        prom.start()
    except PrometheusError as exc:
        console.print(f"[yellow]Prometheus did not start ({exc}); running without it[/yellow]")
        return None
    console.print(f"Prometheus at [bold]{prom.url}[/bold] scraping the processor every 2 s"
                  + (f" with the alert rules of {ALERTS.name}" if rules else "") + f"; log {workdir / 'prometheus.log'}")
    return prom


def _wait_scraped(prom: PrometheusServer, console: Console) -> PrometheusServer | None:
    try:
        with console.status("waiting for Prometheus' first scrape"):
            prom.wait_scraped(timeout=30)
        return prom
    except PrometheusError as exc:
        console.print(f"[yellow]{exc}; continuing without Prometheus[/yellow]")
        prom.stop()
        return None


def _promql_table(prom: PrometheusServer) -> Table:
    table = Table(title=f"PromQL on the demo's Prometheus ({prom.url}, stopped with the demo)", title_justify="left")
    table.add_column("what")
    table.add_column("query")
    table.add_column("result")
    for what, expr in PROMQL:
        try:
            res = prom.query(expr)
        except OSError as exc:
            table.add_row(what, expr, f"[red]{exc}[/red]")
            continue
        if res.get("status") != "success":
            table.add_row(what, expr, f"[red]{res.get('error')}[/red]")
            continue
        rows = res["data"]["result"]
        shown = ", ".join(
            (" ".join(v for k, v in sorted(r["metric"].items()) if k not in ("job", "instance")) + "=" if r["metric"] else "")
            + f"{float(r['value'][1]):.4g}"
            for r in rows
        )
        table.add_row(what, expr, shown or "none")
    return table


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _produce_with_progress(
    bootstrap: str, names: TopicNames, duration: float, rate: float, seed: int, metrics_url: str, console: Console
) -> int:
    gen = TrafficGenerator(seed=seed, functions=DEMO_FUNCTIONS, bad_ratio=0.01, feedback_ratio=0.08)
    sent = 0
    target = int(duration * rate)
    started = time.monotonic()

    def count(_item: object) -> None:
        nonlocal sent
        sent += 1

    async def main() -> int:
        task = asyncio.create_task(produce_traffic(bootstrap, names.physical, gen.stream(), rate=rate, duration=duration, on_sent=count))
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while not task.done():
                live.update(Panel(_progress_table(sent, target, _try_scrape(metrics_url), time.monotonic() - started), title="traffic"))
                await asyncio.sleep(0.5)
            live.update(Panel(_progress_table(sent, target, _try_scrape(metrics_url), time.monotonic() - started), title="traffic"))
        return await task

    return asyncio.run(main())


def _try_scrape(url: str) -> Scrape | None:
    try:
        return Scrape.fetch(url, timeout=1.0)
    except OSError:
        return None


def _wait_drained(metrics_url: str, sent: int, console: Console, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    with console.status("waiting for the processor to finish the backlog"):
        while time.monotonic() < deadline:
            scrape = _try_scrape(metrics_url)
            if scrape is not None and scrape.total("vt_events_consumed_total") >= sent and scrape.total("vt_consumer_lag_records") == 0:
                time.sleep(2.0)  # let time-driven work (debounced synthesis, triggers) finish
                return True
            time.sleep(0.5)
    return False


async def _read_all(bootstrap: str, names: TopicNames) -> dict[str, list]:
    out = {}
    for topic in ALL:
        out[topic] = await read_topic(bootstrap, names.physical(topic), idle_timeout=1.0)
    return out


__all__ = ["run_demo"]
