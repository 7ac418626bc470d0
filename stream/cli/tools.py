"""Offline tools: event schemas, the configuration table, the file extractor, VectorWave import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

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

import_app = typer.Typer(help="Copy executions stored elsewhere onto the executions topic.", no_args_is_help=True)
app.add_typer(import_app, name="import", rich_help_panel="Offline tools")

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
    from ..vectorwave_bridge.importer import run_import

    s = load_settings(
        bootstrap=bootstrap, topic_prefix=topic_prefix, state_dir=state_dir, sets=sets,
        **{"vectorwave.lite_path": lite_path, "vectorwave.import_page_size": page_size},
    )
    _need_bootstrap(s)
    _init_logging(s)
    raise typer.Exit(run_import(s, since=since, restart=restart, limit=limit, include_vectors=vectors, console=console, out=out))


@app.command(rich_help_panel="Offline tools")
def schema(
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Write one <topic>.schema.json per topic here.")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Only this logical topic.")] = None,
) -> None:
    """JSON Schema (draft 2020-12) of every event, generated from the msgspec structs."""
    from stream.contract.events import json_schemas

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


@app.command(rich_help_panel="Offline tools")
def config(sets: Sets = None) -> None:
    """Show every setting: its value here, its environment variable and what it does."""
    from rich.table import Table

    s = load_settings(sets=sets)
    table = Table("setting", "env", "value", "meaning")
    for path, env, value, help_ in s.describe():
        table.add_row(path, env, str(value), help_)
    out.print(table)


@app.command(rich_help_panel="Offline tools")
def extract(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Execution logs, one JSON object per line (the executions topic's schema).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the golden set, one JSON line per sample.")],
    chatml_only: Annotated[bool, typer.Option("--chatml-only", help="Write only {\"messages\": [...]} lines (fine-tuning format) instead of full GoldenSamples.")] = False,
    rejects: Annotated[Optional[Path], typer.Option("--rejects", help="Also write every refused line with its reason here (JSON lines).")] = None,
    sets: Sets = None,
) -> None:
    """Run the density engine over a file of execution logs and write its golden set.

    The seed's offline extractor.  Same engine and settings (-c density.epsilon=0.25 ...)
    as 'run'.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from processors.density.embedder import EmbedderError
    from processors.density.extract import extract as run_extract

    s = load_settings(sets=sets)
    if not input_path.is_file():
        console.print(f"[red]{input_path} is not a file[/red]")
        raise typer.Exit(2)
    # On stderr, and gone when done: the table below is what stays.
    with Progress(
        TextColumn("[bold]indexing[/bold]"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[lines]} lines"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task("extract", total=input_path.stat().st_size, lines=0)
        try:
            report = run_extract(
                input_path, out_path, s.density, chatml_only=chatml_only, rejects_path=rejects,
                max_bytes=s.runtime.max_message_bytes, max_vector_dim=s.runtime.max_vector_dim,
                progress=lambda done, lines: bar.update(task, completed=done, lines=lines),
            )
        except EmbedderError as exc:
            bar.stop()
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


