"""Engine 1 as a stream processor: ``executions`` in, golden-set changes on ``golden`` out.

One :class:`~processors.density.engine.PartitionEngine` per owned partition (keys
are function names, so a function's logs, and its index, live in one partition).
State is checkpointed per partition; without a checkpoint a partition is rebuilt
from the beginning of the topic, because the index is derived from all of it.

Curation decisions (compacted topic ``curation``, key ``function/uuid``, partitioned by
function like the logs) are kept per curation partition, checkpointed with it and read
from the beginning without a checkpoint (the topic is small and compacted); the engine of
executions partition p follows the decisions of curation partition p, which the consumer
group's range assignment gives to the same instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from threadpoolctl import threadpool_limits

from stream.contract.config import DensitySettings
from stream.contract.deadletter import INVALID_VALUE, WRONG_TYPE
from stream.contract.events import Curation, ExecutionLog
from stream.contract.processing import FROM_BEGINNING, REBUILD, Processor, Record, Rejection, Result
from stream.contract.sensors import DensitySensor

from .embedder import Embedder, make_embedder
from .engine import PIN, REJECT, STATE_VERSION, EngineConfig, FunctionSnapshot, PartitionEngine
from .index import IndexParams
from .selection import SelectionParams

log = logging.getLogger(__name__)

CURATION = "curation"
CURATION_FILE = "curation.json"


def engine_config(s: DensitySettings, embedder: Embedder | None = None) -> EngineConfig:
    """The engine's view of the ``density`` settings section."""
    return EngineConfig(
        index=IndexParams(
            epsilon=s.epsilon, exact_threshold=s.exact_threshold, m=s.hnsw_m, ef_construction=s.hnsw_ef_construction,
            ef=s.hnsw_ef, initial_k=s.initial_k, max_k=s.max_k, threads=s.query_threads,
        ),
        selection=SelectionParams(
            steady_k=s.steady_k, steady_min_density=s.steady_min_density,
            dedup_similarity=s.dedup_similarity if s.dedup_similarity is not None else 1.0 - s.epsilon,
            anomaly_k=s.anomaly_k, anomaly_percentile=s.anomaly_percentile, anomaly_min_logs=s.anomaly_min_logs,
        ),
        ttl_ms=int(s.ttl_s * 1000),
        max_per_function=s.max_per_function,
        interval_ms=max(1, int(s.select_interval_s * 1000)),
        system_prompt=s.system_prompt,
        mask_keys=tuple(s.mask_keys),
        embedder=embedder.name if embedder is not None else s.embedder,
        embed_dim=embedder.dim if embedder is not None else s.embed_dim,
        embed_model=str(s.embed_model_path or ""),
    )


def indexed_functions(checkpoint: Path) -> list[str]:
    """The functions with an index in a density checkpoint directory."""
    return PartitionEngine.indexed_functions(checkpoint)


def read_snapshot(checkpoint: Path, function: str, settings: DensitySettings | None = None) -> FunctionSnapshot | None:
    """One function's indexed logs (vectors, densities, golden strategy) from a density checkpoint directory."""
    return PartitionEngine.read_snapshot(checkpoint, function, engine_config(settings or DensitySettings()))


