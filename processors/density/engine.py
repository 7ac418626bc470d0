"""The density engine of one partition: logs in, golden-set changes out.

Logs are indexed in batches (everything between two evaluation points, or the end
of a ``process`` call).  Evaluation points are where the partition's event time
(the largest ``timestamp_utc`` seen) enters a new ``select_interval_s`` window; there
the engine evicts (TTL behind the function's newest log, then the per-function cap)
and re-evaluates the golden set of every function that changed, emitting a
GoldenSample for each sample that enters and a tombstone for each that leaves.

Everything here depends only on the sequence of input records, never on the wall
clock or on how the runtime happened to batch them: densities are exact integer
sums, evictions and selections happen only at evaluation points, and ``selected_at``
is event time.  A replay from a checkpoint therefore re-emits exactly the records
the first run emitted, which is what makes the compacted golden topic converge.

*Idle evaluations* (``evaluate(idle=True)``, called by the processor after
``density.idle_evaluate_s`` of wall-clock quiet) are the one exception, and they are
kept out of that deterministic trajectory.  Evaluating a function depends only on its
own logs so far (eviction is relative to its own newest log, ``selected_at`` is that
log's time), so an idle evaluation publishes exactly what the next regular evaluation
point would publish if the function received no more logs before it; if that is how it
goes, the regular point adopts it ("promotion").  If more logs of the function come
first, the regular point publishes what it would have published without the idle one,
and also repairs every key the idle evaluation changed (its earlier value, or a
tombstone).  So idle outputs may depend on wall-clock timing, but once a partition is
quiet the compacted golden table is the same however the run was timed, restarted or
killed: the deterministic trajectory plus one evaluation of the final logs.  Evictions
never need undoing: TTL (behind a monotonic newest time) and the cap (newest first by
event time, then arrival) give the same index whether applied once or several times.

*Curation* (topic ``curation``, held by the processor and shared with the engine as
:attr:`PartitionEngine.decisions`) is an operator's overlay on selection: a rejected log is
never a candidate (the next best representative of its region may take its place), a pinned
live SUCCESS log is added after selection whatever its density.  A new decision marks its
function for evaluation (:meth:`PartitionEngine.curate`), so the idle evaluation publishes it
without waiting for more logs.  Decisions arrive on their own topic, so *when* a sample enters
(its ``selected_at`` and the density it carries) may depend on when a decision arrived; which
keys the golden table holds, with their strategy and pin, depends only on the logs and the
decisions in force.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from stream.contract.deadletter import INVALID_VALUE, INVALID_VECTOR, WRONG_DIMENSION
from stream.contract.events import ExecutionLog, GoldenSample, encode
from stream.contract.processing import Output
from stream.contract.sensors import DensitySensor

from . import chatml
from .embedder import Embedder
from .index import STATUS_CODES, FunctionIndex, IndexMeta, IndexParams
from .selection import SelectionParams, select
from .vectors import from_fixed, normalise, uid_hash

STATE_FILE = "density.json"
STATE_VERSION = 3  # 2: identical vectors share one HNSW element (column elem); 3: published values, idle evaluations
_STALE = "stale"  # strategy of a sample inherited from an unusable checkpoint
_PINNED = "+pinned"  # suffix of a published strategy whose sample is pinned ("steady+pinned")
REJECT, PIN = "reject", "pin"

# What a golden key shows: (strategy, density as published, selected_at in ms).
Entry = tuple[str, float, int]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What the engine needs from ``DensitySettings``, in its own units."""

    index: IndexParams = field(default_factory=IndexParams)
    selection: SelectionParams = field(default_factory=SelectionParams)
    ttl_ms: int = 7 * 24 * 3600 * 1000  # 0 = no TTL
    max_per_function: int = 100_000
    interval_ms: int = 5_000
    system_prompt: str = "You are the {function} function of an LLM service."
    mask_keys: tuple[str, ...] = ()
    embedder: str = "hashing"
    embed_dim: int = 384
    embed_model: str = ""

    def fingerprint(self) -> str:
        """Settings that shape stored vectors and densities; a checkpoint made under others is unusable."""
        shaping = [self.index.epsilon, self.embedder, self.embed_dim, self.embed_model, sorted(k.lower() for k in self.mask_keys)]
        return hashlib.sha256(msgspec.json.encode(shaping)).hexdigest()[:16]


