"""Views of engine 3 built from topic records: for ``vector-trainer train`` and the demo summary.

Pure functions over already-read records (the callers do the Kafka reading), so
the CLI stays thin and the same view shows in the demo and in a terminal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from stream.contract import events
from stream.contract.config import TrainingSettings
from stream.contract.events import GoldenSample, ModelUpdated, TrainingEvent

from .cost import Estimate, estimate
from .dataset import Dataset, Sample, split, write_dataset
from .jobs import ACTIVE, records_from_events
from .trigger import new_since, trained_through

log = logging.getLogger(__name__)


def _decode(topic: str, raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return events.decode(topic, raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def golden_sets(records: Iterable[Any]) -> dict[str, list[Sample]]:
    """The current golden set per function from ``vt.golden`` records (the last value per key wins)."""
    latest: dict[bytes, bytes | None] = {}
    for r in records:
        if r.key is not None:
            latest[r.key] = r.value
    out: dict[str, list[Sample]] = {}
    for raw in latest.values():
        ev = _decode("golden", raw)
        if isinstance(ev, GoldenSample):
            msgs = tuple((m.role, m.content) for m in ev.messages)
            out.setdefault(ev.function_name, []).append(Sample(ev.uuid, ev.selected_at, msgs, ev.strategy))
    return out


def training_history(records: Iterable[Any]) -> dict[str, list[TrainingEvent]]:
    """``vt.training`` events per function, oldest first."""
    out: dict[str, list[TrainingEvent]] = {}
    for r in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset)):
        ev = _decode("training", r.value)
        if isinstance(ev, TrainingEvent):
            out.setdefault(ev.function_name, []).append(ev)
    return out


def latest_models(records: Iterable[Any]) -> dict[str, ModelUpdated]:
    out: dict[str, ModelUpdated] = {}
    for r in records:
        ev = _decode("models", r.value)
        if isinstance(ev, ModelUpdated):
            out[ev.function_name] = ev
    return out


@dataclass(frozen=True, slots=True)
class FunctionView:
    function_name: str
    golden: int
    new_since_last_job: int
    last: TrainingEvent | None  # the latest event of the latest job
    events_of_last_job: tuple[TrainingEvent, ...]
    model: ModelUpdated | None


def views(golden: dict[str, list[Sample]], history: dict[str, list[TrainingEvent]], models: dict[str, ModelUpdated]) -> list[FunctionView]:
    out = []
    for fn in sorted(set(golden) | set(history)):
        evs = history.get(fn, [])
        jobs = records_from_events(evs)
        samples = golden.get(fn, [])
        last_job = max(jobs.values(), key=lambda j: j.created_at).job_id if jobs else None
        of_last = tuple(e for e in evs if e.job_id == last_job)
        out.append(FunctionView(fn, len(samples), new_since(samples, trained_through(jobs.values())), of_last[-1] if of_last else None, of_last, models.get(fn)))
    return out


def is_active(view: FunctionView) -> bool:
    return view.last is not None and view.last.status in ACTIVE


@dataclass(frozen=True, slots=True)
class Export:
    dataset: Dataset
    estimate: Estimate


def export(cfg: TrainingSettings, out_root: Path, function_name: str, samples: list[Sample], now: float | None = None) -> Export:
    """Write a function's current golden set as a dataset, with the cost guard's figures (no job)."""
    train, valid = split(samples, cfg.validation_fraction)
    if not train:
        raise ValueError(f"{function_name!r} has no golden sample to export")
    est = estimate(train, model=cfg.base_model, epochs=cfg.epochs, prices=cfg.prices, encoding=cfg.tokenizer_encoding)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    ds = write_dataset(
        root=out_root, job_id=f"export-{stamp}", function_name=function_name, train=train, valid=valid,
        extra={"trainer": "manual export", "base_model": cfg.base_model, "epochs": cfg.epochs, "est_tokens": est.tokens,
               "price_usd_per_1m": est.price_per_1m, "est_cost_usd": est.cost_usd,
               "enough_for_openai": len(train) >= cfg.min_train_examples},
    )
    return Export(ds, est)


def describe(ev: TrainingEvent) -> str:
    """One line saying what an event means."""
    parts = [ev.status]
    if ev.metrics and ev.metrics.step is not None:
        parts.append(f"step {ev.metrics.step}")
        if ev.metrics.train_loss is not None:
            parts.append(f"train_loss {ev.metrics.train_loss:.4g}")
        if ev.metrics.valid_loss is not None:
            parts.append(f"valid_loss {ev.metrics.valid_loss:.4g}")
    if ev.fine_tuned_model:
        parts.append(f"model {ev.fine_tuned_model}")
    if ev.error:
        parts.append(f"error: {ev.error}")
    return ", ".join(parts)


def summary(records: dict[str, list[Any]]) -> Any:
    """The demo's engine-3 section: per function, the dataset export or job and where it stands."""
    from rich.table import Table
    from rich.text import Text

    vs = views(golden_sets(records.get("golden", [])), training_history(records.get("training", [])), latest_models(records.get("models", [])))
    if not vs:
        return Text("Fine-tuning: no golden samples reached the golden topic, so no dataset was built and no job ran.")
    table = Table(title="Fine-tuning per function (vt.training, vt.models)", title_justify="left")
    for col in ("function", "golden", "new", "decision / job status", "train/val", "est. tokens", "est. USD", "dataset or model"):
        table.add_column(col, justify="right" if col in ("golden", "new", "train/val", "est. tokens", "est. USD") else "left")
    for v in vs:
        ev = v.last
        if ev is None:
            table.add_row(v.function_name, str(v.golden), str(v.new_since_last_job), "below threshold: no job", "-", "-", "-", "-")
            continue
        where = (v.model.model if v.model and v.model.job_id == ev.job_id else None) or ev.fine_tuned_model or ev.dataset_path or "-"
        status = ev.status + (f" ({ev.error})" if ev.error else "")
        table.add_row(
            v.function_name, str(v.golden), str(v.new_since_last_job), status[:60], f"{ev.n_train}/{ev.n_val}",
            str(ev.est_tokens), f"{ev.est_cost_usd:.4f}", str(where),
        )
    return table
