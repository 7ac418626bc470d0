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

A periodic checkpoint (and an out-of-turn one after a stateful tick) does not hold the worker
while files are written: a processor that can (``capture_state``) hands over a copy of a
partition's state on the worker thread, and the copy is written, digested, fsynced and
published on a thread of the checkpointer's own while records are processed; the next
checkpoint, a revoke and shutdown wait for it first.  Offsets do not wait for it (step 3).

Step 2 writes the local checkpoint (a cache) and, when due, copies it to the state
topic (:mod:`stream.runtime.snapshots`), which is what lets an instance with an empty
disk take the partition over.  A copy is due on revoke and shutdown (the partition is
about to move) and otherwise once ``runtime.state_snapshot_interval_s`` has passed and
the input read since the last copy is ``runtime.state_snapshot_ratio`` times its size:
the bytes written to Kafka per input byte stay bounded by 1/ratio x (state size / input
size), and a new owner never replays more than ratio x the snapshot's worth of input.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from stream.contract.processing import Processor
from stream.contract.topics import TopicNames
from stream.runtime import snapshots
from stream.runtime.metrics import RuntimeMetrics
from stream.runtime.snapshots import Fingerprint
from stream.runtime.statestore import Checkpointed, CheckpointStore, describe_files

log = logging.getLogger(__name__)


class Progress:
    """Input offsets: what is processed (outputs acked), what each processor's state reflects, what is committed."""

    def __init__(self) -> None:
        self.processed: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        # (processor name, tp) -> next offset the processor's in-memory state reflects
        self.state: dict[tuple[str, TopicPartition], int] = {}
        # (processor name, tp) -> the input record at state - 1 (what identifies the topic's incarnation)
        self.fingerprints: dict[tuple[str, TopicPartition], Fingerprint] = {}
        # tp -> input bytes (keys and values) processed since the partition was assigned
        self.bytes_in: dict[TopicPartition, int] = {}

    def advance(
        self, tp: TopicPartition, next_offset: int, processors: Iterable[Processor], last: Fingerprint | None = None, nbytes: int = 0
    ) -> None:
        self.processed[tp] = max(self.processed.get(tp, 0), next_offset)
        self.bytes_in[tp] = self.bytes_in.get(tp, 0) + nbytes
        for p in processors:
            key = (p.name, tp)
            if next_offset >= self.state.get(key, 0):
                self.state[key] = next_offset
                if last is not None and last.offset == next_offset - 1:
                    self.fingerprints[key] = last

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        drop = set(tps)
        for tp in drop:
            self.processed.pop(tp, None)
            self.committed.pop(tp, None)
            self.bytes_in.pop(tp, None)
        for key in [k for k in self.state if k[1] in drop]:
            del self.state[key]
        for key in [k for k in self.fingerprints if k[1] in drop]:
            del self.fingerprints[key]