@dataclass(frozen=True)
class FunctionSnapshot:
    """One function's index as it stands, a row per indexed log (for pictures and inspection)."""

    function: str
    uuids: tuple[str | None, ...]  # None: a log that is not SUCCESS (only SUCCESS logs keep their payload)
    vectors: np.ndarray  # (n, dim) unit vectors
    densities: np.ndarray  # (n,) D(i)
    success: np.ndarray  # (n,) bool: SUCCESS logs, the only selectable ones
    strategy: np.ndarray  # (n,) "" | "steady" | "anomaly": the golden set as published
    inputs: tuple[Any, ...] = ()  # each log's inputs as it arrived (None where not kept: not SUCCESS)


@dataclass(slots=True)
class Refused:
    """An input the engine will not index (it becomes a dead letter)."""

    ref: Any
    error_type: str
    error: str


@dataclass(slots=True)
class _Pending:
    refs: list[Any] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    uid: list[int] = field(default_factory=list)
    uids: set[int] = field(default_factory=set)
    status: list[int] = field(default_factory=list)
    payloads: list[bytes | None] = field(default_factory=list)


@dataclass(slots=True)
class FunctionState:
    name: str
    dim: int = 0
    source: str = ""  # "event" (vectors come in the logs) or "embedder"
    index: FunctionIndex | None = None
    watermark_ms: int | None = None  # newest event time of this function
    seq: int = 0
    dirty: bool = False
    published: dict[str, str] = field(default_factory=dict)  # uuid -> strategy, as on the golden topic
    stamps: dict[str, tuple[float, int]] = field(default_factory=dict)  # uuid -> (density, selected_at ms) as on the topic
    # What the deterministic trajectory (regular evaluation points only) has published, while an
    # idle evaluation since the last regular point shows something else on the topic; None otherwise.
    held: dict[str, Entry] | None = None
    pending: _Pending = field(default_factory=_Pending)
    dirty_since: float | None = None  # wall clock when indexed logs started waiting for evaluation (metrics only)

    def shown(self) -> dict[str, Entry]:
        """Every published key with the value the golden topic holds for it."""
        return {u: (s, *self.stamps.get(u, (0.0, 0))) for u, s in self.published.items()}


class _FunctionMeta(msgspec.Struct):
    name: str
    prefix: str
    dim: int
    source: str
    watermark_ms: int | None
    seq: int
    dirty: bool
    published: dict[str, str]
    index: IndexMeta | None
    stamps: dict[str, tuple[float, int]] = {}
    held: dict[str, tuple[str, float, int]] | None = None


class _PartitionMeta(msgspec.Struct):
    version: int
    fingerprint: str
    watermark_ms: int | None
    window: int | None
    functions: list[_FunctionMeta]


