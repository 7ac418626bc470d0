"""Looking at a running pipeline: Grafana dashboards, the terminal dashboard, PNG plots."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    Bootstrap,
    Prefix,
    Sets,
    StateDir,
    app,
    console,
    load_settings,
    out,
)

dashboards_app = typer.Typer(help="Grafana dashboards: write their JSON, or push them to a Grafana server.", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards", rich_help_panel="Observe")

@dashboards_app.command("build")
def dashboards_build(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for <uid>.json (compose provisions dashboards/json).")] = Path("dashboards/json"),
) -> None:
    """Write the dashboards (pipeline, density, hooks, training) as Grafana JSON."""
    from stream.tools.dashboards import write

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
    from stream.tools.dashboards import all_dashboards, load
    from stream.tools.grafana import DashboardPusher, PushError

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


@app.command(rich_help_panel="Observe")
def top(
    url: Annotated[str, typer.Option("--url", help="A processor's metrics endpoint.")] = "http://127.0.0.1:9464/metrics",
    interval: Annotated[float, typer.Option("--interval", "-n", help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one screen and exit (for scripts and logs).")] = False,
) -> None:
    """Live terminal dashboard of one processor: throughput, lag, dead letters, golden sets, hooks, training."""
    from stream.tools import top as top_mod

    if once:
        now, error = top_mod.fetch(url)
        out.print(top_mod.render(url, now, None, error))
        raise typer.Exit(0 if now is not None else 1)
    try:
        top_mod.run(url, interval, out)
    except KeyboardInterrupt:
        pass


@app.command(rich_help_panel="Observe")
def plot(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the PNG files.")] = Path("plots"),
    function: Annotated[Optional[list[str]], typer.Option("--function", "-f", help="Function(s) to draw (default: every one in the checkpoints).")] = None,
    state_dir: StateDir = None,
    bootstrap: Bootstrap = None,
    topic_prefix: Prefix = None,
    training_jsonl: Annotated[Optional[Path], typer.Option("--training-jsonl", help="Training events as JSON lines instead of the topic.")] = None,
    sets: Sets = None,
) -> None:
    """PNG pictures of the density index and of the training loss curves.

    Each function's vectors (PCA) coloured by density with the golden set marked, from
    the density checkpoints in --state-dir; loss curves of the fine-tuning jobs from the
    training topic (--bootstrap) or --training-jsonl.
    """
    from stream.contract.topics import TopicNames
    from stream.tools import plot as plot_mod

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


