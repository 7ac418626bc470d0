"""The per-function density index: streaming densities against the exact O(n²) computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from processors.density.index import ERROR, SUCCESS, FunctionIndex, IndexParams
from processors.density.vectors import SCALE, from_fixed, normalise, to_fixed

from .density_helpers import clustered, exact_densities

EPS = 0.3


def _insert(idx: FunctionIndex, vectors: np.ndarray, start: int, sizes: list[int]) -> list[np.ndarray]:
    """Insert ``vectors`` in consecutive batches of the given sizes (cycled); return the slots of each batch."""
    out, i, b = [], 0, 0
    while i < len(vectors):
        size = sizes[b % len(sizes)]
        part = vectors[i : i + size]
        ids = np.arange(start + i, start + i + len(part), dtype=np.int64)
        slots, _ = idx.insert(part, ids, ids, ids + 1_000_000, np.full(len(part), SUCCESS, np.uint8), [None] * len(part))
        out.append(slots)
        i += len(part)
        b += 1
    return out


DIM = 384


@pytest.fixture(scope="module")
def dense() -> object:
    # 3000 logs at 384-d, 8 clusters (~350 neighbours each within epsilon), 30 isolated points.
    return clustered(3000, DIM, 8, spread=0.5, isolated=30, seed=3)


def test_streaming_densities_equal_exact_on_dense_clusters_through_hnsw(dense) -> None:
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=256))
    slots = np.concatenate(_insert(idx, dense.vectors, 0, [1, 13, 250, 700, 96, 500]))
    ref, ref_count = exact_densities(dense.vectors, EPS)
    got = from_fixed(idx.cols.density[slots])

    assert idx.mode == "hnsw" and idx.searcher.stats.knn_calls > 0, "the HNSW path must be exercised"
    assert len(idx._orphans) > 0, "this data leaves elements HNSW cannot reach: their handling is exercised too"
    assert np.median(ref_count) > 300, "dense regions should have hundreds of neighbours"
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert np.array_equal(idx.cols.count[slots], ref_count)
    assert (ref_count[dense.labels == -1] == 0).all() and (got[dense.labels == -1] == 0).all()


def test_orphans_are_the_elements_search_cannot_reach(dense) -> None:
    """What _find_orphans reports equals what a breadth-first walk of hnswlib's level 0 cannot reach."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order

    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=256))
    _insert(idx, dense.vectors, 0, [500])
    state, block = idx._level0()
    count, m0 = block.shape[0], int(state["max_M0"])
    lengths = np.ascontiguousarray(block[:, :2]).view(np.uint16).ravel()
    links = np.ascontiguousarray(block[:, 4 : 4 + 4 * m0]).view(np.uint32)
    mask = np.arange(m0)[None, :] < lengths[:, None]
    graph = csr_matrix((np.ones(int(mask.sum())), (np.repeat(np.arange(count), lengths), links[mask])), shape=(count, count))
    reached = breadth_first_order(graph, int(state["enterpoint_node"]), directed=True, return_predecessors=False)
    unreachable = np.setdiff1d(np.arange(count), reached)
    labels = np.ascontiguousarray(block[:, int(state["label_offset"]) : int(state["label_offset"]) + 8]).view(np.uint64).ravel()
    assert sorted(idx._orphans.tolist()) == sorted(labels[unreachable].tolist())
    assert len(unreachable) > 0
    idx._hnsw.set_ef(400)
    found, _ = idx._hnsw.knn_query(idx._orphan_vectors, k=50)
    assert not np.isin(idx._orphans, found).any(), "HNSW search indeed never returns them"


def test_evictions_subtract_and_reused_slots_stay_exact(dense) -> None:
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=256))
    first = np.concatenate(_insert(idx, dense.vectors[:2000], 0, [400]))
    gone = first[::3]  # evict a third, spread over all clusters
    stats = idx.evict(gone)
    assert stats.rows == len(gone) and idx.live_count == 2000 - len(gone)
    more = np.concatenate(_insert(idx, dense.vectors[2000:], 2000, [333]))
    assert set(more.tolist()) & set(gone.tolist()), "evicted slots are reused"

    kept = np.setdiff1d(np.arange(2000), np.arange(2000)[::3])
    live_vectors = np.vstack([dense.vectors[kept], dense.vectors[2000:]])
    live_slots = np.concatenate([first[kept], more])
    ref, ref_count = exact_densities(live_vectors, EPS)
    np.testing.assert_allclose(from_fixed(idx.cols.density[live_slots]), ref, rtol=1e-4, atol=1e-4)
    assert np.array_equal(idx.cols.count[live_slots], ref_count)
    assert not idx.cols.live[gone[~np.isin(gone, more)]].any()


def test_densities_are_bit_identical_whatever_the_batching_and_the_path(dense) -> None:
    """Fixed-point sums and one similarity kernel: HNSW in big batches == brute force one by one."""
    v = dense.vectors[:1200]
    hnsw = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=100))
    _insert(hnsw, v, 0, [500, 300, 400])
    exact = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=10**9))
    _insert(exact, v, 0, [1, 7, 31])
    assert hnsw.mode == "hnsw" and exact.mode == "exact"
    assert np.array_equal(hnsw.cols.density[:1200], exact.cols.density[:1200])


