"""Golden write-back: the samples vector-trainer selects become VectorWave golden data.

A processor on the compacted ``vt.golden`` topic.  For each GoldenSample (whose
``uuid`` is the execution's UUID, as the density engine emits it) it calls
VectorWave's ``VectorWaveDatasetManager.register_as_golden``, which copies the
stored execution (its vector and return value) into VectorWave's golden dataset;
VectorWave's semantic cache and its pytest regression plugin then use it first.

- **Idempotent.**  ``register_as_golden`` names the golden object
  ``uuid5(execution uuid)`` but, in Lite mode, inserts a second copy when called
  twice; so the object is looked up first and registration is skipped when present.
- **Removal.**  VectorWave 1.0 has no API to remove golden data.  A tombstone (the
  sample left the golden set) therefore deletes the object through VectorWave's
  backend-neutral ``VectorStore.delete_by_filter`` (the call its own archiver uses),
  and only when the object carries our tag: golden data a person registered in
  VectorWave is never removed by vector-trainer.
- **Not there yet.**  The execution may reach VectorWave's store after its sample
  reaches us (VectorWave writes in batches).  Such samples wait in per-partition
  state, checkpointed with the input offset, and are retried with back-off; after
  ``give_up_s`` they are dead-lettered with the reason, never dropped.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.contract import events
from stream.contract.config import Settings
from stream.contract.deadletter import INVALID_VALUE, PROCESSING_ERROR, dead_letter
from stream.contract.events import GoldenSample
from stream.contract.processing import FROM_COMMITTED, Output, Processor, Record, Rejection, Result
from stream.contract.topics import DLQ, GOLDEN, TopicNames

from . import vw

log = logging.getLogger(__name__)

TAG = "vector-trainer"  # marks the golden objects this processor registered (and may remove)


class GoldenDataset:
    """VectorWave's golden dataset, through VectorWave's own API (Lite or Pro)."""

    def __init__(self) -> None:
        vw.require()
        from vectorwave.database.dataset import VectorWaveDatasetManager
        from weaviate.util import generate_uuid5  # how register_as_golden names the object

        self.manager = VectorWaveDatasetManager()
        self.store = self.manager.store
        self.collection = self.manager.settings.GOLDEN_COLLECTION_NAME
        self.executions = self.manager.settings.EXECUTION_COLLECTION_NAME
        self._object_id: Callable[[str], str] = generate_uuid5

    def get(self, log_uuid: str) -> Any | None:
        """The golden object made from execution ``log_uuid`` (a VectorWave ``StoreRecord``), if any."""
        return self.store.fetch_by_id(self.collection, self._object_id(log_uuid))

    def has_execution(self, log_uuid: str) -> bool:
        return self.store.fetch_by_id(self.executions, log_uuid) is not None

    def register(self, sample: GoldenSample) -> bool:
        note = f"selected by vector-trainer ({sample.strategy}, density {sample.density:.4g}) at {sample.selected_at.isoformat()}"
        return bool(self.manager.register_as_golden(sample.uuid, note=note, tags=[TAG, f"strategy:{sample.strategy}"]))

    def remove(self, log_uuid: str) -> int:
        return int(self.store.delete_by_filter(self.collection, {"original_uuid": log_uuid}))


class _Pending(msgspec.Struct, kw_only=True):
    """A sample waiting for its execution to appear in VectorWave (kept in the checkpoint)."""

    key: str
    offset: int
    raw_b64: str
    first_at: float
    next_at: float
    attempts: int = 0
    reason: str = ""


class _State(msgspec.Struct):
    pending: dict[str, _Pending] = {}


class GoldenMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.results = Counter(
            "vt_vectorwave_golden_writeback_total",
            "Golden samples and tombstones handled by the VectorWave write-back, by outcome",
            ["result"],
            registry=registry,
        )
        self.pending = Gauge(
            "vt_vectorwave_golden_pending", "Golden samples waiting for their execution to reach VectorWave", registry=registry
        )


class GoldenWriteBack(Processor):
    """Registers selected golden samples in VectorWave's golden dataset; removes them on tombstones."""

    name: ClassVar[str] = "vectorwave-golden"
    inputs: ClassVar[tuple[str, ...]] = (GOLDEN,)
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        dataset: GoldenDataset,
        *,
        golden_topic: str = "vt.golden",
        strategies: Iterable[str] = ("steady", "anomaly"),
        remove_on_tombstone: bool = True,
        retry_s: float = 5.0,
        give_up_s: float = 600.0,
        dlq_value_max_bytes: int = 65_536,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dataset = dataset
        self.golden_topic = golden_topic
        self.strategies = frozenset(strategies)
        self.remove_on_tombstone = remove_on_tombstone
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        self.dlq_value_max_bytes = dlq_value_max_bytes
        self.clock = clock
        self._pending: dict[int, dict[str, _Pending]] = {}
        self.metrics = GoldenMetrics(registry if registry is not None else CollectorRegistry())
        self.metrics.pending.set_function(lambda: float(sum(len(p) for p in self._pending.values())))

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry | None = None) -> GoldenWriteBack:
        vs = settings.vectorwave
        vw.configure(vs.mode or ("lite" if vs.lite_path is not None else None), vs.lite_path)
        return cls(
            GoldenDataset(),
            golden_topic=TopicNames(settings.topic_prefix).physical(GOLDEN),
            strategies=vs.golden_strategies,
            remove_on_tombstone=vs.golden_remove_on_tombstone,
            retry_s=vs.golden_retry_s,
            give_up_s=vs.golden_give_up_s,
            dlq_value_max_bytes=settings.runtime.dlq_value_max_bytes,
            registry=registry,
        )

    # ------------------------------------------------------------------ records
    def process(self, records: list[Record]) -> Result:
        result = Result()
        for record in records:
            key = (record.key or b"").decode("utf-8", errors="replace")
            if record.value is None:
                self._tombstone(record, key, result)
            else:
                self._sample(record, key, result)
        return result

    def _sample(self, record: Record, key: str, result: Result) -> None:
        sample: GoldenSample = record.value
        pending = self._pending.setdefault(record.partition, {})
        pending.pop(key, None)  # a newer version of this key supersedes a waiting one
        if not vw.UUID_RE.match(sample.uuid):
            result.rejected.append(
                Rejection(record, INVALID_VALUE, f"GoldenSample.uuid {sample.uuid!r} is not a VectorWave execution UUID - at `$.uuid`")
            )
            return
        if sample.strategy not in self.strategies:
            # Not written back: if an earlier version was, it no longer belongs in VectorWave.
            removed = self._remove(sample.uuid) == "removed"
            self.metrics.results.labels("removed" if removed else "skipped_strategy").inc()
            return
        outcome, reason = self._register(sample)
        if outcome is None:
            now = self.clock()
            pending[key] = _Pending(
                key=key,
                offset=record.offset,
                raw_b64=base64.b64encode(record.raw or b"").decode("ascii"),
                first_at=now,
                next_at=now + self.retry_s,
                attempts=1,
                reason=reason,
            )
            self.metrics.results.labels("waiting").inc()
        else:
            self.metrics.results.labels(outcome).inc()

    def _tombstone(self, record: Record, key: str, result: Result) -> None:
        _function, sep, log_uuid = key.rpartition("/")
        if not sep or not vw.UUID_RE.match(log_uuid):
            result.rejected.append(Rejection(record, INVALID_VALUE, f"tombstone key {key!r} is not function_name/execution-uuid"))
            return
        if self._pending.get(record.partition, {}).pop(key, None) is not None:
            self.metrics.results.labels("withdrawn_while_waiting").inc()
            return
        self.metrics.results.labels(self._remove(log_uuid) if self.remove_on_tombstone else "kept").inc()

    def _remove(self, log_uuid: str) -> str:
        """Delete the golden object of ``log_uuid`` if we registered it; say what happened."""
        existing = self.dataset.get(log_uuid)
        if existing is None:
            return "absent"
        if TAG not in (existing.properties.get("tags") or []):
            return "not_ours"  # registered in VectorWave by someone else: leave it
        self.dataset.remove(log_uuid)
        return "removed"

    def _register(self, sample: GoldenSample) -> tuple[str | None, str]:
        """("registered" | "already_registered", "") or (None, why it has to wait)."""
        try:
            if self.dataset.get(sample.uuid) is not None:
                return "already_registered", ""
            if not self.dataset.has_execution(sample.uuid):
                return None, f"execution {sample.uuid} is not in VectorWave's store"
            if self.dataset.register(sample):
                log.info("registered %s/%s as VectorWave golden data", sample.function_name, sample.uuid)
                return "registered", ""
            return None, f"register_as_golden({sample.uuid}) returned False (see VectorWave's log: e.g. no stored vector)"
        except Exception as exc:  # the store may be briefly unavailable: retry like a missing execution
            return None, f"VectorWave store error: {type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ time
    def tick(self, now: float) -> Result:
        result = Result()
        for partition, pending in self._pending.items():
            for key, item in list(pending.items()):
                if item.next_at > now:
                    continue
                raw = base64.b64decode(item.raw_b64)
                try:
                    sample = events.decode(GOLDEN, raw)
                except (msgspec.DecodeError, msgspec.ValidationError):  # it decoded when it arrived
                    sample = None
                outcome, reason = self._register(sample) if isinstance(sample, GoldenSample) else (None, "undecodable")
                if outcome is not None:
                    del pending[key]
                    self.metrics.results.labels(outcome).inc()
                    continue
                item.attempts += 1
                item.reason = reason
                if now - item.first_at >= self.give_up_s:
                    del pending[key]
                    self.metrics.results.labels("gave_up").inc()
                    letter = dead_letter(
                        source_topic=self.golden_topic,
                        partition=partition,
                        offset=item.offset,
                        raw=raw,
                        error_type=PROCESSING_ERROR,
                        error=f"not written back to VectorWave after {item.attempts} attempts in {now - item.first_at:.0f}s: {reason}",
                        max_value_bytes=self.dlq_value_max_bytes,
                        processor=self.name,
                    )
                    result.outputs.append(Output(DLQ, key.encode(), events.encode(letter)))
                    log.warning("golden sample %s dead-lettered: %s", key, reason)
                else:
                    item.next_at = now + min(self.retry_s * 2 ** (item.attempts - 1), 60.0)
        return result

    # ------------------------------------------------------------------ state
    def save_state(self, topic: str, partition: int, directory: Path) -> None:
        state = _State(pending=self._pending.get(partition, {}))
        (directory / "golden-writeback.json").write_bytes(msgspec.json.encode(state))

    def load_state(self, topic: str, partition: int, directory: Path | None) -> int:
        pending: dict[str, _Pending] = {}
        if directory is not None:
            state = msgspec.json.decode((directory / "golden-writeback.json").read_bytes(), type=_State)
            pending = dict(state.pending)
        self._pending[partition] = pending
        return FROM_COMMITTED

    def release(self, topic: str, partition: int) -> None:
        self._pending.pop(partition, None)

    def status(self) -> dict[str, Any]:
        return {"pending": sum(len(p) for p in self._pending.values())}
