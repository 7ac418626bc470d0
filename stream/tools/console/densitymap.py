"""A function's indexed vectors in 2-D for the function page's map.

The projection is ``vector-trainer plot``'s (:func:`stream.plot.pca_2d`: PCA by SVD of
the centred unit vectors), over the logs of the newest density checkpoint holding the
function; each point also carries the start of its input for the hover.  A big index
is thinned to ``max_points`` (every golden sample kept) so the browser stays fast.
Results are cached per checkpoint directory: a new checkpoint is a new map.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from processors.density import read_snapshot
from processors.density.engine import PartitionEngine

from stream.contract.config import DensitySettings
from ..plot import density_checkpoints, pca_2d


class MapUnavailable(Exception):
    """No checkpoint (or no such function in it): said plainly to the page."""


@dataclass(frozen=True, slots=True)
class _Found:
    directory: Path
    meta: Any


def _find(state_dir: Path, function: str) -> _Found:
    dirs = density_checkpoints(state_dir)
    if not dirs:
        raise MapUnavailable(f"no density checkpoint under {state_dir} yet")
    for directory in dirs:
        for m in PartitionEngine.read_meta(directory).functions:
            if m.name == function and m.index is not None:
                return _Found(directory, m)
    raise MapUnavailable(f"{function!r} is not in the density checkpoints yet")


def _hover(inputs: Any, limit: int = 160) -> str:
    text = inputs if isinstance(inputs, str) else json.dumps(inputs, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DensityMaps:
    """Cached maps per function, computed off the event loop by the caller (``asyncio.to_thread``)."""

    def __init__(self, state_dir: Path, settings: DensitySettings | None = None, max_points: int = 4000) -> None:
        self.state_dir = state_dir
        self.settings = settings or DensitySettings()
        self.max_points = max_points
        self._cache: dict[str, tuple[Path, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, function: str) -> dict[str, Any]:
        found = _find(self.state_dir, function)
        with self._lock:
            cached = self._cache.get(function)
            if cached is not None and cached[0] == found.directory:
                return cached[1]
        result = self._compute(function, found)
        with self._lock:
            self._cache[function] = (found.directory, result)
        return result

    def _compute(self, function: str, found: _Found) -> dict[str, Any]:
        # The engine's own view of the checkpoint (as ``plot`` reads it), not its index internals.
        snap = read_snapshot(found.directory, function, self.settings)
        if snap is None:
            raise MapUnavailable(f"{function!r} is not in the density checkpoints yet")
        n = len(snap.uuids)
        strategy = snap.strategy  # "" | "steady" | "anomaly" (a pinned sample as its strategy)
        hover = [_hover(given) if given is not None else "" for given in snap.inputs]
        density, success = snap.densities, snap.success
        coords, share = pca_2d(snap.vectors) if n else (np.zeros((0, 2)), np.zeros(2))
        keep = np.arange(n)
        if n > self.max_points:
            golden = np.flatnonzero(strategy != "")
            rest = np.setdiff1d(keep, golden)
            rng = np.random.default_rng(0)
            room = max(0, self.max_points - len(golden))
            keep = np.sort(np.concatenate([golden, rng.choice(rest, size=min(room, len(rest)), replace=False)]))
        return {
            "function": function,
            "indexed": int(n),
            "shown": int(len(keep)),
            "variance": [float(share[0]), float(share[1])],
            "x": np.round(coords[keep, 0], 5).tolist(),
            "y": np.round(coords[keep, 1], 5).tolist(),
            "density": np.round(density[keep], 4).tolist(),
            "success": success[keep].tolist(),
            "strategy": [str(s) for s in strategy[keep]],
            "input": [hover[i] for i in keep.tolist()],
        }
