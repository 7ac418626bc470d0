"""PNG pictures of what the engines hold (``vector-trainer plot``).

* ``density_map``: one function's indexed vectors from a density checkpoint,
  projected to 2-D by PCA (numpy SVD), coloured by density, with the golden set
  marked (steady = dense centres, anomaly = rare but successful).
* ``loss_curves``: train / valid loss per step of every fine-tuning job, from the
  ``vt.training`` events (read from the topic or a JSON-lines file of them).

matplotlib (extra ``plot``) is imported only here, with the Agg backend: no display needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from processors.density import indexed_functions, read_snapshot
from processors.density.engine import STATE_FILE
from stream.contract import events
from stream.contract.config import DensitySettings
from stream.contract.events import TrainingEvent
from stream.runtime.kafka import read_topic
from stream.runtime.statestore import CheckpointStore


class PlotError(Exception):
    """Nothing to draw, said plainly."""


@dataclass(frozen=True)
class DensityPoints:
    function: str
    vectors: np.ndarray  # (n, dim) unit vectors
    density: np.ndarray  # (n,)
    success: np.ndarray  # (n,) bool: SUCCESS logs (the only selectable ones)
    strategy: np.ndarray  # (n,) "" | "steady" | "anomaly"
    source: str  # the checkpoint directories read


def density_checkpoints(state_dir: Path) -> list[Path]:
    """Current density checkpoint data directories under a state dir (every group, topic and partition)."""
    found = []
    for base in sorted(state_dir.glob("checkpoints/*/density/*")):
        topic, _, partition = base.name.rpartition("-")
        if not partition.isdigit():
            continue
        ckpt = CheckpointStore(base.parent.parent).load("density", topic, int(partition))
        # The density processor also checkpoints its curation partitions (decisions only, no index).
        if ckpt is not None and (ckpt.directory / STATE_FILE).exists():
            found.append(ckpt.directory)
    return found


def functions_in(state_dir: Path) -> list[str]:
    """Functions present in the density checkpoints of ``state_dir``."""
    names = set()
    for directory in density_checkpoints(state_dir):
        names.update(indexed_functions(directory))
    return sorted(names)


def load_points(state_dir: Path, function: str, settings: DensitySettings | None = None) -> DensityPoints:
    """One function's indexed logs from the newest density checkpoint that holds it."""
    dirs = density_checkpoints(state_dir)
    if not dirs:
        raise PlotError(f"no density checkpoint under {state_dir} (the processor writes one every runtime.checkpoint_interval_s)")
    for directory in dirs:
        snap = read_snapshot(directory, function, settings)
        if snap is not None:
            return DensityPoints(
                function=function,
                vectors=snap.vectors,
                density=snap.densities,
                success=snap.success,
                strategy=snap.strategy,
                source=str(directory),
            )
    raise PlotError(f"{function!r} is not in the density checkpoints under {state_dir}; there: {', '.join(functions_in(state_dir)) or 'none'}")


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) projection on the two main axes, and the share of variance each explains."""
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2)), np.zeros(2)
    centred = vectors - vectors.mean(axis=0)
    _u, s, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    coords = centred @ axes.T
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(coords), 2 - coords.shape[1]))])
    var = s**2
    share = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return coords, np.pad(share, (0, 2 - len(share)))


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'vector-trainer[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def density_map(points: DensityPoints, out: Path) -> Path:
    """Scatter of the PCA projection coloured by density; golden steady (star) and anomaly (diamond) marked."""
    plt = _pyplot()
    coords, share = pca_2d(points.vectors)
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    order = np.argsort(points.density)  # dense points drawn last, on top
    others = order[~points.success[order]]
    ok = order[points.success[order]]
    vmax = float(points.density.max()) if len(points.density) else 1.0
    if len(others):
        ax.scatter(coords[others, 0], coords[others, 1], c=points.density[others], cmap="viridis", vmin=0, vmax=vmax,
                   marker="x", s=14, linewidths=0.8, alpha=0.6, label=f"not SUCCESS ({len(others)})")
    sc = ax.scatter(coords[ok, 0], coords[ok, 1], c=points.density[ok], cmap="viridis", vmin=0, vmax=vmax,
                    s=14, alpha=0.75, edgecolors="none", label=f"SUCCESS ({len(ok)})")
    for strat, marker, colour, size in (("steady", "*", "red", 180), ("anomaly", "D", "magenta", 60)):
        sel = np.flatnonzero(points.strategy == strat)
        if len(sel):
            ax.scatter(coords[sel, 0], coords[sel, 1], marker=marker, s=size, facecolors="none" if strat == "anomaly" else colour,
                       edgecolors=colour, linewidths=1.4, label=f"golden {strat} ({len(sel)})", zorder=5)
    fig.colorbar(sc, ax=ax, label="density D(i) = sum of cosine similarities within epsilon")
    ax.set_title(f"{points.function}: {len(points.density)} indexed logs (PCA of the vectors)")
    ax.set_xlabel(f"PC1 ({share[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.0%} of variance)")
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.grid(alpha=0.2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


@dataclass(frozen=True)
class LossCurve:
    function: str
    job_id: str
    status: str
    steps: list[int]
    train: list[float | None]
    valid: list[float | None]


def loss_curves(events: Iterable[TrainingEvent], function: str | None = None) -> list[LossCurve]:
    """Per job, the losses of each step (a step's last report wins), with the job's final status."""
    per_job: dict[str, dict[int, tuple[float | None, float | None]]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for ev in events:
        if function is not None and ev.function_name != function:
            continue
        meta[ev.job_id] = (ev.function_name, ev.status)
        m = ev.metrics
        if m is not None and m.step is not None and (m.train_loss is not None or m.valid_loss is not None):
            per_job.setdefault(ev.job_id, {})[m.step] = (m.train_loss, m.valid_loss)
    curves = []
    for job_id, steps in per_job.items():
        ordered = sorted(steps)
        fn, status = meta[job_id]
        curves.append(LossCurve(fn, job_id, status, ordered, [steps[s][0] for s in ordered], [steps[s][1] for s in ordered]))
    return sorted(curves, key=lambda c: (c.function, c.job_id))


def loss_plot(curves: list[LossCurve], out: Path) -> Path:
    """Train (solid) and valid (dashed) loss against step, one colour per job."""
    if not curves:
        raise PlotError("no training event with losses (a job reports them while running; trainer=none only exports datasets)")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(curves):
        colour = colours[i % len(colours)]
        label = f"{c.function} {c.job_id[-6:]} ({c.status})"
        train = [(s, v) for s, v in zip(c.steps, c.train, strict=True) if v is not None]
        valid = [(s, v) for s, v in zip(c.steps, c.valid, strict=True) if v is not None]
        ms = 7 if len(c.steps) == 1 else 3  # a job that stopped after one step is a point, not a line
        if train:
            ax.plot(*zip(*train, strict=True), color=colour, marker="o", ms=ms, label=f"train {label}")
        if valid:
            ax.plot(*zip(*valid, strict=True), color=colour, marker="s", ms=ms, linestyle="--", label=f"valid {label}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title(f"fine-tuning loss, {len(curves)} job(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def training_events_from_jsonl(path: Path) -> list[TrainingEvent]:
    """TrainingEvents from a JSON-lines file (e.g. ``vector-trainer tail training --raw > t.jsonl``)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            ev = events.decode("training", line.encode())
            assert isinstance(ev, TrainingEvent)
            out.append(ev)
    return out


async def training_events_from_topic(bootstrap: str, topic: str) -> list[TrainingEvent]:
    out = []
    for r in await read_topic(bootstrap, topic, idle_timeout=0.5):
        if r.value is None:
            continue
        try:
            ev = events.decode("training", r.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        assert isinstance(ev, TrainingEvent)
        out.append(ev)
    return out