class PartitionEngine:
    """Density index, golden selection and emission for the functions of one partition."""

    def __init__(
        self,
        config: EngineConfig,
        embedder: Embedder | None,
        sensor: DensitySensor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.embedder = embedder
        self.sensor = sensor if sensor is not None else DensitySensor()
        self.functions: dict[str, FunctionState] = {}
        self.watermark_ms: int | None = None
        self.window: int | None = None
        self._mask = chatml.masker(config.mask_keys)
        # {function: {uuid: "reject" | "pin"}}: the decisions of the curation partition with this
        # partition's number (the processor owns and persists them, and may replace this mapping).
        self.decisions: dict[str, dict[str, str]] = {}

    def curate(self, function: str) -> None:
        """A decision about one of ``function``'s keys changed: evaluate the function again."""
        fn = self.functions.get(function)
        if fn is None:
            return  # applied when its logs arrive
        fn.dirty = True
        if fn.dirty_since is None:
            fn.dirty_since = self.clock()

    # ------------------------------------------------------------------ input
    def offer(self, log: ExecutionLog, ref: Any) -> tuple[list[Output], list[Refused]]:
        """Take one log (in partition order): an evaluation point may come first."""
        fn = self.functions.get(log.function_name)
        refused = self._check(log, fn)
        if refused is not None:
            return [], [Refused(ref, *refused)]
        ts_ms = _millis(log.timestamp_utc)
        outputs, late = self._advance(ts_ms)
        if fn is None:
            fn = self.functions[log.function_name] = FunctionState(log.function_name)
        if fn.index is None:
            self._first_log(fn, log)
        fn.watermark_ms = ts_ms if fn.watermark_ms is None else max(fn.watermark_ms, ts_ms)
        if log.status == "CACHE_HIT":
            # The original call was logged (and indexed) already; a cache hit would count it twice.
            self.sensor.on_skipped(fn.name, "cache_hit")
            return outputs, late
        uid = uid_hash(log.uuid)
        assert fn.index is not None
        if fn.index.has_uid(uid) or uid in fn.pending.uids:
            self.sensor.on_skipped(fn.name, "duplicate")
            return outputs, late
        inputs = self._mask(log.inputs)
        try:
            payload = msgspec.msgpack.encode((log.uuid, ts_ms, inputs, log.return_value)) if log.status == "SUCCESS" else None
        except OverflowError:  # valid JSON, but no 64-bit integer holds it: nothing downstream could carry it either
            return outputs, [*late, Refused(ref, INVALID_VALUE, "an integer in inputs or return_value does not fit in 64 bits")]
        p = fn.pending
        p.refs.append(ref)
        p.ts.append(ts_ms)
        p.uid.append(uid)
        p.uids.add(uid)
        p.status.append(STATUS_CODES[log.status])
        if fn.source == "event":
            p.vectors.append(log.vector)  # type: ignore[arg-type]
        else:
            p.texts.append(chatml.embedding_text(inputs, log.return_value))
        p.payloads.append(payload)
        return outputs, late

    def _check(self, log: ExecutionLog, fn: FunctionState | None) -> tuple[str, str] | None:
        """Why a log cannot be indexed in its function (vector source and dimension), or None."""
        has_vector = log.vector is not None
        if fn is None or fn.index is None:
            if not has_vector and self.embedder is None:
                return INVALID_VECTOR, "log has no vector and no embedder is configured - at `$.vector`"
            return None
        if fn.source == "event" and not has_vector:
            return INVALID_VECTOR, f"{fn.name!r} logs carry their own {fn.dim}-d vectors; this one has none - at `$.vector`"
        if fn.source == "embedder" and has_vector:
            return INVALID_VECTOR, (
                f"{fn.name!r} logs are embedded here ({fn.dim}-d); a log carrying its own vector would mix two "
                "vector spaces - at `$.vector`"
            )
        if has_vector and len(log.vector) != fn.dim:  # type: ignore[arg-type]
            return WRONG_DIMENSION, f"vector has {len(log.vector)} dimensions but {fn.name!r} uses {fn.dim} - at `$.vector`"  # type: ignore[arg-type]
        return None

    def _first_log(self, fn: FunctionState, log: ExecutionLog) -> None:
        if log.vector is not None:
            fn.source, fn.dim = "event", len(log.vector)
        else:
            assert self.embedder is not None
            fn.source, fn.dim = "embedder", self.embedder.dim
        fn.index = FunctionIndex(fn.dim, self.config.index)

    def _advance(self, ts_ms: int) -> tuple[list[Output], list[Refused]]:
        interval = self.config.interval_ms
        if self.watermark_ms is None:
            self.watermark_ms, self.window = ts_ms, ts_ms // interval
            return [], []
        watermark = max(self.watermark_ms, ts_ms)
        window = watermark // interval
        outputs: list[Output] = []
        refused: list[Refused] = []
        if self.window is None or window > self.window:
            outputs, refused = self.evaluate()
        self.watermark_ms, self.window = watermark, window
        return outputs, refused

    # ------------------------------------------------------------------ indexing
    def flush(self) -> list[Refused]:
        """Index every pending log (one batch per function)."""
        refused: list[Refused] = []
        for fn in self.functions.values():
            if fn.pending.refs:
                refused.extend(self._flush_function(fn))
        return refused

    def _flush_function(self, fn: FunctionState) -> list[Refused]:
        p, fn.pending = fn.pending, _Pending()
        assert fn.index is not None
        if fn.source == "event":
            raw = np.array(p.vectors, dtype=np.float64)
            why = "vector is zero or not finite: it has no direction - at `$.vector`"
            bad_type = INVALID_VECTOR
        else:
            assert self.embedder is not None
            raw = self.embedder.embed(p.texts)
            why = "nothing to embed: the inputs and output render to no tokens"
            bad_type = INVALID_VALUE
        unit, ok = normalise(raw)
        refused = [Refused(p.refs[i], bad_type, why) for i in np.flatnonzero(~ok)]
        if not ok.any():
            return refused
        keep = np.flatnonzero(ok)
        n = len(keep)
        seq = np.arange(fn.seq, fn.seq + n, dtype=np.int64)
        fn.seq += n
        _slots, stats = fn.index.insert(
            unit[keep],
            np.array(p.ts, dtype=np.int64)[keep],
            seq,
            np.array(p.uid, dtype=np.int64)[keep],
            np.array(p.status, dtype=np.uint8)[keep],
            [p.payloads[i] for i in keep.tolist()],
        )
        fn.dirty = True
        if fn.dirty_since is None:
            fn.dirty_since = self.clock()
        self.sensor.on_indexed(fn.name, n, stats.seconds, stats.cap_hits, stats.brute_rows)
        return refused

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, *, idle: bool = False) -> tuple[list[Output], list[Refused]]:
        """Flush, then evict and re-select every function that changed since the last evaluation.

        ``idle``: an evaluation the wall clock asked for (see the module docstring); the
        deterministic trajectory does not move.  A regular evaluation adopts what an idle one
        published for every function that has had no new log since.
        """
        refused = self.flush()
        outputs: list[Output] = []
        now = self.clock()
        for name in sorted(self.functions):
            fn = self.functions[name]
            if fn.dirty:
                outputs.extend(self._evaluate_function(fn, idle))
                fn.dirty = False
                if fn.dirty_since is not None:
                    self.sensor.on_evaluation_wait(fn.name, max(0.0, now - fn.dirty_since))
                    fn.dirty_since = None
            elif not idle:
                fn.held = None  # the idle evaluation saw the logs this point would have seen: it stands
        return outputs, refused

    def unevaluated(self) -> bool:
        """Whether some logs were taken but not evaluated yet."""
        return any(fn.dirty or fn.pending.refs for fn in self.functions.values())

    def waiting(self, now: float) -> dict[str, float]:
        """{function: seconds its oldest unevaluated log has waited} for every function known here."""
        return {name: (now - fn.dirty_since if fn.dirty_since is not None else 0.0) for name, fn in self.functions.items()}

    def _evaluate_function(self, fn: FunctionState, idle: bool = False) -> list[Output]:
        started = time.perf_counter()
        index = fn.index
        if index is None:  # known only from an older checkpoint's golden set (rebuild): it all leaves
            chosen: dict[str, tuple[str, int]] = {}
        else:
            self._evict(fn, index)
            decided = self.decisions.get(fn.name, {})
            rejected = [uid_hash(u) for u, d in decided.items() if d == REJECT]
            sel = select(index, self.config.selection, np.array(rejected, dtype=np.int64) if rejected else None)
            chosen = {}
            for strategy, slots in (("steady", sel.steady), ("anomaly", sel.anomaly)):
                for s in slots.tolist():
                    payload = index.payload[s]
                    assert payload is not None, "only SUCCESS logs (which keep their payload) are selected"
                    chosen[msgspec.msgpack.decode(payload)[0]] = (strategy, s)
            pins = {u for u, d in decided.items() if d == PIN}
            if pins:
                for uuid, s in _live_slots_of(index, pins):
                    if uuid in chosen:
                        strategy = chosen[uuid][0]
                    else:  # not selected on its own: named after the side of the anomaly cut it is on
                        cut = sel.anomaly_cut
                        strategy = "anomaly" if cut is not None and int(index.cols.density[s]) <= cut else "steady"
                    chosen[uuid] = (strategy + _PINNED, s)
        shown = fn.shown()  # what the topic holds
        base = fn.held if fn.held is not None else shown  # what the deterministic trajectory has published
        wm = fn.watermark_ms or 0
        target: dict[str, Entry] = {}
        for uuid, (strategy, slot) in chosen.items():
            kept = base.get(uuid)
            if kept is not None and _plain(kept[0]) == _plain(strategy):
                target[uuid] = (strategy, kept[1], kept[2])  # published earlier: it keeps the value it entered with
            else:
                assert index is not None
                target[uuid] = (strategy, _density(index, slot), wm)
        outputs: list[Output] = []
        for uuid in sorted(set(shown) - set(target)):
            outputs.append(Output("golden", _key(fn.name, uuid), None))
            self.sensor.on_golden_change(fn.name, _plain(shown[uuid][0]), "leave")
        for uuid, (strategy, slot) in chosen.items():
            entry = target[uuid]
            if shown.get(uuid) == entry:
                continue
            assert index is not None
            sample = self._sample(fn, index, slot, strategy, _datetime(entry[2]), density=entry[1])
            outputs.append(Output("golden", _key(fn.name, uuid), encode(sample)))
            if uuid not in shown or _plain(shown[uuid][0]) != _plain(strategy):
                self.sensor.on_golden_change(fn.name, _plain(strategy), "enter")
        fn.published = {u: e[0] for u, e in target.items()}
        fn.stamps = {u: (e[1], e[2]) for u, e in target.items()}
        fn.held = base if idle else None
        self.sensor.on_golden_set(fn.name, _counts(fn.published))
        if index is not None:
            live = index.live_slots()
            self.sensor.on_index(fn.name, np.asarray(from_fixed(index.cols.density[live])))
        self.sensor.on_selection(fn.name, time.perf_counter() - started)
        return outputs

    def _evict(self, fn: FunctionState, index: FunctionIndex) -> None:
        live = index.live_slots()
        if len(live) == 0:
            return
        ts = index.cols.ts[live]
        expired = np.zeros(len(live), dtype=bool)
        if self.config.ttl_ms > 0 and fn.watermark_ms is not None:
            expired = ts < fn.watermark_ms - self.config.ttl_ms
        over = int((~expired).sum()) - self.config.max_per_function
        capped = np.zeros(len(live), dtype=bool)
        if over > 0:
            rest = np.flatnonzero(~expired)
            oldest = rest[np.lexsort((index.cols.seq[live[rest]], ts[rest]))[:over]]
            capped[oldest] = True
        if expired.any() or capped.any():
            index.evict(live[expired | capped])
            if expired.any():
                self.sensor.on_evicted(fn.name, "ttl", int(expired.sum()))
            if capped.any():
                self.sensor.on_evicted(fn.name, "cap", int(capped.sum()))

    def _sample(
        self, fn: FunctionState, index: FunctionIndex, slot: int, strategy: str, selected_at: datetime, density: float | None = None
    ) -> GoldenSample:
        payload = index.payload[slot]
        assert payload is not None
        uuid, ts_ms, inputs, return_value = msgspec.msgpack.decode(payload)
        return GoldenSample(
            uuid=uuid,
            function_name=fn.name,
            strategy=_plain(strategy),  # type: ignore[arg-type]
            pinned=strategy.endswith(_PINNED),
            density=_density(index, slot) if density is None else density,
            messages=chatml.messages(self.config.system_prompt, fn.name, inputs, return_value),
            source_timestamp=_datetime(ts_ms),
            selected_at=selected_at,
        )

    # ------------------------------------------------------------------ views
    def golden(self) -> dict[str, dict[str, str]]:
        """{function: {uuid: strategy}} as published."""
        return {name: {u: _plain(s) for u, s in fn.published.items()} for name, fn in sorted(self.functions.items()) if fn.published}

    def pinned(self) -> dict[str, set[str]]:
        """{function: uuids published as pinned}."""
        return {name: {u for u, s in fn.published.items() if s.endswith(_PINNED)} for name, fn in sorted(self.functions.items())
                if any(s.endswith(_PINNED) for s in fn.published.values())}

    def samples(self) -> list[GoldenSample]:
        """The published golden set as full samples (for ``extract``)."""
        out = []
        for name in sorted(self.functions):
            fn = self.functions[name]
            index = fn.index
            if index is None:
                continue
            # Only the published logs' slots: decoding every live log's uuid held ~30 MB at 100k logs.
            slot_of = dict(_live_slots_of(index, set(fn.published)))

            def rank(item: tuple[str, str], index: FunctionIndex = index, slot_of: dict[str, int] = slot_of) -> tuple[bool, int, str]:
                uuid, strategy = item  # steady first, then by density (densest first)
                return _plain(strategy) != "steady", -int(index.cols.density[slot_of[uuid]]), uuid

            for uuid, strategy in sorted(fn.published.items(), key=rank):
                out.append(self._sample(fn, index, slot_of[uuid], strategy, _datetime(fn.watermark_ms or 0)))
        return out

    def snapshot(self, function: str) -> FunctionSnapshot | None:
        """``function``'s indexed logs with their vectors, densities and golden strategy; None if it has no index."""
        fn = self.functions.get(function)
        if fn is None or fn.index is None:
            return None
        return _snapshot(function, fn.index, fn.published)

    @classmethod
    def read_snapshot(cls, directory: Path, function: str, config: EngineConfig) -> FunctionSnapshot | None:
        """:meth:`snapshot` of one function of a checkpoint, loading only that function's index."""
        for m in cls.read_meta(directory).functions:
            if m.name == function and m.index is not None:
                return _snapshot(function, FunctionIndex.load(directory, m.prefix, m.index, config.index), m.published)
        return None

    @classmethod
    def indexed_functions(cls, directory: Path) -> list[str]:
        """The functions with an index in a checkpoint directory."""
        return [m.name for m in cls.read_meta(directory).functions if m.index is not None]

    def summary(self) -> dict[str, Any]:
        out = {}
        for name, fn in sorted(self.functions.items()):
            counts = _counts(fn.published)
            out[name] = {"logs": fn.index.live_count if fn.index else 0, "mode": fn.index.mode if fn.index else "-", **counts}
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        """Write the whole partition state into ``directory`` (pending logs are flushed by the caller)."""
        metas = self._metas(lambda name, prefix: self.functions[name].index.save(directory, prefix))  # type: ignore[union-attr]
        state = _PartitionMeta(STATE_VERSION, self.config.fingerprint(), self.watermark_ms, self.window, metas)
        (directory / STATE_FILE).write_bytes(msgspec.json.encode(state))

    def capture(self) -> Callable[[Path], None] | None:
        """A copy of the partition state and what writes it later, from any thread, as :meth:`save`
        would have now (the same files, byte for byte).  None when an index is in HNSW mode."""
        writers: dict[str, tuple[IndexMeta, Callable[[Path, str], None]]] = {}
        for name, fn in self.functions.items():
            if fn.index is not None:
                captured = fn.index.capture()
                if captured is None:
                    return None
                writers[name] = captured
        metas = self._metas(lambda name, prefix: writers[name][0])
        state = _PartitionMeta(STATE_VERSION, self.config.fingerprint(), self.watermark_ms, self.window, metas)

        def write(directory: Path) -> None:
            for m in metas:
                if m.index is not None:
                    writers[m.name][1](directory, m.prefix)
            (directory / STATE_FILE).write_bytes(msgspec.json.encode(state))

        return write

    def _metas(self, index_meta: Callable[[str, str], IndexMeta]) -> list[_FunctionMeta]:
        """Each function's saved description; ``index_meta(name, prefix)`` is called for those with an index."""
        metas = []
        for i, name in enumerate(sorted(self.functions)):
            fn = self.functions[name]
            assert not fn.pending.refs, "save_state after process() always finds the pending batch flushed"
            prefix = f"f{i}"
            metas.append(_FunctionMeta(
                name, prefix, fn.dim, fn.source, fn.watermark_ms, fn.seq, fn.dirty, dict(fn.published),
                index_meta(name, prefix) if fn.index is not None else None,
                stamps=dict(fn.stamps), held=dict(fn.held) if fn.held is not None else None,
            ))
        return metas

    @staticmethod
    def read_meta(directory: Path) -> _PartitionMeta:
        return msgspec.json.decode((directory / STATE_FILE).read_bytes(), type=_PartitionMeta)

    def load(self, directory: Path, meta: _PartitionMeta) -> None:
        """Restore a partition saved by :meth:`save` under the same fingerprint."""
        self.watermark_ms, self.window = meta.watermark_ms, meta.window
        for m in meta.functions:
            fn = FunctionState(
                m.name, dim=m.dim, source=m.source, watermark_ms=m.watermark_ms, seq=m.seq, dirty=m.dirty, published=dict(m.published),
                stamps={u: (float(d), int(t)) for u, (d, t) in m.stamps.items()},
                held={u: (s, float(d), int(t)) for u, (s, d, t) in m.held.items()} if m.held is not None else None,
                dirty_since=self.clock() if m.dirty else None,
            )
            if m.index is not None:
                fn.index = FunctionIndex.load(directory, m.prefix, m.index, self.config.index)
            self.functions[m.name] = fn

    def inherit_published(self, meta: _PartitionMeta) -> None:
        """Start empty but remember what an unusable checkpoint had published, so it can be withdrawn."""
        for m in meta.functions:
            if m.published:
                # An unknown strategy: a sample selected again is re-emitted with its new density.
                stale = dict.fromkeys(m.published, _STALE)
                self.functions[m.name] = FunctionState(m.name, published=stale, dirty=True)