class SnapshotPolicy:
    """When a partition's state is copied to the state topic (see the module docstring)."""

    def __init__(self, *, enabled: bool, interval_s: float, ratio: float) -> None:
        self.enabled = enabled
        self.interval_s = interval_s
        self.ratio = ratio
        # (processor, tp) -> (offset, size, monotonic time, input bytes counter then, slot) of the newest snapshot in Kafka
        self.last: dict[tuple[str, TopicPartition], tuple[int, int, float, int, int]] = {}

    def known(self, key: tuple[str, TopicPartition], offset: int, size: int, slot: int, bytes_in: int) -> None:
        self.last[key] = (offset, size, time.monotonic(), bytes_in, slot)

    def due(self, key: tuple[str, TopicPartition], offset: int, bytes_in: int, force: bool) -> bool:
        if not self.enabled:
            return False
        last = self.last.get(key)
        if last is None:
            return offset > 0  # nothing of this partition in Kafka yet
        last_offset, size, at, bytes_then, _slot = last
        if offset == last_offset:
            return False
        if force:
            return True
        return time.monotonic() - at >= self.interval_s and bytes_in - bytes_then >= self.ratio * size

    def changed(self, processor: str) -> None:
        for key, (offset, size, at, _bytes_then, slot) in list(self.last.items()):
            if key[0] == processor:
                self.last[key] = (-1 if offset >= 0 else offset, size, at, -(10**18), slot)

    def next_slot(self, key: tuple[str, TopicPartition]) -> int:
        last = self.last.get(key)
        return 0 if last is None else 1 - last[4]

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        drop = set(tps)
        for key in [k for k in self.last if k[1] in drop]:
            del self.last[key]


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
        policy: SnapshotPolicy | None = None,
        cluster_id: str | None = None,
        state_partitions: int = 0,
        group: str = "",
        io_executor: Executor | None = None,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._processors = processors
        self._names = names
        self._store = store
        self._executor = executor
        self._io = io_executor  # writes captured state off the worker (None: everything on the worker)
        self._background: asyncio.Task[None] | None = None
        self._generation: dict[str, int] = {}  # processor -> how often changed() was called (see _write_later)
        self._metrics = metrics
        self._progress = progress
        self._state_interval_s = state_interval_s
        self._last_state_save = time.monotonic()
        # (processor, tp) -> offset of the last checkpoint written, to skip unchanged partitions.
        self._saved: dict[tuple[str, TopicPartition], int] = {}
        self._latest: dict[tuple[str, TopicPartition], Checkpointed] = {}  # newest local checkpoint written or restored
        self.policy = policy or SnapshotPolicy(enabled=False, interval_s=0.0, ratio=0.0)
        self.cluster_id = cluster_id
        self.state_partitions = state_partitions
        self.group = group

    def state_due(self) -> bool:
        return time.monotonic() - self._last_state_save >= self._state_interval_s

    async def settle(self) -> None:
        """Wait until state being written in the background is published (its error is raised here)."""
        task, self._background = self._background, None
        if task is not None:
            await task

    async def run(
        self,
        *,
        save_state: bool,
        only: set[TopicPartition] | None = None,
        moving: bool = False,
        processors: set[str] | None = None,
    ) -> None:
        """``moving``: the partitions are about to leave this instance (revoke, shutdown): copy their state to Kafka,
        and write it before returning.  ``processors``: save only these processors' state (a tick's outputs)."""
        # Step 1: flush outputs.
        await self._producer.flush()
        # Step 2: save state.
        if save_state:
            await self._save_state(only, moving, processors)
            if only is None and processors is None:
                self._last_state_save = time.monotonic()
        # Step 3: commit offsets.
        await self._commit(only)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        drop = set(tps)
        for key in [k for k in self._saved if k[1] in drop]:
            del self._saved[key]
        for key in [k for k in self._latest if k[1] in drop]:
            del self._latest[key]
        self.policy.forget(drop)

    def changed(self, processor: str) -> None:
        """A processor's state changed without input (its tick produced outputs): its partitions are saved
        again at the next checkpoint even at an unchanged offset, and copied to Kafka once the interval
        has passed whatever the input since (a new owner must know what those outputs were)."""
        for key in [k for k in self._saved if k[0] == processor]:
            del self._saved[key]
        self._generation[processor] = self._generation.get(processor, 0) + 1
        self.policy.changed(processor)

    def restored(self, key: tuple[str, TopicPartition], ckpt: Checkpointed) -> None:
        """The checkpoint a partition's state was just loaded from (it can go to Kafka without being written again)."""
        self._saved[key] = ckpt.offset
        self._latest[key] = ckpt

    async def _save_state(
        self, only: set[TopicPartition] | None, moving: bool = False, processors: set[str] | None = None
    ) -> None:
        await self.settle()
        loop = asyncio.get_running_loop()
        # Partitions staying here are written in the background when their processor can capture a copy.
        background = self._io is not None and only is None and not moving
        later: list[Callable[[], Awaitable[None]]] = []
        for (name, tp), offset in list(self._progress.state.items()):
            if only is not None and tp not in only:
                continue
            if processors is not None and name not in processors:
                continue
            proc = next((p for p in self._processors if p.name == name), None)
            if proc is None or not proc.stateful:
                continue
            key = (name, tp)
            fp = self._progress.fingerprints.get(key)
            bytes_in = self._progress.bytes_in.get(tp, 0)
            to_kafka = self.state_partitions > 0 and self.policy.due(key, offset, bytes_in, moving)
            if self._saved.get(key) == offset and not to_kafka:
                continue
            logical = self._names.logical(tp.topic)
            generation = self._generation.get(name, 0)
            started = time.perf_counter()
            extra = {"fingerprint": msgspec.to_builtins(fp) if fp is not None else None, "cluster_id": self.cluster_id}
            ckpt = self._latest.get(key)
            if self._saved.get(key) != offset or ckpt is None:
                write: Callable[[Path], None] | None = None
                if background:
                    write = await loop.run_in_executor(self._executor, proc.capture_state, logical, tp.partition)
                if write is not None:
                    later.append(functools.partial(self._write_later, key, offset, write, None, extra, fp, bytes_in, to_kafka, generation))
                    continue
                write = functools.partial(proc.save_state, logical, tp.partition)
                if background:
                    # No copy to capture: the processor writes its files on the worker, unsynced, and the
                    # fsyncs and the publication (tens of ms on a busy disk) happen off it, as for a capture.
                    staging = await loop.run_in_executor(self._executor, self._stage, key, write)
                    later.append(functools.partial(self._write_later, key, offset, None, None, extra, fp, bytes_in, to_kafka, generation, staging))
                    continue
                ckpt = await loop.run_in_executor(self._executor, self._write, key, offset, write, extra)
                self._written(key, offset, ckpt, started)
            if to_kafka:
                if background:
                    later.append(functools.partial(self._write_later, key, offset, None, ckpt, extra, fp, bytes_in, True, generation))
                else:
                    await self._to_kafka(key, ckpt, fp, bytes_in)
        if later:
            self._background = asyncio.create_task(self._run_later(later), name="vt-checkpoint")

    async def _run_later(self, jobs: list[Callable[[], Awaitable[None]]]) -> None:
        for job in jobs:
            await job()

    async def _write_later(
        self,
        key: tuple[str, TopicPartition],
        offset: int,
        write: Callable[[Path], None] | None,
        ckpt: Checkpointed | None,
        extra: dict[str, Any],
        fp: Fingerprint | None,
        bytes_in: int,
        to_kafka: bool,
        generation: int,
        staging: Path | None = None,
    ) -> None:
        """In the background: write a captured state (``write``), publish a staged one (``staging``) or take the
        one written (``ckpt``), then copy it to Kafka. ``generation``: the processor's count of changed() when
        the state was captured."""
        if write is not None or staging is not None:
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            if staging is not None:
                name, tp = key
                publish = functools.partial(self._store.publish, staging, name, tp.topic, tp.partition, offset, extra)
                ckpt = await loop.run_in_executor(self._io, publish)
            else:
                assert write is not None
                ckpt = await loop.run_in_executor(self._io, self._write, key, offset, write, extra)
            if key not in self._progress.state:
                return  # released meanwhile (the runtime settles first; this is a guard)
            if self._generation.get(key[0], 0) != generation:
                # A tick changed the processor's state since the copy: the copy is a valid checkpoint, but
                # not the state to skip saving again at this offset, nor the one to copy to Kafka.
                self._latest[key] = ckpt
                return
            self._written(key, offset, ckpt, started)
        assert ckpt is not None
        if to_kafka and self._generation.get(key[0], 0) == generation:
            await self._to_kafka(key, ckpt, fp, bytes_in)

    def _stage(self, key: tuple[str, TopicPartition], write: Callable[[Path], None]) -> Path:
        """A staging directory filled by ``write`` (on the worker), for :meth:`CheckpointStore.publish` later."""
        name, tp = key
        return self._store.stage(name, tp.topic, tp.partition, write)

    def _write(self, key: tuple[str, TopicPartition], offset: int, write: Callable[[Path], None], extra: dict[str, Any]) -> Checkpointed:
        name, tp = key
        return self._store.save(name, tp.topic, tp.partition, offset, write, extra)

    def _written(self, key: tuple[str, TopicPartition], offset: int, ckpt: Checkpointed, started: float) -> None:
        self._saved[key] = offset
        self._latest[key] = ckpt
        self._metrics.checkpoints.labels(key[0]).inc()
        self._metrics.checkpoint_seconds.labels(key[0]).observe(time.perf_counter() - started)

    async def _to_kafka(self, key: tuple[str, TopicPartition], ckpt: Checkpointed, fp: Fingerprint | None, bytes_in: int) -> None:
        name, tp = key
        slot = self.policy.next_slot(key)
        files = ckpt.meta.get("files")
        if files is None:  # a checkpoint written before files were described
            files = await asyncio.get_running_loop().run_in_executor(self._executor, describe_files, ckpt.directory)
        try:
            written = await snapshots.write(
                self._producer, self._names, group=self.group, processor=name, topic=tp.topic, partition=tp.partition, offset=ckpt.offset,
                directory=ckpt.directory, files=files, fingerprint=fp, cluster_id=self.cluster_id,
                slot=slot, n_state_partitions=self.state_partitions,
            )
        except (KafkaError, OSError) as exc:
            # The local checkpoint stands; the state topic gets the next one (a new owner replays a longer tail).
            log.warning("state snapshot of %s %s[%d] not written to Kafka (%s)", name, tp.topic, tp.partition, exc)
            return
        self.policy.known(key, ckpt.offset, written.index.size, slot, bytes_in)
        self._metrics.snapshots.labels(name).inc()
        self._metrics.snapshot_bytes.labels(name).inc(written.index.size)
        log.info(
            "state of %s %s[%d] at offset %d copied to the state topic: %d bytes in %d chunks, %.2fs",
            name, tp.topic, tp.partition, ckpt.offset, written.index.size, len(written.index.chunks), written.seconds,
        )

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
