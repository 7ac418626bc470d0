"""Golden-sample selection from a function's densities (the seed's two strategies).

* **anomaly**: SUCCESS logs whose density is in the lowest ``anomaly_percentile`` of
  the function's densities, once it has ``anomaly_min_logs`` logs: rare requests the
  service answered well, lowest density first.
* **steady**: the densest SUCCESS logs above that cut, top-k by density.

Both lists are deduplicated greedily in rank order, steady first: a log is skipped
when its cosine similarity to one already chosen (in either list) is above
``dedup_similarity`` (default ``1 - epsilon``: chosen samples are never neighbours,
so each dense region gives one representative).  ERROR, FAILURE and ANOMALY logs count towards density
but are never candidates.  Ranks break ties by event time, then by a hash of the
uuid, and densities are exact integers, so the same index always gives the same
selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .index import SUCCESS, FunctionIndex
from .vectors import SCALE

@dataclass(frozen=True, slots=True)
class SelectionParams:
    steady_k: int = 50
    steady_min_density: float = 1.0
    dedup_similarity: float = 0.7
    anomaly_k: int = 50
    anomaly_percentile: float = 5.0
    anomaly_min_logs: int = 100


@dataclass(frozen=True, slots=True)
class Selection:
    steady: np.ndarray  # slots, best first
    anomaly: np.ndarray  # slots, rarest first
    anomaly_cut: int | None  # fixed-point density at or below which logs are anomaly candidates


def select(index: FunctionIndex, params: SelectionParams) -> Selection:
    """The golden set of one function's index as it is now."""
    live = index.live_slots()
    empty = np.empty(0, dtype=np.int64)
    if len(live) == 0:
        return Selection(empty, empty, None)
    c = index.cols
    density = c.density[live]
    success = c.status[live] == SUCCESS
    cut: int | None = None
    if params.anomaly_k > 0 and len(live) >= params.anomaly_min_logs:
        rank = int(np.floor(params.anomaly_percentile / 100.0 * (len(live) - 1)))
        cut = int(np.partition(density, rank)[rank])
    suppressed = np.zeros(index.slots, dtype=bool)
    steady = empty
    if params.steady_k > 0:
        eligible = success & (density >= int(round(params.steady_min_density * SCALE)))
        if cut is not None:
            eligible &= density > cut
        pool = live[eligible]
        order = np.lexsort((c.uid[pool], c.ts[pool], -c.density[pool]))
        steady = _dedup(index, pool[order], params.steady_k, params.dedup_similarity, suppressed)
    anomaly = empty
    if cut is not None:
        pool = live[success & (density <= cut)]
        order = np.lexsort((c.uid[pool], c.ts[pool], c.density[pool]))
        anomaly = _dedup(index, pool[order], params.anomaly_k, params.dedup_similarity, suppressed)
    return Selection(steady, anomaly, cut)


def _dedup(index: FunctionIndex, ranked: np.ndarray, k: int, threshold: float, suppressed: np.ndarray) -> np.ndarray:
    """Greedy in rank order: keep a slot unless a slot kept before is more similar than ``threshold``.

    A kept slot suppresses its whole neighbourhood of radius ``1 - threshold`` (one
    range query), so the candidates it covers are never read.  ``suppressed`` carries
    over from the steady list to the anomaly list: no two golden samples are near-copies.
    """
    kept: list[int] = []
    radius = 1.0 - threshold
    pos = 0
    while len(kept) < k and pos < len(ranked):
        free = np.flatnonzero(~suppressed[ranked[pos:]])
        if free.size == 0:
            break
        pos += int(free[0])
        pick = int(ranked[pos])
        pos += 1
        kept.append(pick)
        suppressed[pick] = True
        if radius > 0:
            (near,) = index.neighbours(np.array([pick]), radius)
            suppressed[near] = True
    return np.array(kept, dtype=np.int64)
