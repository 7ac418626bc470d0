"""Engine 3 commands: golden datasets and fine-tuning jobs per function."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from stream.contract.config import Settings

from .common import (
    Bootstrap,
    Prefix,
    Sets,
    StateDir,
    _need_bootstrap,
    app,
    console,
    load_settings,
    out,
)

train_app = typer.Typer(help="Fine-tuning (engine 3): golden datasets and training jobs per function.", no_args_is_help=True)
app.add_typer(train_app, name="train", rich_help_panel="Engines")

async def _read(settings: Settings, *logical: str) -> dict[str, list[Any]]:
    from stream.contract.topics import TopicNames
    from stream.runtime.kafka import read_topic

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
        from processors.training.trainers.openai_trainer import (
            OpenAITrainer,
            api_key_from_env,
        )

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
    """Write a function's current golden set as ChatML JSONL with a manifest and cost estimate.

    Reads the golden topic.  Starts no job and announces nothing.
    """
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


