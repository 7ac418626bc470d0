"""What every command module shares: the root Typer app, the consoles, option types and settings loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from stream.contract.config import ConfigError, Settings, parse_assignments

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
    from stream.contract.logs import setup_logging

    setup_logging(settings.log_level)