def test_range_cap_truncates_and_is_counted(dense) -> None:
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=64, initial_k=16, max_k=64))
    _insert(idx, dense.vectors[:800], 0, [800])  # one exact batch (complete), then the index moves to HNSW
    assert idx.mode == "hnsw"
    ids = np.arange(800, 900, dtype=np.int64)
    slots, batch = idx.insert(dense.vectors[800:900], ids, ids, ids + 10**6, np.zeros(100, np.uint8), [None] * 100)
    ref, ref_count = exact_densities(dense.vectors[:900], EPS)
    ref, ref_count = ref[800:900], ref_count[800:900]
    got = from_fixed(idx.cols.density[slots])
    # k=64 includes the row itself: 63 neighbours fill it, and more cannot be ruled out.
    assert batch.cap_hits >= int((ref_count >= 64).sum()) > 0
    small = ref_count < 62
    np.testing.assert_allclose(got[small], ref[small], atol=1e-4)
    big = ref_count > 64
    assert (got[big] < ref[big] - 0.5).all(), "a capped density is truncated, not exact"


def test_save_and_load_continue_exactly(dense, tmp_path: Path) -> None:
    v = dense.vectors[:1500]
    a = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=256))
    _insert(a, v[:1000], 0, [250])
    a.evict(np.arange(0, 1000, 7))
    meta = a.save(tmp_path, "f0")
    b = FunctionIndex.load(tmp_path, "f0", meta, a.params)
    assert b.mode == "hnsw" and b.live_count == a.live_count
    _insert(a, v[1000:], 1000, [100])
    _insert(b, v[1000:], 1000, [100])
    assert np.array_equal(a.cols.density[: a.slots], b.cols.density[: b.slots])
    assert np.array_equal(a.cols.live[: a.slots], b.cols.live[: b.slots])
    assert b.has_uid(1000 + 1_000_000) and not b.has_uid(0 + 1_000_000)


def test_exact_mode_checkpoint_roundtrip(tmp_path: Path) -> None:
    data = clustered(200, 32, 3, spread=0.4, seed=1)
    a = FunctionIndex(32, IndexParams(epsilon=EPS, exact_threshold=10**6))
    _insert(a, data.vectors[:150], 0, [50])
    b = FunctionIndex.load(tmp_path, "x", a.save(tmp_path, "x"), a.params)
    _insert(a, data.vectors[150:], 150, [50])
    _insert(b, data.vectors[150:], 150, [50])
    assert b.mode == "exact" and np.array_equal(a.cols.density[:200], b.cols.density[:200])


def test_live_vectors_bulk_read_matches_get_items(dense) -> None:
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=64))
    _insert(idx, dense.vectors[:600], 0, [300])
    idx.evict(np.arange(0, 600, 5))
    vectors, labels = idx.live_vectors()
    slots = idx.slots_of(labels)
    assert sorted(slots.tolist()) == idx.live_slots().tolist()
    assert np.array_equal(vectors, idx.vectors(slots))
    assert np.array_equal(vectors, dense.vectors[slots])  # inner product space keeps our unit vectors as they are


def test_statuses_are_stored_and_vectors_normalised_once() -> None:
    raw = np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, 1.0], [1e-300, 0.0]])
    unit, ok = normalise(raw)
    assert ok.tolist() == [True, False, False, True]
    assert unit[0].tolist() == pytest.approx([0.6, 0.8]) and unit[0].dtype == np.float32
    assert to_fixed(np.array([1.0, 0.5]))[0] == int(SCALE) and from_fixed(int(SCALE)) == 1.0
    idx = FunctionIndex(2, IndexParams(epsilon=EPS))
    idx.insert(unit[[0, 0]], np.array([1, 2]), np.array([0, 1]), np.array([7, 8]), np.array([SUCCESS, ERROR], np.uint8), [b"x", None])
    assert idx.cols.status[:2].tolist() == [SUCCESS, ERROR]
    assert from_fixed(idx.cols.density[:2]).tolist() == pytest.approx([1.0, 1.0])  # identical vectors: sim 1 each way


def _check_exact(idx: FunctionIndex) -> None:
    live = idx.live_slots()
    ref, ref_count = exact_densities(idx.vectors(live), EPS)
    np.testing.assert_allclose(from_fixed(idx.cols.density[live]), ref, rtol=1e-4, atol=1e-4)
    assert np.array_equal(idx.cols.count[live], ref_count)


def test_identical_vectors_share_an_element_and_densities_stay_exact(dense, tmp_path: Path) -> None:
    """Hundreds of copies of a few points (logs of the same text) once starved the HNSW graph:
    the k-NN range emulation then missed neighbours.  Copies now share one element."""
    rng = np.random.default_rng(11)
    distinct = dense.vectors[:60]
    picks = np.concatenate([rng.integers(0, 60, 1500), rng.integers(0, 3, 600)])  # three points with ~200 copies each
    vectors = np.vstack([distinct[picks], dense.vectors[60:900]])[rng.permutation(2100 + 840)]
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=200))
    slots = np.concatenate(_insert(idx, vectors, 0, [500, 37, 256]))
    assert idx.mode == "hnsw"
    assert len(idx._members) == 60 + 840, "one element per distinct vector"
    _check_exact(idx)

    # Evict a third, owners of shared elements included: they are re-homed under a remaining copy.
    owners = np.array([idx.slots_of(np.array([e], np.uint64))[0] for e, m in idx._members.items() if len(m) > 1])
    idx.evict(np.unique(np.concatenate([slots[::3], owners[:20]])))
    _check_exact(idx)
    meta = idx.save(tmp_path, "f")
    back = FunctionIndex.load(tmp_path, "f", meta, idx.params)
    _check_exact(back)
    more = np.vstack([distinct[rng.integers(0, 60, 300)], dense.vectors[900:1100]])
    _insert(back, more, 10_000, [250])
    _check_exact(back)
