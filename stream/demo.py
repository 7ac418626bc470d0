"""``make demo``: embedded broker + processor + realistic traffic + a summary.

The processor runs as its own process (``vector-trainer run``), exactly as a user
would start it; the demo produces traffic, shows progress from the processor's
/metrics endpoint, waits until every event is processed, then reads every topic
and prints what appeared.
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

from .broker import EmbeddedBroker, free_port
from .scrape import Scrape
from .summary import sections
from .topic_io import produce_traffic, read_topic
from .topics import ALL, TopicNames, ensure_topics
from .traffic import DEMO_FUNCTIONS, TrafficGenerator


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


def run_demo(*, duration: float, rate: float, state_dir: Path, seed: int, metrics_port: int, console: Console) -> int:
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
        try:
            if not _wait_ready(f"http://127.0.0.1:{port}/ready", proc, timeout=60):
                console.print(f"[red]the processor did not become ready; see {proc_log}[/red]")
                return 1
            console.print(f"processor pid {proc.pid} ready; metrics at [bold]{metrics_url}[/bold]; log {proc_log}")
            sent = _produce_with_progress(broker.bootstrap, names, duration, rate, seed, metrics_url, console)
            drained = _wait_drained(metrics_url, sent, console)
        finally:
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
    ok = drained and code == 0
    console.print(
        f"processor exited with code {code}; "
        + ("every event was processed." if drained else "[red]not every event was processed in time[/red].")
    )
    console.print(f"logs: {state_dir / 'processor.log'}, {state_dir / 'broker.log'}")
    return 0 if ok else 1


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
