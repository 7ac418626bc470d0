"""The web console and dead-letter replay."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    Bootstrap,
    Prefix,
    Sets,
    _init_logging,
    _need_bootstrap,
    app,
    console,
    load_settings,
    out,
)

dlq_app = typer.Typer(help="Dead letters: replay them to their source topic.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq", rich_help_panel="Observe")


@app.command("console", rich_help_panel="Observe")
def console_cmd(
    bootstrap: Bootstrap = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0 = any free port).")] = 8080,
    metrics_url: Annotated[
        Optional[list[str]], typer.Option("--metrics-url", help="A processor's /metrics (repeat for several instances).")
    ] = None,
    state_dir: Annotated[
        Optional[Path], typer.Option("--state-dir", help="The processor's state dir: density map, training cancel (optional).")
    ] = None,
    topic_prefix: Prefix = None,
    sets: Sets = None,
) -> None:
    """Web console and JSON API (/api/v1, /openapi.json) over the output topics and the processors' metrics.

    Changes (hook rollback, training cancel, dead-letter replay) need the bearer token in
    VT_CONSOLE_TOKEN; without it the console is read-only.
    """
    from ..tools.console.server import serve

    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix, sets=sets)
    _need_bootstrap(s)
    _init_logging(s)
    import os

    from ..tools.console.app import TOKEN_ENV

    mode = "read-write (bearer token set)" if os.environ.get(TOKEN_ENV) else f"read-only ({TOKEN_ENV} not set)"

    def ready(url: str) -> None:
        out.print(f"console at [bold]{url}[/bold] ({mode}); API {url}/api/v1, spec {url}/openapi.json", highlight=False)

    try:
        serve(s, host=host, port=port, metrics_urls=metrics_url, state_dir=state_dir, on_ready=ready)
    except OSError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


@dlq_app.command("replay")
def dlq_replay(
    reason: Annotated[Optional[str], typer.Option("--reason", help="Only dead letters of this reason (e.g. processing_error).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Only those dead-lettered since: ISO time or 90s / 15m / 2h / 7d.")] = None,
    ids: Annotated[Optional[list[str]], typer.Option("--id", help="A dead letter's id, partition-offset on the dlq topic (repeat).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed, send nothing.")] = False,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
) -> None:
    """Send dead letters' original values (and keys) back to their source topic, after a producer or processor was fixed.

    Dead letters whose value was cut (value_truncated) or empty are skipped and listed.
    """
    from ..tools.console.replay import replay, select
    from ..tools.console.state import DlqEntry, parse_since
    from ..contract.deadletter import REASONS
    from ..contract.events import DeadLetter
    from ..runtime.kafka import read_topic
    from ..contract.topics import TopicNames

    if reason is None and since is None and not ids:
        console.print("[red]say which dead letters:[/red] --reason, --since and/or --id")
        raise typer.Exit(2)
    if reason is not None and reason not in REASONS:
        console.print(f"[red]unknown reason {reason!r}[/red]; one of: {', '.join(REASONS)}")
        raise typer.Exit(2)
    try:
        since_ts = parse_since(since) if since else None
    except ValueError:
        console.print(f"[red]--since {since!r} is neither an ISO time nor a duration like 15m[/red]")
        raise typer.Exit(2) from None
    s = load_settings(bootstrap=bootstrap, topic_prefix=topic_prefix)
    names = TopicNames(s.topic_prefix)
    import msgspec

    async def main() -> tuple[int, object]:
        records = await read_topic(_need_bootstrap(s), names.physical("dlq"), idle_timeout=0.5)
        decoder = msgspec.json.Decoder(DeadLetter)
        entries = []
        for r in records:
            try:
                entries.append(DlqEntry(r.partition, r.offset, r.key, decoder.decode(r.value)))
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                continue
        chosen = select(entries, ids=ids or None, reason=reason, since=since_ts)
        return len(chosen), await replay(s.bootstrap or "", names, chosen, dry_run=dry_run)

    try:
        n, result = asyncio.run(main())
    except LookupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    verb = "would replay" if dry_run else "replayed"
    out.print(f"{n} dead letter(s) matched; {verb} {len(result.replayed)}, skipped {len(result.skipped)}")  # type: ignore[attr-defined]
    for i, why in result.skipped:  # type: ignore[attr-defined]
        out.print(f"  skipped {i}: {why}", markup=False, highlight=False)
