"""Reading hnswlib's level-0 block in place: the very bytes its pickling state copies, and the
same densities whether the index reads the view, the copy, or its searches in smaller pieces."""

from __future__ import annotations

import hnswlib
import numpy as np
import pytest

import processors.density.index as index_module
import processors.density.rangesearch as rangesearch_module
from processors.density.index import SUCCESS, FunctionIndex, IndexParams, _Level0
from processors.density.level0view import level0_copy, level0_view
from tests.support.density import clustered

EPS = 0.3
DIM = 384


def test_the_view_is_the_block_hnswlib_copies_through_adds_resizes_and_deletions() -> None:
    rng = np.random.default_rng(4)
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=300, M=32, ef_construction=100, random_seed=100, allow_replace_deleted=True)
    added, deleted = 0, set()
    for size in (250, 300, 700):  # the second and third adds need resize_index (the block moves)
        if added + size > index.get_max_elements():
            index.resize_index(int((added + size) * 1.5))
        index.add_items(rng.standard_normal((size, DIM)).astype(np.float32), np.arange(added, added + size, dtype=np.uint64) << np.uint64(8))
        added += size
        for label in rng.choice(added, 20, replace=False).tolist():
            if label << 8 not in deleted:
                index.mark_deleted(label << 8)
                deleted.add(label << 8)
        view = level0_view(index)
        assert view is not None
        block, *fields = view
        copied, *copied_fields = level0_copy(index)  # hnswlib's pickling state
        assert block.shape == copied.shape and np.array_equal(block, copied) and fields == copied_fields
        assert not block.flags.writeable
    assert level0_view(_empty()) is None


def _empty() -> hnswlib.Index:
    index = hnswlib.Index(space="ip", dim=8)
    index.init_index(max_elements=10)
    return index


def test_an_index_whose_fields_are_not_where_the_layout_says_is_not_viewed(monkeypatch: pytest.MonkeyPatch) -> None:
    import processors.density.level0view as view_module

    index = hnswlib.Index(space="ip", dim=16)
    index.init_index(max_elements=50, M=8, ef_construction=50)
    index.add_items(np.random.default_rng(1).standard_normal((20, 16)).astype(np.float32))
    assert level0_view(index) is not None
    monkeypatch.setattr(view_module, "_INDEX_ALG", 10)  # the wrong word: no sizes match there
    assert level0_view(index) is None


def _build(vectors: np.ndarray, sizes: list[int]) -> FunctionIndex:
    idx = FunctionIndex(DIM, IndexParams(epsilon=EPS, exact_threshold=600, foreground_build_max=10**6))
    i = b = 0
    while i < len(vectors):
        part = vectors[i : i + sizes[b % len(sizes)]]
        ids = np.arange(i, i + len(part), dtype=np.int64)
        idx.insert(part, ids, ids, ids + 1_000_000, np.full(len(part), SUCCESS, np.uint8), [None] * len(part))
        i, b = i + len(part), b + 1
    idx.evict(np.arange(100, 400, 7))
    return idx


def test_densities_are_the_same_read_in_place_or_copied_or_searched_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    data = clustered(2400, DIM, 6, spread=0.5, isolated=20, seed=31)
    viewed = _build(data.vectors, [500, 333])
    assert viewed.mode == "hnsw"
    assert not viewed._level0().block.flags.writeable  # the read-only view, not a copy
    with monkeypatch.context() as m:  # hnswlib's copy, as before the view
        m.setattr(index_module, "level0_view", lambda index: None)
        copied = _build(data.vectors, [500, 333])
        assert copied._level0().block.flags.writeable
    with monkeypatch.context() as m:  # exact search over 100 stored rows at a time, link hints 7 rows at a time
        m.setattr(rangesearch_module, "_DB_ROWS", 100)
        m.setattr(index_module, "_HINT_ROWS", 7)
        pieces = _build(data.vectors, [500, 333])
    for other in (copied, pieces):
        np.testing.assert_array_equal(viewed.cols.density[: viewed.slots], other.cols.density[: other.slots])
        np.testing.assert_array_equal(viewed.cols.count[: viewed.slots], other.cols.count[: other.slots])
        assert sorted(viewed._orphans.tolist()) == sorted(other._orphans.tolist())


def test_the_exact_search_in_pieces_gives_the_same_neighbourhoods(monkeypatch: pytest.MonkeyPatch) -> None:
    data = clustered(900, DIM, 3, spread=0.5, seed=32)
    db, queries = data.vectors, data.vectors[::9]
    labels = np.arange(len(db), dtype=np.uint64) * 3
    searcher = rangesearch_module.RangeSearcher(EPS)
    whole = searcher.matrix(db, labels, queries, labels[::9])
    monkeypatch.setattr(rangesearch_module, "_DB_ROWS", 128)
    pieces = searcher.matrix(db, labels, queries, labels[::9])
    assert len(whole.labels) > 10 * len(queries)  # neighbours in many pieces of the stored rows
    for a, b in ((whole.indptr, pieces.indptr), (whole.labels, pieces.labels), (whole.weights, pieces.weights)):
        np.testing.assert_array_equal(a, b)


def test_level0_of_an_unviewable_index_falls_back_to_the_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=100, M=32, ef_construction=100)
    index.add_items(np.random.default_rng(2).standard_normal((60, DIM)).astype(np.float32), np.arange(60, dtype=np.uint64) + 5)
    viewed = _Level0.of(index, DIM)
    monkeypatch.setattr(index_module, "level0_view", lambda index: None)
    copied = _Level0.of(index, DIM)
    assert viewed is not None and copied is not None
    assert np.array_equal(viewed.block, copied.block) and np.array_equal(viewed.labels, copied.labels)
    assert np.array_equal(viewed.vectors(np.arange(60)), copied.vectors(np.arange(60)))


@pytest.mark.parametrize("word, at", [("_INDEX_ALG", 5), ("_VALUE_PTR", 1), ("_INDEX_ALG", 3)])
def test_a_layout_that_is_not_the_known_one_is_refused_by_the_probe_without_a_crash(
    monkeypatch: pytest.MonkeyPatch, word: str, at: int
) -> None:
    """Each of these reads the wrong word as a pointer (the probe's seed, the Python type, part of a
    string): the probe checks a pointer leads into readable memory before following it."""
    import processors.density.level0view as view_module

    assert view_module._layout_confirmed.__wrapped__() is True
    monkeypatch.setattr(view_module, word, at)
    assert view_module._layout_confirmed.__wrapped__() is False
