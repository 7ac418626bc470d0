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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .index import SUCCESS, FunctionIndex
from .rangesearch import GUARD
from .vectors import SCALE, exact_dots

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


def select(index: FunctionIndex, params: SelectionParams, exclude: np.ndarray | None = None) -> Selection:
    """The golden set of one function's index as it is now.

    ``exclude``: uuid hashes (``vectors.uid_hash``) of logs an operator rejected.  They still
    count towards densities and the anomaly cut, but are never candidates, so the next best
    representative of their region can take their place.
    """
    live = index.live_slots()
    empty = np.empty(0, dtype=np.int64)
    if len(live) == 0:
        return Selection(empty, empty, None)
    c = index.cols
    density = c.density[live]
    success = c.status[live] == SUCCESS
    if exclude is not None and len(exclude):
        success &= ~np.isin(c.uid[live], exclude)
    cut: int | None = None
    if params.anomaly_k > 0 and len(live) >= params.anomaly_min_logs:
        rank = int(np.floor(params.anomaly_percentile / 100.0 * (len(live) - 1)))
        cut = int(np.partition(density, rank)[rank])
    kept: list[np.ndarray] = []  # vectors chosen so far, steady then anomaly
    read = index.vector_reader()
    steady = empty
    if params.steady_k > 0:
        eligible = success & (density >= int(round(params.steady_min_density * SCALE)))
        if cut is not None:
            eligible &= density > cut
        pool = live[eligible]
        order = np.lexsort((c.uid[pool], c.ts[pool], -c.density[pool]))
        steady = _dedup(read, pool[order], params.steady_k, params.dedup_similarity, kept)
    anomaly = empty
    if cut is not None:
        pool = live[success & (density <= cut)]
        order = np.lexsort((c.uid[pool], c.ts[pool], c.density[pool]))
        anomaly = _dedup(read, pool[order], params.anomaly_k, params.dedup_similarity, kept)
    return Selection(steady, anomaly, cut)


def _dedup(read: Callable[[np.ndarray], np.ndarray], ranked: np.ndarray, k: int, threshold: float, kept: list[np.ndarray]) -> np.ndarray:
    """Greedy in rank order: keep a slot unless a slot kept before is at least ``threshold`` similar.

    Candidates are compared with the (at most steady_k + anomaly_k) vectors kept so far,
    read block by block in rank order (``read``: one bulk read of the index per
    selection), instead of range-querying each kept slot's
    neighbourhood in the index: the same decisions (float32 screening, float64 within
    :data:`GUARD` of the threshold, as the range search decides), at a fraction of the
    cost.  ``kept`` carries over from the steady list to the anomaly list: no two golden
    samples are near-copies.
    """
    picked: list[int] = []
    pos, block = 0, 64
    while len(picked) < k and pos < len(ranked):
        cand = ranked[pos : pos + block]
        pos += len(cand)
        block = min(2 * block, 4096)
        vectors = read(cand)
        best = np.max(vectors @ np.stack(kept).T, axis=1) if kept else np.full(len(cand), -np.inf, dtype=np.float32)
        i = 0
        while i < len(cand):
            open_ = np.flatnonzero(best[i:] < threshold + GUARD)  # the rest is surely too similar
            if open_.size == 0:
                break
            i += int(open_[0])
            if not _similar(best[i], vectors[i], kept, threshold):
                picked.append(int(cand[i]))
                kept.append(vectors[i].copy())  # not a view: it would keep its whole block (6 MB) alive
                if len(picked) == k:
                    break
                np.maximum(best[i + 1 :], vectors[i + 1 :] @ vectors[i], out=best[i + 1 :])
            i += 1
    return np.array(picked, dtype=np.int64)


def _similar(best: float, vector: np.ndarray, kept: list[np.ndarray], threshold: float) -> bool:
    """Whether a candidate is at least ``threshold`` similar to a kept vector (float64 near the edge)."""
    if best >= threshold + GUARD:
        return True
    if best <= threshold - GUARD or not kept:
        return False
    kept_matrix = np.stack(kept)
    exact = exact_dots(np.broadcast_to(vector, kept_matrix.shape), kept_matrix)
    return bool(np.max(exact) >= threshold)