class DensityProcessor(Processor):
    """Incremental density index per function and golden selection (MISSION.md, Engine 1)."""

    name: ClassVar[str] = "density"
    inputs: ClassVar[tuple[str, ...]] = ("executions", CURATION)
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        settings: DensitySettings | None = None,
        *,
        sensor: DensitySensor | None = None,
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or DensitySettings()
        self._clock = clock
        s = self.settings
        # Built up front: a missing extra or model directory stops start-up, not every log.
        self.embedder = embedder or make_embedder(s.embedder, dim=s.embed_dim, model_path=s.embed_model_path)
        if s.blas_threads > 0:
            # Process-wide (BLAS pools are global), after the embedder loaded its libraries.  The
            # products here are a few MB per batch: more threads mostly busy-wait on the cores the
            # broker and the consumer need.
            threadpool_limits(limits=s.blas_threads, user_api="blas")
        self.config = engine_config(s, self.embedder)
        self.sensor = sensor if sensor is not None else DensitySensor()
        self.engines: dict[int, PartitionEngine] = {}
        self._last_input: dict[int, float] = {}  # partition -> wall clock of its last record
        # curation partition -> {function: {uuid: "reject" | "pin"}}; engine p reads the same dict object
        self.decisions: dict[int, dict[str, dict[str, str]]] = {}

    def _new_engine(self, partition: int) -> PartitionEngine:
        engine = PartitionEngine(self.config, self.embedder, self.sensor, self._clock)
        engine.decisions = self.decisions.setdefault(partition, {})
        return engine

    def process(self, records: list[Record]) -> Result:
        if records and records[0].topic == CURATION:
            return self._curate(records)
        result = Result()
        touched: list[PartitionEngine] = []
        for record in records:
            engine = self.engines.get(record.partition)
            if engine is None:  # called without load_state (plain tests): start empty
                engine = self.engines[record.partition] = self._new_engine(record.partition)
            if engine not in touched:
                touched.append(engine)
            event = record.value
            if not isinstance(event, ExecutionLog):
                result.rejected.append(Rejection(record, WRONG_TYPE, f"expected an execution log, got {type(event).__name__}"))
                continue
            outputs, refused = engine.offer(event, record)
            result.outputs.extend(outputs)
            result.rejected.extend(Rejection(r.ref, r.error_type, r.error) for r in refused)
        for engine in touched:
            result.rejected.extend(Rejection(r.ref, r.error_type, r.error) for r in engine.flush())
        if records:
            self._last_input[records[0].partition] = self._clock()
        return result

    def _curate(self, records: list[Record]) -> Result:
        """Decisions of one curation partition: remember them, mark their functions for evaluation."""
        result = Result()
        decisions = self.decisions.setdefault(records[0].partition, {})
        changed: set[str] = set()
        for record in records:
            key = (record.key or b"").decode("utf-8", errors="replace")
            function, _, uuid = key.partition("/")
            event = record.value
            if event is None:  # a tombstone: the decision is withdrawn
                if not function or not uuid:
                    continue  # nothing could have been decided under such a key
                if decisions.get(function, {}).pop(uuid, None) is not None:
                    changed.add(function)
                    if not decisions[function]:
                        del decisions[function]
                continue
            if not isinstance(event, Curation):
                result.rejected.append(Rejection(record, WRONG_TYPE, f"expected a curation decision, got {type(event).__name__}"))
                continue
            if key != f"{event.function_name}/{event.uuid}":
                result.rejected.append(Rejection(
                    record, INVALID_VALUE, f"key {key[:300]!r} is not function_name/uuid of the decision - at `$.uuid`"
                ))
                continue
            assert event.decision in (REJECT, PIN)
            if decisions.get(function, {}).get(uuid) != event.decision:
                decisions.setdefault(function, {})[uuid] = event.decision
                changed.add(function)
        engine = self.engines.get(records[0].partition)
        if engine is not None:
            for function in sorted(changed):
                engine.curate(function)
        return result

    def tick(self, now: float) -> Result:
        """Idle evaluation: a partition whose logs wait for an evaluation point is evaluated after
        ``density.idle_evaluate_s`` without input (see :mod:`processors.density.engine`)."""
        result = Result()
        idle_s = self.settings.idle_evaluate_s
        waiting: dict[str, float] = {}
        for partition, engine in sorted(self.engines.items()):
            if idle_s > 0 and engine.unevaluated() and now - self._last_input.get(partition, now) >= idle_s:
                outputs, refused = engine.evaluate(idle=True)
                result.outputs.extend(outputs)
                if refused:  # process() flushes every batch, so nothing should be pending here
                    log.error("idle evaluation of partition %d refused %d logs it cannot dead-letter", partition, len(refused))
            waiting.update(engine.waiting(now))
        self.sensor.on_waiting(waiting)
        return result

    def save_state(self, topic: str, partition: int, directory: Path) -> None:
        if topic == CURATION:
            decisions = self.decisions.get(partition, {})
            (directory / CURATION_FILE).write_bytes(msgspec.json.encode(decisions, order="sorted"))
            return
        engine = self.engines.get(partition)
        if engine is None:
            engine = self._new_engine(partition)
        engine.save(directory)

    def capture_state(self, topic: str, partition: int) -> Callable[[Path], None] | None:
        """A copy of the partition's state, written later off the worker (None in HNSW mode: save_state)."""
        if topic == CURATION:
            data = msgspec.json.encode(self.decisions.get(partition, {}), order="sorted")

            def write(directory: Path) -> None:
                (directory / CURATION_FILE).write_bytes(data)

            return write
        engine = self.engines.get(partition)
        if engine is None:
            engine = self._new_engine(partition)
        return engine.capture()

    def _load_curation(self, partition: int, directory: Path | None) -> int:
        decisions = self.decisions.setdefault(partition, {})  # engine `partition` may hold this very dict
        decisions.clear()
        if directory is not None:
            try:
                saved = msgspec.json.decode((directory / CURATION_FILE).read_bytes(), type=dict[str, dict[str, str]])
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("curation checkpoint of partition %d is unreadable (%s): reading the topic again", partition, exc)
                return REBUILD
            decisions.update(saved)
        engine = self.engines.get(partition)
        if engine is not None:
            for function in sorted(decisions):
                engine.curate(function)  # its checkpoint may predate some of these decisions
        return FROM_BEGINNING  # the topic is small and compacted: without a checkpoint, read it all

    def load_state(self, topic: str, partition: int, directory: Path | None) -> int:
        if topic == CURATION:
            return self._load_curation(partition, directory)
        engine = self._new_engine(partition)
        self.engines[partition] = engine
        self._last_input[partition] = self._clock()  # a restored partition with unevaluated logs waits idle_evaluate_s
        if directory is None:
            return FROM_BEGINNING  # the index is derived from the whole topic
        try:
            meta = PartitionEngine.read_meta(directory)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("density checkpoint of %s[%d] is unreadable (%s): rebuilding from the beginning", topic, partition, exc)
            return REBUILD
        if meta.version != STATE_VERSION or meta.fingerprint != self.config.fingerprint():
            log.warning(
                "density checkpoint of %s[%d] was built under other index settings (epsilon, embedder or masking): "
                "rebuilding from the beginning; its golden samples are withdrawn unless selected again",
                topic, partition,
            )
            engine.inherit_published(meta)
            return REBUILD
        engine.load(directory, meta)
        for function in sorted(engine.decisions):
            engine.curate(function)  # decisions read since this checkpoint was written are applied
        log.info("density state of %s[%d] restored: %s", topic, partition, engine.summary())
        return FROM_BEGINNING

    def release(self, topic: str, partition: int) -> None:
        if topic == CURATION:
            self.decisions.get(partition, {}).clear()
            return
        engine = self.engines.pop(partition, None)
        self._last_input.pop(partition, None)
        if engine is not None:
            for name in engine.functions:
                self.sensor.on_released(name)

    def golden(self) -> dict[str, dict[str, str]]:
        """{function: {uuid: strategy}} over owned partitions, as published on ``golden``."""
        out: dict[str, dict[str, str]] = {}
        for engine in self.engines.values():
            out.update(engine.golden())
        return dict(sorted(out.items()))

    def pinned(self) -> dict[str, set[str]]:
        """{function: uuids published as pinned} over owned partitions."""
        out: dict[str, set[str]] = {}
        for engine in self.engines.values():
            out.update(engine.pinned())
        return dict(sorted(out.items()))

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for engine in self.engines.values():
            out.update(engine.summary())
        return {"functions": dict(sorted(out.items()))}