def _payload_fields(index: FunctionIndex, slots: np.ndarray) -> tuple[list[str | None], list[Any]]:
    """The uuid and the inputs of each slot's log (None when its payload is not kept: not SUCCESS)."""
    uuids: list[str | None] = []
    inputs: list[Any] = []
    for slot in slots.tolist():
        payload = index.payload[slot]
        uuid, _ts, given, _ret = msgspec.msgpack.decode(payload) if payload is not None else (None, None, None, None)
        uuids.append(uuid)
        inputs.append(given)
    return uuids, inputs


def _snapshot(function: str, index: FunctionIndex, published: dict[str, str]) -> FunctionSnapshot:
    live = index.live_slots()
    uuids, inputs = _payload_fields(index, live)
    return FunctionSnapshot(
        function=function,
        uuids=tuple(uuids),
        vectors=index.vectors(live).astype(np.float64),
        densities=np.asarray(from_fixed(index.cols.density[live]), dtype=np.float64),
        success=index.cols.status[live] == STATUS_CODES["SUCCESS"],
        strategy=np.array([_plain(published.get(u, "")) if u is not None else "" for u in uuids], dtype=object),
        inputs=tuple(inputs),
    )


def _counts(published: dict[str, str]) -> dict[str, int]:
    counts = {"steady": 0, "anomaly": 0}
    for strategy in map(_plain, published.values()):
        if strategy in counts:
            counts[strategy] += 1
    return counts


def _plain(strategy: str) -> str:
    """A published strategy without its pin mark."""
    return strategy.removesuffix(_PINNED)


def _live_slots_of(index: FunctionIndex, uuids: set[str]) -> list[tuple[str, int]]:
    """(uuid, slot) of the live SUCCESS logs among ``uuids`` (pinned or published ones), in slot order."""
    live = index.live_slots()
    if len(live) == 0:
        return []
    hashes = np.array([uid_hash(u) for u in uuids], dtype=np.int64)
    slots = live[np.isin(index.cols.uid[live], hashes) & (index.cols.status[live] == STATUS_CODES["SUCCESS"])]
    out = []
    for s in slots.tolist():
        payload = index.payload[s]
        if payload is not None and (uuid := msgspec.msgpack.decode(payload)[0]) in uuids:  # not a hash collision
            out.append((uuid, s))
    return out


def _density(index: FunctionIndex, slot: int) -> float:
    """A log's density as a golden sample carries it."""
    return round(float(from_fixed(int(index.cols.density[slot]))), 6)


def _key(function_name: str, uuid: str) -> bytes:
    return f"{function_name}/{uuid}".encode()


def _millis(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
