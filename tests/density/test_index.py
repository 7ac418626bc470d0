"""The per-function density index: streaming densities against the exact O(n²) computation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from processors.density.index import ERROR, SUCCESS, FunctionIndex, IndexParams
from processors.density.vectors import SCALE, from_fixed, normalise, to_fixed
from tests.support.density import clustered, exact_densities

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
    level0 = idx._level0()
    block = level0.block
    count, m0 = block.shape[0], level0.max_m0
    lengths = np.ascontiguousarray(block[:, :2]).view(np.uint16).ravel()
    links = np.ascontiguousarray(block[:, 4 : 4 + 4 * m0]).view(np.uint32)
    mask = np.arange(m0)[None, :] < lengths[:, None]
    graph = csr_matrix((np.ones(int(mask.sum())), (np.repeat(np.arange(count), lengths), links[mask])), shape=(count, count))
    reached = breadth_first_order(graph, level0.entry, directed=True, return_predecessors=False)
    unreachable = np.setdiff1d(np.arange(count), reached)
    assert sorted(idx._orphans.tolist()) == sorted(level0.labels[unreachable].tolist())
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


def test_first_k_from_the_graph_links_saves_probing_rounds_and_stays_exact(dense, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows start at a k guessed from their level-0 links instead of a probe with initial_k and a
    right-sized query after it: fewer rows asked, and the densities are still the exact ones."""

    def build() -> tuple[FunctionIndex, np.ndarray]:
        idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=256))
        slots = np.concatenate(_insert(idx, dense.vectors, 0, [300]))
        idx.evict(slots[::5])  # evictions search from the graph too
        return idx, slots

    hinted, slots = build()
    monkeypatch.setattr(FunctionIndex, "_first_ks", lambda self, *args: None)
    probing, _ = build()

    kept = np.ones(len(dense.vectors), dtype=bool)
    kept[::5] = False
    ref, ref_count = exact_densities(dense.vectors[kept], EPS)
    assert hinted.mode == "hnsw"
    np.testing.assert_allclose(from_fixed(hinted.cols.density[slots[kept]]), ref, rtol=1e-4, atol=1e-4)
    assert np.array_equal(hinted.cols.count[slots[kept]], ref_count)
    assert hinted.searcher.stats.rows_queried < 0.75 * probing.searcher.stats.rows_queried


def _canonical_densities(vectors: np.ndarray, epsilon: float) -> np.ndarray:
    """The exact mode's definition, pair by pair and independently of it: the dot product
    correctly rounded to float64 (math.fsum of exact products), inside when >= 1 - epsilon,
    added as rint(dot * 2**32)."""
    v = vectors.astype(np.float64).tolist()
    out = np.zeros(len(v), dtype=np.int64)
    for i in range(len(v)):
        for j in range(i + 1, len(v)):
            dot = math.fsum(a * b for a, b in zip(v[i], v[j], strict=True))
            if dot >= 1.0 - epsilon:
                w = int(np.rint(dot * SCALE))
                out[i] += w
                out[j] += w
    return out


def test_exact_mode_densities_are_canonical_whatever_the_batching(dense) -> None:
    """Matrix products blocked differently per batch still give each pair one integer: the
    canonical one, so a density is the same bits however the logs came, and equals the
    pairwise definition computed independently."""
    rng = np.random.default_rng(5)
    v = dense.vectors[rng.permutation(len(dense.vectors))[:260]]
    v = np.vstack([v, v[:5]])  # identical vectors too (similarity exactly the self-product)
    one_by_one = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=10**9))
    _insert(one_by_one, v, 0, [1, 7, 31])
    big = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=10**9))
    _insert(big, v, 0, [200, 65])
    assert one_by_one.mode == big.mode == "exact"
    assert np.array_equal(one_by_one.cols.density[: len(v)], big.cols.density[: len(v)])
    assert np.array_equal(big.cols.density[: len(v)], _canonical_densities(v, EPS))


def test_exact_mode_evictions_cancel_insertions_bit_for_bit(dense) -> None:
    """A pair added in one batch shape and taken out in another leaves no residue."""
    v = dense.vectors[:1500]
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=10**9))
    slots = np.concatenate(_insert(idx, v, 0, [3, 500, 61]))
    idx.evict(slots[1::2])
    fresh = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=10**9))
    kept = np.concatenate(_insert(fresh, v[0::2], 0, [750]))
    assert np.array_equal(idx.cols.density[slots[0::2]], fresh.cols.density[kept])
    assert np.array_equal(idx.cols.count[slots[0::2]], fresh.cols.count[kept])


