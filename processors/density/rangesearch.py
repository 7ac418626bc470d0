"""Range search ("every stored vector within cosine distance epsilon") on hnswlib.

hnswlib has no range query.  It is emulated with k-NN whose k grows, per query
row, until the k-th neighbour lies beyond epsilon; the next k is guessed from the
neighbour counts of what was already found (neighbours have similar
neighbourhoods), so most rows need one small query and one right-sized one.  Rows
hnswlib cannot answer (it finds fewer than k live elements, which happens when
some are unreachable in the graph) are answered by brute force with hnswlib's own
``BFIndex``.

hnswlib's float32 distances only *find* candidates (everything within
epsilon + :data:`GUARD`).  The similarity of a pair, and whether it is inside, is
its canonical value (:func:`~.vectors.settle`): the float64 dot product of the two
stored vectors, correctly rounded, in fixed point.  It is the same integer whether
the pair was found from either side, by HNSW, by brute force or by a matrix
product, in whatever batch: densities are bit-identical however they were built.

Small indexes (exact mode) are searched by :meth:`RangeSearcher.matrix` instead:
one float64 matrix product (BLAS) of the queries with every stored vector.  For
the few thousand logs of a typical function, with hundreds of neighbours each,
that is 10-50x cheaper than k-NN with a large k.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import hnswlib
import numpy as np

from .vectors import dot_margin, settle

# Float32 dot products of unit vectors are within ~1e-5 of the exact value at the
# dimensions in use: candidates are taken this far beyond the radius, then settled.
GUARD = 1e-4

# Temporaries are bounded so that a batch's work stays a small part of what the index holds
# (issue 20: 100k logs of one function within 2.5 KB each, peak included).
# Entries (query rows x database rows) per brute-force call or exact product (8 MB in float64).
_BRUTE_CELLS = 1 << 20
# Stored vectors converted to float64 at a time by the exact search (12 MB at 384-d).
_DB_ROWS = 4096
# Vector components gathered at a time when settling the pairs a search found.
_PAIR_CELLS = 1 << 20
# Answers (query rows x k) per hnswlib k-NN call: ~3 MB of labels and distances.
_KNN_CELLS = 1 << 18


@dataclass(slots=True)
class Neighbourhoods:
    """The neighbours of each query row within epsilon, in CSR form (self excluded)."""

    indptr: np.ndarray  # int64, rows + 1
    labels: np.ndarray  # uint64 hnswlib labels
    weights: np.ndarray  # int64 fixed-point cosine similarities

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1

    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(self.rows, dtype=np.int64), self.counts())

    def sums(self) -> np.ndarray:
        """Per-row sum of weights (int64, exact)."""
        out = np.zeros(self.rows, dtype=np.int64)
        if len(self.weights):
            np.add.at(out, self.row_ids(), self.weights)
        return out


def merge(a: Neighbourhoods, b: Neighbourhoods) -> Neighbourhoods:
    """Row-wise union of two neighbourhood sets over the same query rows (disjoint labels per row)."""
    rid = np.concatenate([a.row_ids(), b.row_ids()])
    order = np.argsort(rid, kind="stable")
    indptr = np.zeros(a.rows + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(a.counts() + b.counts())
    return Neighbourhoods(
        indptr, np.concatenate([a.labels, b.labels])[order], np.concatenate([a.weights, b.weights])[order]
    )


def symmetrize(h: Neighbourhoods, row_labels: np.ndarray) -> Neighbourhoods:
    """Make pairs among the query rows themselves mutual.

    When every query row is also in the index (an inserted batch), a pair of two
    rows found from one side only is added to the other side with the same weight
    (the kernel is commutative), so one-sided k-NN misses inside a batch cannot
    make two densities disagree.
    """
    m = len(row_labels)
    rid, lab, w = h.row_ids(), h.labels, h.weights
    sorter = np.argsort(row_labels)
    pos = np.minimum(np.searchsorted(row_labels[sorter], lab), m - 1)
    inner = row_labels[sorter][pos] == lab
    col = sorter[pos[inner]]
    ri, wi = rid[inner], w[inner]
    both_r = np.concatenate([ri, col])
    both_c = np.concatenate([col, ri])
    both_w = np.concatenate([wi, wi])
    _, first = np.unique(both_r * m + both_c, return_index=True)
    rows = np.concatenate([rid[~inner], both_r[first]])
    labels = np.concatenate([lab[~inner], row_labels[both_c[first]]])
    weights = np.concatenate([w[~inner], both_w[first]])
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(h.rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=h.rows), out=indptr[1:])
    return Neighbourhoods(indptr, labels[order], weights[order])


@dataclass(slots=True)
class SearchStats:
    cap_hits: int = 0  # rows whose k reached max_k with the k-th neighbour still inside epsilon
    brute_rows: int = 0  # rows above the exact threshold answered by brute force
    knn_calls: int = 0
    rows_queried: int = 0  # query rows over all knn calls (a row asked twice counts twice)


@dataclass(slots=True)
class RangeSearcher:
    """Finds every neighbour within ``epsilon`` of a batch of query vectors."""

    epsilon: float
    initial_k: int = 32
    max_k: int = 4096
    ef: int = 64  # hnswlib's beam width beyond k
    hint_factor: float = 1.05  # next k = this x the largest neighbour count among the neighbours found, + 8
    threads: int = 1
    stats: SearchStats = field(default_factory=SearchStats)

    def beam(self, k: int) -> int:
        """hnswlib's ef for a k-NN query of k: k plus a margin (ef == k drops in-range neighbours)."""
        return int(k + self.ef)

    # ------------------------------------------------------------------ brute force
    def brute(
        self, db: np.ndarray, db_labels: np.ndarray, queries: np.ndarray, self_labels: np.ndarray
    ) -> Neighbourhoods:
        """Exact: every database vector is compared with every query."""
        candidates = _Candidates(self.epsilon + GUARD, self_labels)
        self._brute_candidates(db, db_labels, queries, np.arange(len(queries)), candidates)
        return self._finish(candidates, queries, _lookup(db, db_labels))

    def _brute_candidates(
        self, db: np.ndarray, db_labels: np.ndarray, queries: np.ndarray, rows: np.ndarray, candidates: _Candidates
    ) -> None:
        n = len(db)
        if n == 0 or len(rows) == 0:
            return
        bf = hnswlib.BFIndex(space="ip", dim=db.shape[1])
        bf.init_index(max_elements=n)
        bf.add_items(db, db_labels)
        step = max(1, _BRUTE_CELLS // n)
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            labels, dists = bf.knn_query(queries[part], k=n, num_threads=self.threads)
            candidates.add(part, labels, dists)

    # ------------------------------------------------------------------ matrix (exact mode)
    def matrix(self, db: np.ndarray, db_labels: np.ndarray, queries: np.ndarray, self_labels: np.ndarray) -> Neighbourhoods:
        """Exact: float64 products of every query with every stored vector, canonically settled.

        The stored vectors are taken :data:`_DB_ROWS` at a time, so that their float64 copy
        stays small however far past the threshold the index is while its graph is built.
        """
        nq, n = len(queries), len(db)
        indptr = np.zeros(nq + 1, dtype=np.int64)
        if n == 0 or nq == 0:
            return Neighbourhoods(indptr, np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64))
        threshold = 1.0 - self.epsilon
        floor = threshold - dot_margin(db.shape[1])
        db_labels = db_labels.astype(np.uint64, copy=False)
        self_labels = self_labels.astype(np.uint64, copy=False)
        rows_parts, label_parts, weight_parts = [], [], []
        for first in range(0, n, _DB_ROWS):
            part = db[first : first + _DB_ROWS]
            part64, width = part.astype(np.float64), len(part)
            step = max(1, _BRUTE_CELLS // width)
            for start in range(0, nq, step):
                products = queries[start : start + step].astype(np.float64) @ part64.T
                flat = np.flatnonzero(products >= floor)  # row-major; 10x faster than np.nonzero's two arrays
                rows, cols = np.divmod(flat, width)
                not_self = db_labels[first + cols] != self_labels[start + rows]
                rows, cols = rows[not_self], cols[not_self]
                inside, fixed = settle(products.ravel()[flat[not_self]], queries, start + rows, part, cols, threshold)
                rows_parts.append(start + rows[inside])
                label_parts.append(db_labels[first + cols[inside]])
                weight_parts.append(fixed[inside])
            del part64
        rows, labels, weights = np.concatenate(rows_parts), np.concatenate(label_parts), np.concatenate(weight_parts)
        if n > _DB_ROWS:  # rows ascend within a part of the stored vectors: merge the parts, columns in order
            order = np.argsort(rows, kind="stable")
            rows, labels, weights = rows[order], labels[order], weights[order]
        np.cumsum(np.bincount(rows, minlength=nq), out=indptr[1:])
        return Neighbourhoods(indptr, labels, weights)

    # ------------------------------------------------------------------ HNSW
    def hnsw(
        self,
        index: hnswlib.Index,
        n_live: int,
        queries: np.ndarray,
        self_labels: np.ndarray,
        *,
        counts_of: Callable[[np.ndarray], np.ndarray],
        vectors_of: Callable[[np.ndarray], np.ndarray],
        all_live: Callable[[], tuple[np.ndarray, np.ndarray]],
        exclude: np.ndarray | None = None,
        first_k: np.ndarray | None = None,
    ) -> Neighbourhoods:
        """k-NN with growing k per row; ``counts_of`` maps labels to known neighbour counts.

        Labels in ``exclude`` (the batch itself, searched exactly by the caller) are
        left out of the result, though they still count towards k.  ``first_k`` (per row,
        optional) is the caller's guess of each row's neighbour count: rows start at that k
        (bucketed, at least ``initial_k``) instead of probing with ``initial_k`` first.
        """
        threshold = self.epsilon + GUARD
        nq = len(queries)
        candidates = _Candidates(threshold, self_labels, exclude)
        brute_rows: list[np.ndarray] = []
        k_of = np.full(nq, min(self.initial_k, n_live), dtype=np.int64)
        if first_k is not None:
            k_of = np.minimum(np.maximum(k_of, _bucket(first_k)), min(self.max_k, n_live))
        todo = np.arange(nq, dtype=np.int64)
        while todo.size:
            next_rows: list[np.ndarray] = []
            current = k_of[todo]  # a copy: k_of changes below for the next round
            for k, rows in _knn_calls(todo, current):
                index.set_ef(self.beam(k))
                try:
                    labels, dists = index.knn_query(queries[rows], k=k, num_threads=self.threads)
                except RuntimeError:
                    # hnswlib found fewer than k live elements: only brute force is complete here.
                    brute_rows.append(rows)
                    continue
                self.stats.knn_calls += 1
                self.stats.rows_queried += len(rows)
                # A row is complete once its k-th neighbour lies beyond the radius (k == n_live
                # returned every live element: nothing can be left outside).
                still_inside = (dists[:, -1] <= threshold) & (k < n_live)
                if (~still_inside).any():
                    candidates.add(rows[~still_inside], labels[~still_inside], dists[~still_inside])
                if not still_inside.any():
                    continue
                if k >= self.max_k:
                    self.stats.cap_hits += int(still_inside.sum())
                    candidates.add(rows[still_inside], labels[still_inside], dists[still_inside])
                    continue
                # Every returned neighbour is inside the radius; its own neighbour count is
                # the best guess of how many this row has.
                found = labels[still_inside]
                in_range = dists[still_inside] <= threshold
                hint = np.where(in_range, counts_of(found), 0).max(axis=1).astype(np.float64) + 1.0
                want = np.maximum(2.0 * k, hint * self.hint_factor + 8.0)
                grown = np.minimum(_bucket(want), min(self.max_k, n_live))
                open_rows = rows[still_inside]
                k_of[open_rows] = grown
                next_rows.append(open_rows)
            todo = np.concatenate(next_rows) if next_rows else np.empty(0, dtype=np.int64)
        if brute_rows:
            rows = np.concatenate(brute_rows)
            self.stats.brute_rows += len(rows)
            db, db_labels = all_live()
            self._brute_candidates(db, db_labels, queries, rows, candidates)
        return self._finish(candidates, queries, vectors_of)

    # ------------------------------------------------------------------ assembly
    def _finish(self, candidates: _Candidates, queries: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray]) -> Neighbourhoods:
        nq = len(queries)
        if not candidates.rows:
            empty = np.empty(0, dtype=np.int64)
            return Neighbourhoods(np.zeros(nq + 1, dtype=np.int64), np.empty(0, dtype=np.uint64), empty)
        rid = np.concatenate(candidates.rows)
        lab = np.concatenate(candidates.labels)
        order = np.argsort(rid, kind="stable")
        rid, lab = rid[order], lab[order]
        inside, fixed = self._settle_pairs(queries, rid, lab, vectors_of)
        rid, lab, fixed = rid[inside], lab[inside], fixed[inside]
        indptr = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(np.bincount(rid, minlength=nq), out=indptr[1:])
        return Neighbourhoods(indptr, lab, fixed)

    def _settle_pairs(
        self, queries: np.ndarray, rid: np.ndarray, lab: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """In/out and fixed-point similarity of candidate pairs, canonically.

        The float64 products come, per block of pairs, from one matrix product of the
        block's query rows with the distinct vectors they found.  Rows are grouped by
        their smallest neighbour label first, so that rows of one dense region (which
        share most neighbours) fall in one block: far less to read and multiply than a
        vector per pair.  Blocks whose rows do not overlap go pair by pair.
        """
        inside = np.empty(len(rid), dtype=bool)
        fixed = np.empty(len(rid), dtype=np.int64)
        if len(rid) == 0:
            return inside, fixed
        threshold = 1.0 - self.epsilon
        starts = np.flatnonzero(np.r_[True, rid[1:] != rid[:-1]])  # rid ascending: each row's first pair
        smallest = np.full(len(queries), np.iinfo(np.uint64).max, dtype=np.uint64)
        smallest[rid[starts]] = np.minimum.reduceat(lab, starts)
        order = np.argsort(smallest[rid], kind="stable")  # rows stay whole, in row order within a group
        step = max(1, _PAIR_CELLS // queries.shape[1])
        for p0 in range(0, len(rid), step):
            part = order[p0 : p0 + step]
            rows = rid[part]
            block_rows, row_at = np.unique(rows, return_inverse=True)
            distinct, which = np.unique(lab[part], return_inverse=True)
            right = vectors_of(distinct)
            if len(block_rows) * len(distinct) <= 16 * len(part):  # overlapping: one BLAS product
                approx = (queries[block_rows].astype(np.float64) @ right.astype(np.float64).T)[row_at, which]
            else:
                approx = np.einsum("ij,ij->i", queries[rows], right[which], dtype=np.float64)
            inside[part], fixed[part] = settle(approx, queries, rows, right, which, threshold)
        return inside, fixed


def _knn_calls(todo: np.ndarray, k_of_todo: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(k, rows) of each k-NN call for a round: rows sharing a k, at most :data:`_KNN_CELLS` answers a
    call (a row's answer does not depend on the rows asked with it)."""
    for k in np.unique(k_of_todo).tolist():
        rows = todo[k_of_todo == k]
        step = max(1, _KNN_CELLS // k)
        for start in range(0, len(rows), step):
            yield k, rows[start : start + step]


class _Candidates:
    """Pairs (query row, label) within the search radius by hnswlib's float32 distances, kept as
    each k-NN answer comes in: only these, not the k columns of every answer (at k in the
    thousands, 500 rows' answers held ~50 MB until settled)."""

    def __init__(self, threshold: float, self_labels: np.ndarray, exclude: np.ndarray | None = None) -> None:
        self.threshold = threshold
        self.self_labels = self_labels.astype(np.uint64, copy=False)
        self.exclude = exclude if exclude is not None and len(exclude) else None  # the batch itself: searched exactly
        self.rows: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def add(self, rows: np.ndarray, labels: np.ndarray, dists: np.ndarray) -> None:
        """One k-NN answer: ``labels`` and ``dists`` have a row per entry of ``rows``."""
        labels = labels.astype(np.uint64, copy=False)
        mask = (dists.astype(np.float64) <= self.threshold) & (labels != self.self_labels[rows][:, None])
        if self.exclude is not None:
            mask &= ~np.isin(labels, self.exclude)
        self.rows.append(np.repeat(rows, mask.sum(axis=1)))
        self.labels.append(labels[mask])


def _bucket(k: np.ndarray) -> np.ndarray:
    """Round k up to a few sizes so rows share knn calls: multiples of 16, 64 from 1024, 256 from 4096."""
    k = np.ceil(k).astype(np.int64)
    step = np.where(k < 1024, 16, np.where(k < 4096, 64, 256))
    return -(-k // step) * step


def _lookup(db: np.ndarray, db_labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """vectors_of for a plain matrix with a label column."""
    order = np.argsort(db_labels)
    sorted_labels = db_labels[order]

    def vectors_of(labels: np.ndarray) -> np.ndarray:
        return db[order[np.searchsorted(sorted_labels, labels.astype(db_labels.dtype))]]

    return vectors_of
