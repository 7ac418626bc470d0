"""``vector-trainer import vectorwave``: the backfill with a progress bar (the CLI stays thin)."""

from __future__ import annotations

import asyncio
import logging

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from stream.contract.config import Settings

from . import vw
from .backfill import Backfill, CursorError, ImportReport, PageReport, VectorWaveExecutions, parse_since

log = logging.getLogger(__name__)


def run_import(
    settings: Settings,
    *,
    since: str | None,
    restart: bool = False,
    limit: int | None = None,
    include_vectors: bool = True,
    console: Console,
    out: Console,
) -> int:
    """Run one import; return the process exit code (0 done or stopped by --limit, 1 failed, 2 bad usage)."""
    try:
        start = parse_since(since) if since is not None else None
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    vs = settings.vectorwave
    vw.configure(vs.mode or ("lite" if vs.lite_path is not None else None), vs.lite_path)
    try:
        source = VectorWaveExecutions.configured(include_vectors=include_vectors)
        backfill = Backfill.from_settings(settings, source, since=start, restart=restart)
        backfill.open_cursor()  # usage errors before anything connects
    except vw.VectorWaveMissing as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    except CursorError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2

    columns = (
        TextColumn("[bold]importing[/bold] {task.fields[where]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("dlq {task.fields[dlq]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("import", total=None, where=source.description, dlq=0)

        def started(report: ImportReport) -> None:
            cursor = report.cursor
            assert cursor is not None
            done = cursor.produced + cursor.dead_lettered
            if report.resumed:
                at = cursor.position_ts.isoformat() if cursor.position_ts else cursor.since.isoformat()
                progress.console.print(f"resuming at {at} ({done} executions imported before)")
            progress.update(task, total=report.total_estimate, completed=done, dlq=cursor.dead_lettered)

        def paged(page: PageReport) -> None:
            progress.advance(task, page.produced + page.dead_lettered)
            if page.dead_lettered:
                progress.update(task, dlq=(progress.tasks[0].fields["dlq"] + page.dead_lettered))

        try:
            report = asyncio.run(backfill.run(limit=limit, on_start=started, on_page=paged))
        except LookupError as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        except CursorError as exc:
            console.print(f"[red]{exc}[/red]")
            return 2
    cursor = report.cursor
    assert cursor is not None
    state = "caught up" if report.finished else f"stopped after --limit {limit}; run again to continue"
    out.print(
        f"{report.produced} executions produced, {report.dead_lettered} dead-lettered in this run "
        f"({report.recovered} recovered from an interrupted run); {state}. "
        f"Cursor {backfill.cursor_file.path}: {cursor.produced + cursor.dead_lettered} handled since "
        f"{cursor.since.isoformat()}, position {cursor.position_ts.isoformat() if cursor.position_ts else '-'}"
    )
    return 0