def test_densities_are_bit_identical_whatever_the_batching_and_the_path(dense) -> None:
    """Every path settles a pair to the same integer: HNSW in big batches == matrix products one by one."""
    v = dense.vectors
    hnsw = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=100))
    _insert(hnsw, v, 0, [500, 300, 400])
    exact = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=10**9))
    _insert(exact, v, 0, [1, 7, 31])
    assert hnsw.mode == "hnsw" and exact.mode == "exact"
    assert hnsw.searcher.stats.knn_calls > 0 and len(hnsw._orphans) > 0, "k-NN and the orphans' brute force both took part"
    assert np.array_equal(hnsw.cols.density[: len(v)], exact.cols.density[: len(v)])


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
    assert idx._elements.count == 60 + 840, "one element per distinct vector"
    _check_exact(idx)

    # Evict a third, owners of shared elements included: they are re-homed under a remaining copy.
    owners = np.array([idx.slots_of(np.array([e], np.uint64))[0] for e, m in idx._elements.shared().items() if len(m) > 1])
    idx.evict(np.unique(np.concatenate([slots[::3], owners[:20]])))
    _check_exact(idx)
    meta = idx.save(tmp_path, "f")
    back = FunctionIndex.load(tmp_path, "f", meta, idx.params)
    _check_exact(back)
    more = np.vstack([distinct[rng.integers(0, 60, 300)], dense.vectors[900:1100]])
    _insert(back, more, 10_000, [250])
    _check_exact(back)


def test_settle_recomputes_pairs_near_a_rounding_edge_or_the_radius() -> None:
    """A float64 product off by less than dot_margin must not change the integer or the decision."""
    from processors.density.vectors import dot_margin, settle

    rng = np.random.default_rng(8)
    left, _ = normalise(rng.standard_normal((400, DIM)))
    right, _ = normalise(rng.standard_normal((400, DIM)))
    idx = np.arange(400)
    exact = np.array([math.fsum(a * b for a, b in zip(x, y, strict=True)) for x, y in zip(left.astype(np.float64).tolist(), right.astype(np.float64).tolist(), strict=True)])
    margin = dot_margin(DIM)
    # Approximations just across the rounding edge from the exact value (what another blocking could give).
    edge = (np.floor(exact * SCALE) + 0.5) / SCALE
    approx = edge + np.where(exact * SCALE < edge * SCALE, 1, -1) * margin / 4
    assert (np.rint(approx * SCALE) != np.rint(exact * SCALE)).any(), "the naive rounding would differ"
    inside, fixed = settle(approx, left, idx, right, idx, threshold=-1.0)
    assert inside.all() and np.array_equal(fixed, np.rint(exact * SCALE).astype(np.int64))
    # And a pair sitting on the radius is decided by its exact value, not by the approximation.
    inside, _ = settle(exact + margin / 2, left, idx, right, idx, threshold=float(exact[0]) + margin / 4)
    assert not inside[0]
    # Far from any edge the approximation is used as it is (no recomputation needed).
    calm = np.rint(exact * SCALE) / SCALE + margin * 2
    inside, fixed = settle(calm, left, idx, right, idx, threshold=-1.0)
    assert np.array_equal(fixed, np.rint(exact * SCALE).astype(np.int64))


def test_settle_decides_a_pair_exactly_on_the_edge_with_math_fsum(monkeypatch) -> None:
    """A dot product that is exactly half a fixed-point unit away from two integers: neither the
    float64 approximation nor long double can decide it; fsum does (round half to even)."""
    from processors.density import vectors

    calls = []
    monkeypatch.setattr(vectors, "_exact_dot", lambda a, b: calls.append(1) or math.fsum((a.astype(np.float64) * b.astype(np.float64)).tolist()))
    left = np.zeros((1, 4), np.float32)
    right = np.zeros((1, 4), np.float32)
    left[0, :2] = 1.0
    right[0, :2] = 0.5, 2.0**-33  # dot = 0.5 + 2**-33: 2**31 + 0.5 units
    approx = np.array([0.5 + 2.0**-33 + 1e-15])  # a blocking error on the wrong side of the edge
    inside, fixed = vectors.settle(approx, left, np.array([0]), right, np.array([0]), threshold=0.5 + 2.0**-33)
    assert calls == [1], "only fsum can decide it"
    assert inside[0] and fixed[0] == 2**31  # on the threshold counts as inside; half to even


