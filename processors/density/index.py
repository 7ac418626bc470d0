"""One function's density index: stored vectors, neighbour densities and log metadata.

Up to ``exact_threshold`` live logs the vectors sit in a numpy matrix and every
range query is one float64 matrix product with all of them (BLAS: for the few
thousand logs of a typical function, with hundreds of neighbours each, far cheaper
than k-NN); above it they move into an hnswlib HNSW index
(inner product on unit vectors, i.e. cosine) that is grown with ``resize_index``.
Evicted logs are ``mark_deleted`` and their slots reused.  The vectors are kept
only once: in the matrix, or inside hnswlib (read back with ``get_items``).

Identical vectors (logs whose embedded inputs and output are the same text, say)
share one HNSW element.  Hundreds of copies of one point would otherwise fill each
other's link lists, leave the graph unable to route past them and make the k-NN
range emulation miss neighbours.  An element keeps the label of the log that
created it; every log points at its element (column ``elem``), a search that finds
an element counts each of its logs, and the element is deleted with its last log.
(It is never re-added under another label: hnswlib's replacement of deleted
elements then degraded the graph around it.)

Densities follow the seed: ``D(i) = Σ_j sim(i, j)`` over the other logs ``j`` within
cosine distance epsilon.  :meth:`FunctionIndex.insert` adds a batch and then
queries it: a new log gets the sum over all its neighbours (older ones and those in
the same batch), an older neighbour gets ``+sim`` once.  :meth:`FunctionIndex.evict`
does the reverse.  With complete neighbour sets the result equals the exact
O(n²) computation over the live logs, bit for bit in fixed point (each pair's
similarity is its canonical value, see :func:`~.vectors.settle`, whichever way it
was found).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hnswlib
import msgspec
import numpy as np

from .elements import SLOT_BITS, SLOT_MASK, Elements
from .level0view import level0_copy, level0_view
from .rangesearch import Neighbourhoods, RangeSearcher, merge, symmetrize
from .vectors import exact_fixed

# Status codes stored per log.  Only SUCCESS logs are ever selected.
SUCCESS, ERROR, FAILURE, ANOMALY = 0, 1, 2, 3
STATUS_CODES = {"SUCCESS": SUCCESS, "ERROR": ERROR, "FAILURE": FAILURE, "ANOMALY": ANOMALY}

# Level-0 links of a query read to guess its first k (see FunctionIndex._first_ks).
_HINT_LINKS = 32
_HINT_ROWS = 128  # queries whose links are read at a time (6 MB of gathered vectors at 384-d)


@dataclass(frozen=True, slots=True)
class IndexParams:
    epsilon: float = 0.3
    exact_threshold: int = 16384
    m: int = 32
    ef_construction: int = 200
    ef: int = 64
    initial_k: int = 32
    max_k: int = 4096
    threads: int = 1
    seed: int = 100
    # The exact -> HNSW switch builds the graph in the call that crosses the threshold when the
    # threshold is at most this (~0.2 s at 384-d); else off the worker from half the threshold on
    # (see _Builder and FunctionIndex._build_from).
    foreground_build_max: int = 1024


@dataclass(slots=True)
class BatchStats:
    """What one insert or eviction did (for metrics)."""

    rows: int = 0
    neighbours: int = 0
    cap_hits: int = 0
    brute_rows: int = 0
    seconds: float = 0.0


class IndexMeta(msgspec.Struct):
    """The scalar part of a saved index (arrays and vectors are separate files)."""

    dim: int
    mode: str  # "exact" | "hnsw"
    slots: int
    live: int
    free: list[int]
    hnsw_capacity: int = 0
    hnsw_m: int = 0


@dataclass(slots=True)
class _Arrays:
    """Per-slot columns, grown by amortised doubling."""

    density: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # fixed point
    count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # neighbours within epsilon
    ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # event time, ms
    seq: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # arrival order
    uid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # hash of the uuid
    status: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    live: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    gen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))  # reuse generation
    elem: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # label of the HNSW element holding the vector

    NAMES = ("density", "count", "ts", "seq", "uid", "status", "live", "gen", "elem")

    def grow(self, capacity: int) -> None:
        for name in self.NAMES:
            old = getattr(self, name)
            new = np.zeros(capacity, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)


@dataclass(slots=True)
class _Level0:
    """hnswlib's level-0 block: every element's links, vector and label, read in bulk.

    A view of hnswlib's own memory where its layout is the known one (see
    :mod:`.level0view`: no copy, valid until the graph changes), else one copy from its
    pickling state (~1 ms per 5k elements at 384-d, ~1.7 KB per element held).  Either
    beats ``get_items``, which copies element by element (~25 µs each).
    """

    block: np.ndarray  # elements x bytes
    offset: int  # where a row's vector starts
    label_offset: int  # and its label (the vector ends there)
    max_m0: int
    entry: int
    labels: np.ndarray  # uint64, per row
    _sorter: np.ndarray | None = None

    @classmethod
    def of(cls, index: hnswlib.Index, dim: int) -> _Level0 | None:
        """None when the layout is not the one this code reads (another hnswlib version)."""
        block, off, lab, max_m0, entry = level0_view(index) or level0_copy(index)
        if lab - off != 4 * dim or off != 4 + 4 * max_m0:
            return None
        labels = np.ascontiguousarray(block[:, lab : lab + 8]).view(np.uint64).ravel()
        return cls(block, off, lab, max_m0, entry, labels)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        dim = (self.label_offset - self.offset) // 4
        return np.ascontiguousarray(self.block[rows, self.offset : self.label_offset]).view(np.float32).reshape(-1, dim)

    def rows_of(self, labels: np.ndarray) -> np.ndarray:
        if self._sorter is None:
            self._sorter = np.argsort(self.labels)
        sorted_labels = self.labels[self._sorter]
        return self._sorter[np.searchsorted(sorted_labels, np.asarray(labels, dtype=np.uint64))]


class _Builder:
    """A new HNSW index whose hnswlib calls run, in the order given, on a thread of their own.

    The exact -> HNSW switch of a function adds every live vector to a new graph (~3 s at
    16k 384-d vectors): done in one go it would block the worker that long.  Instead the
    index stays in exact mode while this thread builds the graph, and every later insert
    and eviction is queued to it as the hnswlib calls HNSW mode would have made (same
    additions, deletions and resizes, in the same order), so the finished graph is the
    one the one-go switch and the same later calls would have given.  hnswlib releases
    the GIL inside its calls, so the worker goes on meanwhile; nothing reads the graph
    until every queued call is done (one index is never used from two threads at once).
    """

    _CHUNK = 256  # vectors per add_items call: a cancelled build stops within one chunk

    def __init__(self, dim: int, params: IndexParams, capacity: int) -> None:
        self.index = hnswlib.Index(space="ip", dim=dim)
        self.index.init_index(
            max_elements=capacity, M=params.m, ef_construction=params.ef_construction,
            random_seed=params.seed, allow_replace_deleted=True,
        )
        self._ops: deque[tuple[str, object]] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._cancelled = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hnsw-build", daemon=True)
        self._thread.start()

    def add(self, vectors: np.ndarray, labels: np.ndarray, live_elements: int, replace_deleted: bool) -> None:
        """add_items, after the resize HNSW mode makes for it (``live_elements``: counting these)."""
        self._submit("add", (np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(labels, dtype=np.uint64), live_elements, replace_deleted))

    def delete(self, label: int) -> None:
        self._submit("delete", label)

    def done(self) -> bool:
        """Every queued call has run (then the graph is the caller's alone)."""
        with self._cond:
            if self.error is not None:
                raise RuntimeError("building the HNSW index failed") from self.error
            return not self._ops and not self._busy

    def wait(self) -> None:
        with self._cond:
            while (self._ops or self._busy) and self.error is None:
                self._cond.wait()
        self.done()

    def stop(self) -> None:
        """End the thread; with calls still queued, they are dropped (the graph is then useless)."""
        with self._cond:
            self._cancelled = True
            self._ops.clear()
            self._cond.notify_all()

    def close(self) -> None:
        """:meth:`stop`, then wait for the thread to leave hnswlib (at most one chunk of adds).

        A daemon thread still inside hnswlib when the interpreter exits is killed in C++
        code, which aborts the process ('terminate called without an active exception').
        """
        self.stop()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def _submit(self, kind: str, arg: object) -> None:
        with self._cond:
            self._ops.append((kind, arg))
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ops and not self._cancelled:
                    self._cond.wait()
                if self._cancelled:
                    return
                kind, arg = self._ops.popleft()
                self._busy = True
            try:
                self._do(kind, arg)
            except BaseException as exc:  # reported to the worker by done()/wait()
                with self._cond:
                    self.error = exc
                    self._busy = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _do(self, kind: str, arg: object) -> None:
        index = self.index
        if kind == "delete":
            index.mark_deleted(arg)
            return
        vectors, labels, live_elements, replace_deleted = arg  # type: ignore[misc]
        # As FunctionIndex._add_elements: grow by half when the new elements do not fit.
        deleted = index.get_current_count() - live_elements + len(labels)
        needed = index.get_current_count() + max(0, len(labels) - deleted)
        if needed > index.get_max_elements():
            index.resize_index(max(needed, int(index.get_max_elements() * 1.5)))
        for start in range(0, len(labels), self._CHUNK):
            if self._cancelled:
                return
            # One thread: the graph then depends only on the insertion order (deterministic replays).
            index.add_items(vectors[start : start + self._CHUNK], labels[start : start + self._CHUNK], num_threads=1, replace_deleted=replace_deleted)


class FunctionIndex:
    """Density index of one function (one vector dimension)."""

    def __init__(self, dim: int, params: IndexParams) -> None:
        self.dim = dim
        self.params = params
        self.searcher = RangeSearcher(
            params.epsilon, initial_k=params.initial_k, max_k=params.max_k, ef=params.ef, threads=params.threads
        )
        self.cols = _Arrays()
        self.payload: list[bytes | None] = []  # per slot: the log's content, for SUCCESS logs only
        self.slots = 0  # slots ever used (high-water mark)
        self.live_count = 0
        self._free: list[int] = []  # evicted slots, reused lowest first
        self._matrix: np.ndarray | None = np.zeros((0, dim), dtype=np.float32)  # exact mode only
        self._hnsw: hnswlib.Index | None = None
        self._uids = np.empty(0, dtype=np.int64)  # of the live logs, sorted (a dict took ~100 B a log)
        # HNSW mode: the live slots sharing each element's vector, and elements by vector hash.
        self._elements = Elements()
        self._self_weights: dict[int, int] = {}  # element -> fixed-point similarity of two of its copies
        self._searchers: dict[float, RangeSearcher] = {}
        # Live HNSW elements no level-0 link points to (search cannot reach them) and their vectors.
        self._orphans = np.empty(0, dtype=np.uint64)
        self._orphan_vectors = np.zeros((0, dim), dtype=np.float32)
        self._level0_read: _Level0 | None = None  # see _level0
        # Exact mode past the threshold: the HNSW graph being built off the worker (see _Builder).
        self._builder: _Builder | None = None
        self._stop_builder: Callable[[], object] = lambda: None

    # ------------------------------------------------------------------ queries
    @property
    def mode(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    def has_uid(self, uid: int) -> bool:
        at = int(self._uids.searchsorted(uid))
        return at < len(self._uids) and int(self._uids[at]) == uid

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.cols.live[: self.slots])

    def labels(self, slots: np.ndarray) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64)
        return slots.astype(np.uint64) | (self.cols.gen[slots].astype(np.uint64) << np.uint64(SLOT_BITS))

    @staticmethod
    def slots_of(labels: np.ndarray) -> np.ndarray:
        return (np.asarray(labels, dtype=np.uint64) & SLOT_MASK).astype(np.int64)

    def vectors(self, slots: np.ndarray) -> np.ndarray:
        """Stored unit vectors (float32) of live slots."""
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._hnsw is None:
            assert self._matrix is not None
            return self._matrix[slots]
        return np.asarray(self._hnsw.get_items(self.cols.elem[slots]), dtype=np.float32).reshape(len(slots), self.dim)

    def vector_reader(self) -> Callable[[np.ndarray], np.ndarray]:
        """``vectors`` for many reads in a row while the index does not change: from one copy of
        hnswlib's level-0 block (taken on first use) instead of element-by-element copies."""
        if self._hnsw is None:
            return self.vectors
        hnsw = self._hnsw
        copy: list[_Level0 | None] = []

        def read(slots: np.ndarray) -> np.ndarray:
            if not copy:
                copy.append(_Level0.of(hnsw, self.dim))
            level0 = copy[0]
            if level0 is None:  # an unexpected layout: take the slow, safe way
                return self.vectors(slots)
            return level0.vectors(level0.rows_of(self.cols.elem[np.asarray(slots, dtype=np.int64)]))

        return read

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live vector (one per HNSW element) with its label, read in bulk (for brute-force fallbacks)."""
        live = self.live_slots()
        if self._hnsw is None:
            assert self._matrix is not None
            return self._matrix[live], self.labels(live)
        elems = self._elements.labels(live, self.cols.elem)
        level0 = self._level0()
        if level0 is None:  # an unexpected layout: take the slow, safe way
            return np.asarray(self._hnsw.get_items(elems), dtype=np.float32).reshape(len(elems), self.dim), elems
        wanted = np.flatnonzero(np.isin(level0.labels, elems))
        return level0.vectors(wanted), level0.labels[wanted]

    def _element_vectors(self, elems: np.ndarray) -> np.ndarray:
        """Vectors of HNSW elements by label, from the level-0 copy when there is one."""
        level0 = self._level0()
        if level0 is None:
            return self.vectors(self._element_slots(elems))
        return level0.vectors(level0.rows_of(elems))

    def _level0(self) -> _Level0 | None:
        """hnswlib's level-0 block (a view or a copy, see :class:`_Level0`), read once per change of
        the graph (None: unexpected layout).

        Dropped whenever hnswlib changes the graph (:meth:`_graph_changed`: a view would then
        point at moved memory) and at the end of each insert and eviction, so it is a temporary
        of those calls, not memory the index keeps.
        """
        assert self._hnsw is not None
        if self._level0_read is None:
            self._level0_read = _Level0.of(self._hnsw, self.dim)
        return self._level0_read

    def _graph_changed(self) -> None:
        self._level0_read = None

    def _find_orphans(self) -> None:
        """Find live elements that HNSW search cannot reach: no level-0 link points to them.

        hnswlib prunes link lists as it inserts; in dense regions an element can lose
        every incoming link, and then no query ever returns it.  Such elements are few
        and are compared by brute force with every query instead.  Elements linked only
        from such orphans are orphans too.
        """
        level0 = self._level0()
        if level0 is None:
            return
        block, max_m0 = level0.block, level0.max_m0
        count = block.shape[0]
        lengths = np.ascontiguousarray(block[:, 0:2]).view(np.uint16).ravel().astype(np.int64)
        column = np.arange(max_m0)[None, :]

        def indegree_from(rows: np.ndarray) -> np.ndarray:
            """How many level-0 links of ``rows`` point to each element (read 4096 rows at a time and
            counted as read: all links at once held ~30 MB at 100k elements)."""
            counts = np.zeros(count, dtype=np.int64)
            for start in range(0, len(rows), 4096):
                part = rows[start : start + 4096]
                links = np.ascontiguousarray(block[part, 4 : 4 + 4 * max_m0]).view(np.uint32)
                counts += np.bincount(links[column < lengths[part, None]], minlength=count)[:count]
            return counts

        indegree = indegree_from(np.arange(count))
        orphan = indegree == 0
        orphan[level0.entry] = False
        newly = orphan.copy()
        while newly.any():  # links from orphans do not make anything reachable
            indegree -= indegree_from(np.flatnonzero(newly))
            newly = (indegree <= 0) & ~orphan
            newly[level0.entry] = False
            orphan |= newly
        rows = np.flatnonzero(orphan)
        live = self._elements.alive(level0.labels[rows], self.cols.live, self.cols.elem)  # live elements only
        self._orphans = level0.labels[rows[live]]
        self._orphan_vectors = level0.vectors(rows[live])

    def neighbours(self, slots: np.ndarray, radius: float) -> list[np.ndarray]:
        """Live slots within cosine distance ``radius`` of each given live slot (itself excluded)."""
        slots = np.asarray(slots, dtype=np.int64)
        searcher = self._searchers.get(radius)
        if searcher is None:
            p = self.params
            searcher = self._searchers[radius] = RangeSearcher(radius, initial_k=p.initial_k, max_k=p.max_k, ef=p.ef, threads=p.threads)
        hoods = self._search(self.vectors(slots), slots, searcher)
        nbr = self.slots_of(hoods.labels)
        return [nbr[a:b] for a, b in zip(hoods.indptr[:-1].tolist(), hoods.indptr[1:].tolist(), strict=True)]

    def memory_bytes(self) -> dict[str, int]:
        """Estimated bytes held: vectors+graph (hnswlib's layout), per-slot columns, payloads, uuid map."""
        if self._hnsw is not None:
            cap = self._hnsw.get_max_elements()
            m = self._hnsw.M
            per = self.dim * 4 + 8 + 4 + (2 * m) * 4  # vector, label, level-0 link count and links
            # + a mutex, a level, a link-list pointer and a label-map entry per element; upper levels ~1/M
            index = cap * (per + 40 + 4 + 8) + self._hnsw.get_current_count() * (48 + (m * 4 + 4) // max(1, m - 1))
        else:
            assert self._matrix is not None
            index = self._matrix.nbytes
        cols = sum(getattr(self.cols, n).nbytes for n in _Arrays.NAMES)
        payload = sum(len(p) + 33 for p in self.payload if p is not None) + 8 * len(self.payload)
        uid_map = self._uids.nbytes + self._elements.nbytes()
        return {"index": int(index), "columns": cols, "payload": payload, "uuid_map": uid_map}

    # ------------------------------------------------------------------ insert
    def insert(
        self,
        vectors: np.ndarray,
        ts: np.ndarray,
        seq: np.ndarray,
        uid: np.ndarray,
        status: np.ndarray,
        payloads: list[bytes | None],
    ) -> tuple[np.ndarray, BatchStats]:
        """Add a batch of unit vectors (distinct uids, none already live) and update densities."""
        started = time.perf_counter()
        m = len(vectors)
        stats = BatchStats(rows=m)
        if m == 0:
            return np.empty(0, dtype=np.int64), stats
        self._adopt_graph()
        slots = self._allocate(m)
        c = self.cols
        c.ts[slots], c.seq[slots], c.uid[slots], c.status[slots] = ts, seq, uid, status
        c.density[slots] = 0
        c.count[slots] = 0
        c.live[slots] = True
        c.elem[slots] = self.labels(slots)
        for s, p in zip(slots.tolist(), payloads, strict=True):
            self.payload[s] = p
        new_uids = np.sort(np.asarray(uid, dtype=np.int64))
        self._uids = np.insert(self._uids, np.searchsorted(self._uids, new_uids), new_uids)
        self.live_count += m
        self._store(slots, vectors)
        hoods = self._search(vectors, slots, within_batch=True)
        self._apply(hoods, slots, sign=1)
        stats.neighbours = int(len(hoods.labels))
        if self._hnsw is None and self._builder is None and self.live_count > self._build_from():
            self._start_hnsw()  # densities carry over as they are: both modes settle pairs the same way
        self._adopt_graph()
        self._collect(stats, started)
        return slots, stats

    def _allocate(self, m: int) -> np.ndarray:
        reuse = self._free[:m]
        del self._free[:m]
        fresh = m - len(reuse)
        new = list(range(self.slots, self.slots + fresh))
        self.slots += fresh
        if self.slots > len(self.cols.live):
            capacity = max(self.slots, int(len(self.cols.live) * 1.5) + 64)
            self.cols.grow(capacity)
            if self._matrix is not None:
                grown = np.zeros((capacity, self.dim), dtype=np.float32)
                grown[: len(self._matrix)] = self._matrix
                self._matrix = grown
        self.payload.extend([None] * (self.slots - len(self.payload)))
        for s in reuse:
            self.cols.gen[s] += 1  # the slot's next hnswlib label differs from its deleted one
        return np.array(reuse + new, dtype=np.int64)

    def _store(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        if self._hnsw is None:
            assert self._matrix is not None
            self._matrix[slots] = vectors
            if self._builder is not None:  # what HNSW mode would do, for the graph being built
                new = self._join_elements(slots, vectors)
                self._builder.add(vectors[new], self.labels(slots[new]), self._elements.count, replace_deleted=True)
            return
        new = self._join_elements(slots, vectors)
        self._add_elements(slots[new], vectors[new])
        self._find_orphans()

    def _join_elements(self, slots: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Point each slot at the element holding its vector; True where a new element is needed."""
        new = np.zeros(len(slots), dtype=bool)
        labels = self.labels(slots)
        created: dict[int, int] = {}  # elements created in this batch -> row of their vector
        elements = self._elements
        for i, (s, v) in enumerate(zip(slots.tolist(), vectors, strict=True)):
            h = hash(v.tobytes())
            elem = next((e for e in elements.with_hash(h) if np.array_equal(self._element_vector(e, created, vectors), v)), None)
            if elem is None:
                elem = int(labels[i])
                created[elem] = i
                elements.create(elem, h)
                new[i] = True
            else:
                elements.join(elem, s)
            self.cols.elem[s] = elem
        elements.merge()
        return new

    def _element_vector(self, elem: int, created: dict[int, int], vectors: np.ndarray) -> np.ndarray:
        """An element's vector: from this batch when it was created here, else from hnswlib."""
        if elem in created:
            return vectors[created[elem]]
        if self._hnsw is None:  # building: a live member's row of the matrix holds it
            assert self._matrix is not None
            return self._matrix[self._elements.members(elem)[0]]
        assert self._hnsw is not None
        return np.asarray(self._hnsw.get_items([elem]), dtype=np.float32).reshape(self.dim)

    def _element_slots(self, elems: np.ndarray) -> np.ndarray:
        """A live log of each element (any: they share the vector and the neighbourhood)."""
        elems = np.asarray(elems, dtype=np.uint64)
        flat = elems.ravel()
        slots = self.slots_of(flat)
        stale = ~self.cols.live[slots] | (self.labels(slots) != flat)  # the creating log has left
        if stale.any():
            slots[stale] = [self._elements.members(int(e))[0] for e in flat[stale].tolist()]
        return slots.reshape(elems.shape)

    def _add_elements(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        if len(slots) == 0:
            return
        index = self._hnsw
        assert index is not None
        deleted = index.get_current_count() - self._elements.count + len(slots)
        needed = index.get_current_count() + max(0, len(slots) - deleted)
        if needed > index.get_max_elements():
            index.resize_index(max(needed, int(index.get_max_elements() * 1.5)))
        # One thread: the graph then depends only on the insertion order (deterministic replays).
        index.add_items(vectors, self.labels(slots), num_threads=1, replace_deleted=True)
        self._graph_changed()

    def _start_hnsw(self) -> None:
        """Start moving the vectors from the exact matrix into a new HNSW index (see :class:`_Builder`).

        The index answers in exact mode until the graph is complete (:meth:`_adopt_graph`).
        """
        p = self.params
        live = self.live_slots()
        assert self._matrix is not None
        vectors = self._matrix[live]
        builder = _Builder(self.dim, p, max(2 * len(live), 1024))
        self._elements = Elements()
        new = self._join_elements(live, vectors)
        builder.add(vectors[new], self.labels(live[new]), self._elements.count, replace_deleted=False)
        self._builder = builder
        # An index dropped mid-build, or still building at exit, ends its thread (see _Builder.close).
        self._stop_builder = weakref.finalize(self, builder.close)
        if p.exact_threshold <= p.foreground_build_max:
            self._adopt_graph(wait=True)

    def _build_from(self) -> int:
        """Live logs above which the HNSW graph is started: at the threshold when it is small enough to
        build in one call, else at half of it, so that it has caught up (off the worker) by the time the
        threshold is crossed; the index answers in exact mode up to the threshold either way."""
        p = self.params
        return p.exact_threshold if p.exact_threshold <= p.foreground_build_max else p.exact_threshold // 2

    def _adopt_graph(self, wait: bool = False) -> None:
        """Switch to HNSW mode once past the threshold and the graph being built has caught up
        (with ``wait``: block until then)."""
        builder = self._builder
        if builder is None or self.live_count <= self.params.exact_threshold:
            return
        if wait:
            builder.wait()
        elif not builder.done():
            return
        self._stop_builder()
        self._builder = None
        self._hnsw = builder.index
        self._matrix = None
        self._graph_changed()
        self._find_orphans()

    def finish_hnsw(self) -> None:
        """Wait for a graph being built and switch to it (tests; a worker never needs to)."""
        self._adopt_graph(wait=True)

    def close(self) -> None:
        """Stop building a graph nobody will use (the index stays in exact mode, complete)."""
        if self._builder is not None:
            self._stop_builder()
            self._builder = None
            self._elements, self._self_weights = Elements(), {}

    # ------------------------------------------------------------------ evict
    def evict(self, slots: np.ndarray) -> BatchStats:
        """Remove live logs and take their similarity out of their neighbours' densities."""
        started = time.perf_counter()
        slots = np.unique(np.asarray(slots, dtype=np.int64))
        stats = BatchStats(rows=len(slots))
        if len(slots) == 0:
            return stats
        self._adopt_graph()
        hoods = self._search(self.vectors(slots), slots)
        self._apply(hoods, slots, sign=-1)
        stats.neighbours = int(len(hoods.labels))
        c = self.cols
        if self._hnsw is not None or self._builder is not None:
            self._leave_elements(slots)
        for s in slots.tolist():
            self.payload[s] = None
        self._uids = self._uids[~np.isin(self._uids, c.uid[slots], assume_unique=True)]  # live uids are distinct
        c.live[slots] = False
        c.density[slots] = 0
        c.count[slots] = 0
        self.live_count -= len(slots)
        self._free = sorted(set(self._free).union(slots.tolist()))
        self._collect(stats, started)
        return stats

    def _leave_elements(self, slots: np.ndarray) -> None:
        """Take evicted logs out of their elements; an element leaves the graph with its last log."""
        gone = set(slots.tolist())
        hnsw, builder, elements = self._hnsw, self._builder, self._elements
        for elem in sorted({int(e) for e in self.cols.elem[slots]}):
            if hnsw is None:  # building: the evicted rows are still in the matrix
                assert builder is not None and self._matrix is not None
                vector = self._matrix[elements.members(elem)[0]]
            if not elements.leave(elem, gone):
                continue
            if hnsw is not None:
                vector = np.asarray(hnsw.get_items([elem]), dtype=np.float32).reshape(self.dim)
                hnsw.mark_deleted(elem)
                self._graph_changed()
            else:
                assert builder is not None
                builder.delete(elem)
            self._self_weights.pop(elem, None)
            elements.forget_hash(hash(vector.tobytes()), elem)
        elements.merge()
        if hnsw is not None:
            self._find_orphans()

    # ------------------------------------------------------------------ shared
    def _search(
        self, queries: np.ndarray, slots: np.ndarray, searcher: RangeSearcher | None = None, within_batch: bool = False
    ) -> Neighbourhoods:
        """Neighbourhoods of stored vectors (their own slots excluded).

        With ``within_batch`` (inserts), a pair of two new logs found from one side is
        added to the other (see :func:`~.rangesearch.symmetrize`).
        """
        searcher = searcher or self.searcher
        self_labels = self.labels(slots)
        if self._hnsw is None:
            live = self.live_slots()
            assert self._matrix is not None
            # No slot evicted: the stored rows as they are (a view), not a copy per search.
            db = self._matrix[: self.slots] if len(live) == self.slots else self._matrix[live]
            return searcher.matrix(db, self.labels(live), queries, self_labels)
        found = self._search_elements(queries, self.cols.elem[slots], searcher)
        found = self._expand(found, slots, queries)
        return symmetrize(found, self_labels) if within_batch else found

    def _search_elements(self, queries: np.ndarray, self_elems: np.ndarray, searcher: RangeSearcher) -> Neighbourhoods:
        """Neighbouring HNSW elements of each query, its own element excluded."""
        assert self._hnsw is not None
        count = self.cols.count

        def counts_of(labels: np.ndarray) -> np.ndarray:
            return count[self._element_slots(labels)]

        # Orphans (unreachable by search) are compared by brute force instead; a pair of
        # this batch seen both ways is counted once (symmetrize deduplicates).
        found = searcher.hnsw(
            self._hnsw, self._elements.count, queries, self_elems,
            counts_of=counts_of, vectors_of=self._element_vectors, all_live=self.live_vectors,
            exclude=self._orphans if len(self._orphans) else None,
            first_k=self._first_ks(queries, self_elems, searcher),
        )
        if len(self._orphans):
            found = merge(found, searcher.brute(self._orphan_vectors, self._orphans, queries, self_elems))
        return found

    def _first_ks(self, queries: np.ndarray, self_elems: np.ndarray, searcher: RangeSearcher) -> np.ndarray | None:
        """A first k per query from the graph's own links, instead of a probing k-NN round.

        Each query is an element of the graph (an inserted batch was just added, an evicted
        log not yet removed); hnswlib linked it at insertion to near elements.  The largest
        known neighbour count among its first :data:`_HINT_LINKS` links that lie inside the
        radius guesses its own count, as the searcher's hint does after a probe; a row with no
        link inside gets the searcher's initial k.  Only the cost changes: a row is complete
        only once its k-th neighbour is found beyond the radius, whatever k it started with.
        """
        level0 = self._level0()
        if level0 is None or searcher is not self.searcher:  # counts are of the index's own radius
            return None
        rows = level0.rows_of(self_elems)
        # A block of rows at a time: their links' vectors (32 per row) are gathered in one array.
        return np.concatenate([
            self._first_ks_of(level0, queries[a : a + _HINT_ROWS], rows[a : a + _HINT_ROWS], searcher)
            for a in range(0, max(len(rows), 1), _HINT_ROWS)
        ])

    def _first_ks_of(self, level0: _Level0, queries: np.ndarray, rows: np.ndarray, searcher: RangeSearcher) -> np.ndarray:
        width = min(_HINT_LINKS, level0.max_m0)
        block = level0.block
        lengths = np.ascontiguousarray(block[rows, 0:2]).view(np.uint16).ravel().astype(np.int64)
        links = np.ascontiguousarray(block[rows, 4 : 4 + 4 * width]).view(np.uint32).reshape(len(rows), width)
        valid = np.arange(width)[None, :] < lengths[:, None]
        links = np.where(valid, links, rows[:, None]).astype(np.int64)  # unused places: the row itself
        near = np.einsum("ij,ikj->ik", queries, level0.vectors(links.ravel()).reshape(len(rows), width, self.dim))
        labels = level0.labels[links.ravel()]
        slots = self.slots_of(labels)
        # Links to deleted elements, or to elements whose first log has left, are not read.
        known = (self.cols.live[slots] & (self.labels(slots) == labels)).reshape(valid.shape)
        inside = valid & known & (near >= 1.0 - searcher.epsilon)
        counts = np.where(inside, self.cols.count[slots].reshape(inside.shape), 0)
        return np.where(inside.any(axis=1), counts.max(axis=1) * searcher.hint_factor + 8.0, 0.0)

    def _self_weight(self, elem: int, vector: np.ndarray) -> int:
        """The similarity of two copies of an element's vector: the canonical value, as the
        matrix product gives it for two identical rows in exact mode."""
        w = self._self_weights.get(elem)
        if w is None:
            w = self._self_weights[elem] = exact_fixed(vector, vector)
        return w

    def _expand(self, found: Neighbourhoods, slots: np.ndarray, queries: np.ndarray) -> Neighbourhoods:
        """From elements to logs: each found element stands for all its logs, and a query's own
        element contributes its other logs (identical vectors, the kernel's self-similarity)."""
        elements = self._elements
        if elements.count == self.live_count:  # one log per element: no copies anywhere
            return Neighbourhoods(found.indptr, self.labels(self._element_slots(found.labels)), found.weights)
        rid = found.row_ids()
        uniq, inverse = np.unique(found.labels, return_inverse=True)
        lists = [elements.members(int(e)) for e in uniq.tolist()]
        sizes = np.array([len(m) for m in lists], dtype=np.int64)
        flat = self.labels(np.array([s for m in lists for s in m], dtype=np.int64))
        starts = np.cumsum(sizes) - sizes
        reps = sizes[inverse]
        first = np.repeat(starts[inverse], reps)
        within = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
        out_rid = [np.repeat(rid, reps)]
        out_lab = [flat[first + within]]
        out_w = [np.repeat(found.weights, reps)]
        for r, (s, e) in enumerate(zip(slots.tolist(), self.cols.elem[slots].tolist(), strict=True)):
            copies = [m for m in elements.members(int(e)) if m != s]
            if copies:
                w = self._self_weight(int(e), queries[r])
                out_rid.append(np.full(len(copies), r, dtype=np.int64))
                out_lab.append(self.labels(np.array(copies, dtype=np.int64)))
                out_w.append(np.full(len(copies), w, dtype=np.int64))
        rows, labels, weights = np.concatenate(out_rid), np.concatenate(out_lab), np.concatenate(out_w)
        order = np.argsort(rows, kind="stable")
        indptr = np.zeros(found.rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=found.rows), out=indptr[1:])
        return Neighbourhoods(indptr, labels[order], weights[order])

    def _apply(self, hoods: Neighbourhoods, slots: np.ndarray, sign: int) -> None:
        """Add (insert) or subtract (evict) the batch's similarities.

        Rows of the batch itself change only on insert (a new log's density is the sum
        of its row); neighbours outside the batch change by ``sign * sim`` once.
        """
        c = self.cols
        if sign > 0:
            c.density[slots] += hoods.sums()
            c.count[slots] += hoods.counts().astype(np.int32)
        if len(hoods.labels) == 0:
            return
        nbr = self.slots_of(hoods.labels)
        in_batch = np.zeros(self.slots, dtype=bool)
        in_batch[slots] = True
        outside = ~in_batch[nbr]
        np.add.at(c.density, nbr[outside], sign * hoods.weights[outside])
        np.add.at(c.count, nbr[outside], np.int32(sign))

    def _collect(self, stats: BatchStats, started: float) -> None:
        self._level0_read = None  # a temporary of the call that ends here (see _level0)
        s = self.searcher.stats
        stats.cap_hits, stats.brute_rows = s.cap_hits, s.brute_rows
        s.cap_hits = s.brute_rows = 0
        stats.seconds = time.perf_counter() - started

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path, prefix: str) -> IndexMeta:
        """Write arrays, payloads and vectors (matrix or hnswlib file) under ``directory/prefix.*``."""
        n = self.slots
        meta = self._meta()
        _write_columns(directory, prefix, {name: getattr(self.cols, name)[:n] for name in _Arrays.NAMES}, self.payload[:n])
        if self._hnsw is None:
            assert self._matrix is not None
            np.save(directory / f"{prefix}.vectors.npy", self._matrix[:n])
        else:
            self._hnsw.save_index(str(directory / f"{prefix}.hnsw"))
            meta.hnsw_capacity = self._hnsw.get_max_elements()
            meta.hnsw_m = self._hnsw.M
        return meta

    def capture(self) -> tuple[IndexMeta, Callable[[Path, str], None]] | None:
        """A copy of what :meth:`save` writes and a function that writes it later, byte for byte the
        same files, from any thread.  None in HNSW mode (the graph is not copied cheaply: save it)."""
        if self._hnsw is not None or self._matrix is None:
            return None
        n = self.slots
        columns = {name: getattr(self.cols, name)[:n].copy() for name in _Arrays.NAMES}
        payload = self.payload[:n]  # a new list of immutable bytes
        matrix = self._matrix[:n].copy()

        def write(directory: Path, prefix: str) -> None:
            _write_columns(directory, prefix, columns, payload)
            np.save(directory / f"{prefix}.vectors.npy", matrix)

        return self._meta(), write

    def _meta(self) -> IndexMeta:
        return IndexMeta(dim=self.dim, mode=self.mode, slots=self.slots, live=self.live_count, free=list(self._free))

    @classmethod
    def load(cls, directory: Path, prefix: str, meta: IndexMeta, params: IndexParams) -> FunctionIndex:
        idx = cls(meta.dim, params)
        n = meta.slots
        with np.load(directory / f"{prefix}.columns.npz") as data:
            cols = _Arrays(**{name: data[name] for name in _Arrays.NAMES})
        capacity = max(n, 1)
        cols.grow(capacity)
        idx.cols = cols
        idx.slots = n
        idx.live_count = meta.live
        idx._free = list(meta.free)
        idx.payload = list(msgspec.msgpack.decode((directory / f"{prefix}.payload").read_bytes(), type=list[bytes | None]))
        if meta.mode == "exact":
            matrix = np.load(directory / f"{prefix}.vectors.npy")
            idx._matrix = np.zeros((capacity, meta.dim), dtype=np.float32)
            idx._matrix[:n] = matrix
        else:
            index = hnswlib.Index(space="ip", dim=meta.dim)
            index.load_index(str(directory / f"{prefix}.hnsw"), max_elements=meta.hnsw_capacity, allow_replace_deleted=True)
            idx._hnsw = index
            idx._matrix = None
        live = idx.live_slots()
        idx._uids = np.sort(cols.uid[live])
        if idx._hnsw is not None:
            idx._elements = Elements.of(live, cols.elem)
            vectors, labels = idx.live_vectors()
            for v, e in zip(vectors, labels.tolist(), strict=True):
                idx._elements.remember_hash(hash(v.tobytes()), e)
            idx._elements.merge()
            idx._find_orphans()
        return idx


def _write_columns(directory: Path, prefix: str, columns: dict[str, np.ndarray], payload: list[bytes | None]) -> None:
    np.savez(directory / f"{prefix}.columns.npz", **columns)
    (directory / f"{prefix}.payload").write_bytes(msgspec.msgpack.encode(payload))
