"""Golden selection on labelled synthetic clusters."""

from __future__ import annotations

from collections import Counter

import numpy as np

from processors.density import DensityProcessor
from processors.density.index import ERROR, SUCCESS, FunctionIndex, IndexParams
from processors.density.selection import SelectionParams, select
from processors.density.vectors import normalise
from stream.contract.config import DensitySettings
from stream.tools.traffic import TrafficGenerator
from tests.support.density import clustered, records


def _index(vectors: np.ndarray, status: np.ndarray, threshold: int = 128) -> FunctionIndex:
    idx = FunctionIndex(vectors.shape[1], IndexParams(epsilon=0.3, exact_threshold=threshold))
    n = len(vectors)
    ids = np.arange(n, dtype=np.int64)
    for s in range(0, n, 200):
        e = min(n, s + 200)
        idx.insert(vectors[s:e], ids[s:e], ids[s:e], ids[s:e] * 7919 + 13, status[s:e], [b"p"] * (e - s))
    return idx


def test_one_representative_per_cluster_isolated_successes_found_errors_never() -> None:
    rng = np.random.default_rng(21)
    data = clustered(1000, 96, 6, spread=0.35, isolated=16, seed=21)
    status = np.where(rng.random(1000) < 0.1, ERROR, SUCCESS).astype(np.uint8)
    isolated = np.flatnonzero(data.labels == -1)
    status[isolated[:8]] = SUCCESS
    status[isolated[8:]] = ERROR
    idx = _index(data.vectors, status)
    assert idx.mode == "hnsw"
    sel = select(idx, SelectionParams(steady_k=50, dedup_similarity=0.7, anomaly_k=50, anomaly_percentile=5.0, anomaly_min_logs=100))

    steady_clusters = Counter(data.labels[sel.steady].tolist())
    assert steady_clusters == Counter({c: 1 for c in range(6)}), "exactly one representative per cluster"
    assert set(isolated[:8].tolist()) <= set(sel.anomaly.tolist()), "every isolated SUCCESS point is an anomaly"
    chosen = np.concatenate([sel.steady, sel.anomaly])
    assert (status[chosen] == SUCCESS).all(), "ERROR logs count towards density but are never selected"
    assert not set(isolated[8:].tolist()) & set(chosen.tolist())
    # The steady representative is its cluster's densest SUCCESS log.
    for slot in sel.steady.tolist():
        members = np.flatnonzero((data.labels == data.labels[slot]) & (status == SUCCESS))
        assert idx.cols.density[slot] == idx.cols.density[members].max()
    # No two selected samples are near-copies.
    v = data.vectors[chosen].astype(np.float64)
    sims = v @ v.T
    np.fill_diagonal(sims, -1)
    assert sims.max() <= 0.7


def test_no_anomalies_before_enough_logs_and_steady_needs_density() -> None:
    data = clustered(60, 32, 2, spread=0.3, isolated=5, seed=3)
    idx = _index(data.vectors, np.zeros(60, np.uint8))
    sel = select(idx, SelectionParams(anomaly_min_logs=100, steady_min_density=1.0))
    assert len(sel.anomaly) == 0 and sel.anomaly_cut is None
    assert set(data.labels[sel.steady].tolist()) == {0, 1}


def test_ties_break_the_same_way_every_time() -> None:
    """Identical vectors have bit-identical densities; the rank falls back to event time, then uuid hash."""
    base = normalise(np.random.default_rng(5).standard_normal((1, 16)))[0]
    vectors = np.repeat(base, 30, axis=0)
    idx = _index(vectors, np.zeros(30, np.uint8), threshold=8)
    assert len(set(idx.cols.density[:30].tolist())) == 1
    first = select(idx, SelectionParams(steady_k=5)).steady.tolist()
    assert first == [0], "one representative of 30 copies: the earliest"
    assert select(idx, SelectionParams(steady_k=5)).steady.tolist() == first


def test_traffic_clusters_and_rare_requests_on_functions_with_vectors() -> None:
    gen = TrafficGenerator(seed=3, feedback_ratio=0.0)
    items = [gen.execution(gen.functions[i % 2]) for i in range(3000)]  # summarize_ticket, answer_faq (with vectors)
    proc = DensityProcessor(DensitySettings(exact_threshold=256))
    proc.process(records([it.event for it in items]))  # type: ignore[misc]
    label = {it.event.uuid: it.label for it in items}  # type: ignore[union-attr]
    golden = proc.golden()
    for spec in gen.functions[:2]:
        chosen = golden[spec.name]
        steady = Counter(label[u] for u, s in chosen.items() if s == "steady")
        anomaly = {label[u] for u, s in chosen.items() if s == "anomaly"}
        assert steady == Counter({c.name: 1 for c in spec.clusters}), (spec.name, steady)
        assert {f"rare:{i}" for i in range(len(spec.rare))} <= anomaly, (spec.name, anomaly)
        assert "error" not in set(label[u] for u in chosen)
