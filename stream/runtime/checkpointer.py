"""A checkpoint: the one place where progress becomes durable.

Order matters, and it is always the same:

1. **Flush outputs.**  Every record produced for the inputs processed so far is
   acknowledged by the broker (acks=all).  Until then nothing below may happen,
   or a crash would commit inputs whose outputs were never written.
2. **Save state** (when due, and always on revoke or shutdown).  Each stateful
   processor writes each partition it owns, stamped with the input offset its
   state reflects.  State saved after step 1 never claims outputs that do not exist.
3. **Commit offsets** to the consumer group.  The committed offset is where a
   stateless reader resumes; a stateful processor resumes at its own checkpoint's
   offset instead (which may be older), so committing ahead of a state checkpoint is
   safe: the gap is replayed and the outputs it re-creates are idempotent rewrites.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Executor

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from stream.contract.processing import Processor
from stream.contract.topics import TopicNames
from stream.runtime.metrics import RuntimeMetrics
from stream.runtime.statestore import CheckpointStore

log = logging.getLogger(__name__)


class Progress:
    """Input offsets: what is processed (outputs acked), what each processor's state reflects, what is committed."""

    def __init__(self) -> None:
        self.processed: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        # (processor name, tp) -> next offset the processor's in-memory state reflects
        self.state: dict[tuple[str, TopicPartition], int] = {}

    def advance(self, tp: TopicPartition, next_offset: int, processors: Iterable[Processor]) -> None:
        self.processed[tp] = max(self.processed.get(tp, 0), next_offset)
        for p in processors:
            key = (p.name, tp)
            self.state[key] = max(self.state.get(key, 0), next_offset)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        drop = set(tps)
        for tp in drop:
            self.processed.pop(tp, None)
            self.committed.pop(tp, None)
        for key in [k for k in self.state if k[1] in drop]:
            del self.state[key]


class Checkpointer:
    """Runs checkpoints (flush outputs → save state → commit offsets) for one runtime."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        processors: list[Processor],
        names: TopicNames,
        store: CheckpointStore,
        executor: Executor,
        metrics: RuntimeMetrics,
        progress: Progress,
        state_interval_s: float,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._processors = processors
        self._names = names
        self._store = store
        self._executor = executor
        self._metrics = metrics
        self._progress = progress
        self._state_interval_s = state_interval_s
        self._last_state_save = time.monotonic()
        # (processor, tp) -> offset of the last checkpoint written, to skip unchanged partitions.
        self._saved: dict[tuple[str, TopicPartition], int] = {}

    def state_due(self) -> bool:
        return time.monotonic() - self._last_state_save >= self._state_interval_s

    async def run(self, *, save_state: bool, only: set[TopicPartition] | None = None) -> None:
        # Step 1: flush outputs.
        await self._producer.flush()
        # Step 2: save state.
        if save_state:
            await self._save_state(only)
            if only is None:
                self._last_state_save = time.monotonic()
        # Step 3: commit offsets.
        await self._commit(only)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        drop = set(tps)
        for key in [k for k in self._saved if k[1] in drop]:
            del self._saved[key]

    async def _save_state(self, only: set[TopicPartition] | None) -> None:
        loop = asyncio.get_running_loop()
        for (name, tp), offset in list(self._progress.state.items()):
            if only is not None and tp not in only:
                continue
            proc = next((p for p in self._processors if p.name == name), None)
            if proc is None or not proc.stateful or self._saved.get((name, tp)) == offset:
                continue
            logical = self._names.logical(tp.topic)
            started = time.perf_counter()
            await loop.run_in_executor(
                self._executor,
                lambda proc=proc, tp=tp, logical=logical, offset=offset: self._store.save(
                    proc.name, tp.topic, tp.partition, offset, lambda d: proc.save_state(logical, tp.partition, d)
                ),
            )
            self._saved[(name, tp)] = offset
            self._metrics.checkpoints.labels(name).inc()
            self._metrics.checkpoint_seconds.labels(name).observe(time.perf_counter() - started)

    async def _commit(self, only: set[TopicPartition] | None) -> None:
        assigned = self._consumer.assignment()
        offsets = {
            tp: off
            for tp, off in self._progress.processed.items()
            if tp in assigned and (only is None or tp in only) and off > self._progress.committed.get(tp, -1)
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group is rebalancing: the partitions' new owner resumes from the last
            # committed offset or its state checkpoint; the overlap is replayed (at-least-once).
            log.warning("offset commit skipped during a rebalance: %s", exc)
            return
        except KafkaError as exc:
            log.warning("offset commit failed, will retry at the next checkpoint: %s", exc)
            return
        self._progress.committed.update(offsets)
        self._metrics.commits.inc()