def test_graph_built_off_the_worker_is_the_one_built_in_the_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact -> HNSW switch in the background: while the graph is built the index answers in
    exact mode, and inserts and evictions meanwhile reach the graph as the calls HNSW mode would have
    made, in order.  Held back until the end here (the slowest builder possible), the finished graph
    is byte-equal to the one built in one call at the same point (half the threshold) and grown by
    HNSW mode, and densities equal throughout."""
    import threading

    import processors.density.index as index_module

    data = clustered(2400, DIM, 6, spread=0.5, isolated=24, seed=21)
    vectors = data.vectors.copy()
    vectors[1500:1540] = vectors[100:140]  # copies: shared elements, some of which lose their last log below
    vectors[1540:1560] = vectors[1500]
    gate = threading.Event()
    do = index_module._Builder._do

    def held(self, kind, arg):  # type: ignore[no-untyped-def]
        gate.wait()
        do(self, kind, arg)

    def run(foreground_build_max: int) -> FunctionIndex:
        # Off the worker the graph starts at half the threshold: the reference switches there in one call.
        threshold = 1100 if foreground_build_max == 0 else 550
        idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=threshold, foreground_build_max=foreground_build_max))
        batches = _insert(idx, vectors[:1400], 0, [300, 500])
        if foreground_build_max == 0:
            assert idx.mode == "exact" and idx._builder is not None, "the graph is still being built"
        idx.evict(np.concatenate([batches[0][:50], batches[0][100:140]]))  # incl. the originals of copies
        batches += _insert(idx, vectors[1400:2000], 1400, [200])  # batches[4] holds vectors 1400..1599
        idx.evict(batches[4][[100, 110]])  # 1500's element keeps its copies 1540.., 1510's has none left
        _insert(idx, vectors[2000:2200], 2000, [200])
        idx.evict(batches[4][101:160])  # the rest of the copies: their elements leave with them
        _insert(idx, vectors[2200:], 2200, [200])
        return idx

    a = run(10**9)
    assert a.mode == "hnsw"
    monkeypatch.setattr(index_module._Builder, "_do", held)
    queued: list[str] = []
    submit = index_module._Builder._submit
    monkeypatch.setattr(index_module._Builder, "_submit", lambda self, kind, arg: (queued.append(kind), submit(self, kind, arg)))
    b = run(0)
    assert b.mode == "exact" and queued.count("delete") >= 3 and queued.count("add") >= 5
    np.testing.assert_array_equal(a.cols.density[: a.slots], b.cols.density[: b.slots])
    gate.set()
    b.finish_hnsw()
    assert b.mode == "hnsw"
    for name in ("density", "count", "elem", "live", "gen"):
        np.testing.assert_array_equal(getattr(a.cols, name)[: a.slots], getattr(b.cols, name)[: b.slots])
    assert a._elements == b._elements
    assert np.array_equal(np.sort(a._orphans), np.sort(b._orphans))
    a._hnsw.save_index(str(tmp_path / "a.hnsw"))
    b._hnsw.save_index(str(tmp_path / "b.hnsw"))
    assert (tmp_path / "a.hnsw").read_bytes() == (tmp_path / "b.hnsw").read_bytes()
    live = a.live_slots()
    ref, _ = exact_densities(a.vectors(live), EPS)
    np.testing.assert_allclose(from_fixed(b.cols.density[live]), ref, rtol=1e-9, atol=1e-9)
    more = clustered(300, DIM, 6, spread=0.5, seed=22).vectors  # both go on identically in HNSW mode
    _insert(a, more, 5000, [300])
    _insert(b, more, 5000, [300])
    np.testing.assert_array_equal(a.cols.density[: a.slots], b.cols.density[: b.slots])


def test_a_dropped_or_closed_index_stops_its_builder() -> None:
    data = clustered(1300, DIM, 4, seed=23)
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=1100, foreground_build_max=0))
    _insert(idx, data.vectors, 0, [1300])
    builder = idx._builder
    assert builder is not None
    idx.close()
    builder._thread.join(timeout=5)
    assert not builder._thread.is_alive() and idx.mode == "exact" and idx._builder is None
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=1100, foreground_build_max=0))
    _insert(idx, data.vectors, 0, [1300])
    builder = idx._builder
    del idx
    builder._thread.join(timeout=5)
    assert not builder._thread.is_alive()


def test_a_process_that_exits_while_a_graph_is_built_exits_cleanly() -> None:
    """The builder thread is inside hnswlib when the interpreter exits: it must be waited for,
    not killed there (that aborts the process: 'terminate called without an active exception')."""
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from processors.density.index import SUCCESS, FunctionIndex, IndexParams\n"
        "from tests.support.density import clustered\n"
        "v = clustered(6000, 384, 8, seed=5).vectors\n"
        "idx = FunctionIndex(384, IndexParams(exact_threshold=8000, foreground_build_max=0))\n"
        "ids = np.arange(6000, dtype=np.int64)\n"
        "idx.insert(v, ids, ids, ids, np.full(6000, SUCCESS, np.uint8), [None] * 6000)\n"
        "assert idx._builder is not None and not idx._builder.done()\n"
        "print('exiting mid-build', flush=True)\n"
    )
    for _ in range(3):  # the old way failed most times, not every time
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=120)
        assert res.stdout.strip() == "exiting mid-build", res.stderr
        assert res.returncode == 0, res.stderr
