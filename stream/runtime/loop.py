"""The consumer loop: fetch a batch, decode, process off the event loop, produce, checkpoint.

Delivery is at-least-once.  Offsets are committed only after the outputs of the
records before them are acknowledged (see :mod:`stream.runtime.checkpointer`); outputs are
keyed and idempotent, so a replay after a crash rewrites the same records.  A bad
input never stops the loop: it goes to the dead-letter topic with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from prometheus_client import CollectorRegistry

from stream.contract import events
from stream.contract.config import Settings
from stream.contract.deadletter import PROCESSING_ERROR, REASONS, DecodeFailure, dead_letter, decode_input
from stream.contract.processing import (
    FROM_BEGINNING,
    FROM_COMMITTED,
    REBUILD,
    Output,
    Processor,
    Record,
    Rejection,
    Result,
    Service,
    ServiceContext,
)
from stream.contract.topics import ALL, DLQ, INPUTS, TopicNames
from stream.runtime import kafka, snapshots
from stream.runtime.checkpointer import Checkpointer, Progress, SnapshotPolicy
from stream.runtime.fetchwait import FetchWait
from stream.runtime.metrics import MetricsServer, RuntimeMetrics
from stream.runtime.services import supervise
from stream.runtime.snapshots import Fingerprint, SnapshotError, SnapshotIndex
from stream.runtime.statestore import Checkpointed, CheckpointStore

log = logging.getLogger(__name__)

T = TypeVar("T")
# How long stopping services may take before they are cancelled (they hold no offsets).
SERVICE_STOP_GRACE_S = 15.0


@dataclass(slots=True)
class _Batch:
    """What one fetched partition batch turned into, ready to produce."""

    outputs: list[Output] = field(default_factory=list)
    dead: dict[str, int] = field(default_factory=dict)  # reason -> count


@dataclass(slots=True)
class _Sent:
    """A processed partition batch whose outputs are with the producer, not yet acknowledged."""

    tp: TopicPartition
    logical: str
    records: list[ConsumerRecord[bytes, bytes]]
    batch: _Batch
    started: float
    futures: list[asyncio.Future[Any]] | None  # None: the producer did not take them (re-sent on delivery)


class Runtime:
    """Runs a set of processors in one consumer group.

    ``await runtime.run()`` until :meth:`stop` is called (the CLI wires SIGINT and
    SIGTERM to it); the last checkpoint is taken before it returns.
    """

    def __init__(
        self,
        settings: Settings,
        processors: list[Processor],
        *,
        registry: CollectorRegistry | None = None,
        serve_metrics: bool = True,
        services: Sequence[Service] = (),
    ) -> None:
        if settings.bootstrap is None:
            raise ValueError("Runtime needs settings.bootstrap; the CLI starts an embedded broker when it is unset")
        names = [p.name for p in processors]
        if len(set(names)) != len(names):
            raise ValueError(f"processor names must be unique, got {names}")
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self.processors = processors
        self.metrics = RuntimeMetrics(registry)
        self.registry = self.metrics.registry
        self._serve_metrics = serve_metrics
        self.metrics_server: MetricsServer | None = None
        self._by_topic: dict[str, list[Processor]] = {}
        for p in processors:
            for topic in p.inputs:
                self._by_topic.setdefault(topic, []).append(p)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vt-worker")
        # Writes checkpoints captured on the worker while it goes on processing (see Checkpointer).
        self._io_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vt-checkpoint")
        self._store = CheckpointStore(settings.state_dir / "checkpoints" / settings.group_id)
        self._progress = Progress()
        self._resume: dict[tuple[str, TopicPartition], int] = {}
        self._pending_release: set[TopicPartition] = set()
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._ready = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._checkpointer: Checkpointer | None = None
        self._reader: AIOKafkaConsumer | None = None  # state snapshots
        self._prober: AIOKafkaConsumer | None = None  # reads back the input record a checkpoint names
        self.fetch_wait: FetchWait | None = None  # made when the loop starts
        self._cluster_id: str | None = None
        self._state_partitions = 0
        self._remote: dict[bytes, SnapshotIndex] = {}  # newest snapshot index per key, read at each assignment
        self.metrics.initialise(self._by_topic, [t for t in ALL if t not in INPUTS], names, REASONS)
        # Services given here plus those the processors ask for (see stream.contract.processing).
        self.services: list[Service] = [*services, *(s for p in processors for s in p.services())]
        self._services_stop = asyncio.Event()
        self._service_tasks: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        """Ask the loop to finish the current batch, checkpoint and return."""
        self._stop.set()

    @property
    def ready(self) -> bool:
        return self._ready

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer else set()

    async def run(self) -> None:
        rt = self.settings.runtime
        if self._serve_metrics:
            self.metrics_server = MetricsServer(
                self.registry, self.settings.metrics_host, self.settings.metrics_port, lambda: self._ready
            ).start()
        self.metrics.up.set(1)
        self._producer = kafka.output_producer(self.settings)
        self._consumer = kafka.group_consumer(self.settings)
        self._reader = kafka.state_reader(self.settings)
        await self._reader.start()
        self._prober = kafka.state_reader(self.settings, probe=True)
        await self._prober.start()
        self._cluster_id = await kafka.cluster_id(self._reader)
        if rt.state_snapshots and any(p.stateful for p in self.processors):
            try:
                self._state_partitions = await snapshots.state_partitions(self._reader, self.names)
            except LookupError as exc:
                log.warning("no state topic (%s): partition state lives on this disk only", exc)
        self._checkpointer = Checkpointer(
            consumer=self._consumer,
            producer=self._producer,
            processors=self.processors,
            names=self.names,
            store=self._store,
            executor=self._executor,
            metrics=self.metrics,
            progress=self._progress,
            state_interval_s=rt.checkpoint_interval_s,
            policy=SnapshotPolicy(enabled=rt.state_snapshots, interval_s=rt.state_snapshot_interval_s, ratio=rt.state_snapshot_ratio),
            cluster_id=self._cluster_id,
            state_partitions=self._state_partitions,
            group=self.settings.group_id,
            io_executor=self._io_executor,
        )
        await self._producer.start()
        try:
            await self._consumer.start()
            try:
                self._consumer.subscribe(
                    topics=[self.names.physical(t) for t in self._by_topic], listener=_Listener(self)
                )
                self._start_services()
                await self._loop()
            finally:
                self._ready = False
                self.metrics.ready.set(0)
                await self._stop_services()
                async with self._lock:
                    await self._final_checkpoint()
                await self._consumer.stop()
        finally:
            await self._producer.stop()
            await self._reader.stop()
            await self._prober.stop()
            self._executor.shutdown(wait=True)
            self._io_executor.shutdown(wait=True)
            self.metrics.up.set(0)
            if self.metrics_server is not None:
                self.metrics_server.stop()

    async def _final_checkpoint(self) -> None:
        assert self._checkpointer is not None
        try:
            await self._checkpointer.run(save_state=True, moving=True)
            log.info("final checkpoint written; offsets committed")
        except KafkaError as exc:
            log.error("final checkpoint incomplete (%s): the uncommitted tail will be replayed on restart", exc)

    # ----------------------------------------------------------------- services
    def _start_services(self) -> None:
        loop = asyncio.get_running_loop()

        async def call(fn: Callable[[], T]) -> T:
            async with self._lock:
                return await loop.run_in_executor(self._executor, fn)

        async def apply(fn: Callable[[], Result]) -> Result:
            async with self._lock:
                result = await loop.run_in_executor(self._executor, fn)
                await self._produce(result.outputs)
            if result.rejected:
                log.error("a service's processor call returned rejections; they have no input to dead-letter")
            return result

        async def read(topic: str, idle_timeout: float) -> list[ConsumerRecord[bytes, bytes]]:
            assert self.settings.bootstrap is not None
            return await kafka.read_topic(self.settings.bootstrap, topic, idle_timeout=idle_timeout)

        for service in self.services:
            ctx = ServiceContext(
                settings=self.settings, names=self.names, stopping=self._services_stop,
                call=call, apply=apply, emit=self._produce, read=read,
            )
            crashes = self.metrics.service_crashes.labels(service.name)
            task = asyncio.create_task(supervise(service, ctx, crashes.inc), name=f"vt-service-{service.name}")
            self._service_tasks.append(task)
            log.info("service %s started", service.name)

    async def _stop_services(self) -> None:
        """Ask services to stop, give them a grace period, then cancel what is left."""
        self._services_stop.set()
        if not self._service_tasks:
            return
        done, pending = await asyncio.wait(self._service_tasks, timeout=SERVICE_STOP_GRACE_S)
        for task in pending:
            log.warning("service task %s did not stop within %.0fs; cancelling it", task.get_name(), SERVICE_STOP_GRACE_S)
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("service task %s ended with %r", task.get_name(), task.exception())
        self._service_tasks.clear()

    # ----------------------------------------------------------------- main loop
    async def _loop(self) -> None:
        assert self._consumer is not None and self._checkpointer is not None
        rt = self.settings.runtime
        last_commit = last_tick = time.monotonic()
        self.fetch_wait = FetchWait(self._consumer, rt.fetch_max_wait_ms, rt.idle_fetch_max_wait_ms)
        while not self._stop.is_set():
            try:
                batch = await self._consumer.getmany(timeout_ms=rt.poll_timeout_ms, max_records=rt.max_batch_records)
                self.fetch_wait.saw(sum(len(records) for records in batch.values()))
            except NoOffsetForPartitionError:
                # aiokafka looks for a committed offset as soon as a partition is assigned, racing
                # our own positioning in _on_assigned; the seek there settles it.
                continue
            except OffsetOutOfRangeError as exc:
                await self._out_of_range(list(exc.args[0]) if exc.args and isinstance(exc.args[0], dict) else [])
                continue
            except KafkaError as exc:
                log.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(rt.send_retry_backoff_s)
                continue
            async with self._lock:
                # Every partition's outputs go to the producer as soon as they are ready and are
                # acknowledged together: one broker round trip per fetch, not one per partition.
                sent = [s for tp, records in batch.items() if (s := await self._handle(tp, records)) is not None]
                await self._acknowledge(sent)
                # Time-driven work runs at most every tick_interval_s, not after every batch, counted from
                # the end of the last round: a round that took longer than the interval (several syntheses
                # due) still leaves records an interval of the worker before the next one, so rounds in a
                # row cannot hold records back for their sum.  Outputs a stateful processor made from the
                # wall clock (idle evaluation, debounced synthesis) are checkpointed at once: its state then
                # says they are on their topics.  Only that processor's state is saved out of turn; the
                # others wait for their interval.
                ticked: set[str] = set()
                if time.monotonic() - last_tick >= rt.tick_interval_s:
                    ticked = await self._tick()
                    last_tick = time.monotonic()
                self._update_lag()
                if self._checkpointer.state_due():
                    await self._checkpointer.run(save_state=True)
                    last_commit = time.monotonic()
                elif ticked or time.monotonic() - last_commit >= rt.commit_interval_s:
                    await self._checkpointer.run(save_state=bool(ticked), processors=ticked or None)
                    last_commit = time.monotonic()

    async def _handle(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> _Sent | None:
        """Process one partition's fetched records and hand their outputs to the producer."""
        if tp not in self._consumer.assignment():  # type: ignore[union-attr]
            return None  # revoked while this batch waited: the new owner processes it
        logical = self.names.logical(tp.topic)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, self._process_batch, tp, logical, records)
        return _Sent(tp, logical, records, result, started, await self._send(result.outputs))

    async def _acknowledge(self, sent: list[_Sent]) -> None:
        """Wait for the outputs of these batches, then let their offsets advance (in fetch order)."""
        if not sent:
            return
        outputs = [o for s in sent for o in s.batch.outputs]
        futures = None if any(s.futures is None for s in sent) else [f for s in sent for f in s.futures or ()]
        await self._deliver(outputs, futures)
        now = time.time()
        for s in sent:
            self.metrics.consumed.labels(s.logical).inc(len(s.records))
            for reason, n in s.batch.dead.items():
                self.metrics.dead_letters.labels(s.logical, reason).inc(n)
            nbytes = sum(len(r.value or b"") + len(r.key or b"") for r in s.records)
            last = snapshots.fingerprint_of(s.records[-1])
            self._progress.advance(s.tp, s.records[-1].offset + 1, self._by_topic.get(s.logical, []), last, nbytes)
            elapsed = time.perf_counter() - s.started
            for p in self._by_topic.get(s.logical, []):
                self.metrics.batch_seconds.labels(p.name).observe(elapsed)
            hist = self.metrics.record_latency.labels(s.logical)
            for r in s.records:
                if r.timestamp > 0:
                    hist.observe(max(0.0, now - r.timestamp / 1000.0))
        self.metrics.last_batch.set(now)

    def _process_batch(self, tp: TopicPartition, logical: str, raw: list[ConsumerRecord[bytes, bytes]]) -> _Batch:
        """Worker thread: decode, dead-letter the bad ones, hand the good ones to each processor."""
        rt = self.settings.runtime
        out = _Batch()
        good: list[Record] = []
        for msg in raw:
            decoded = decode_input(logical, msg.value, max_bytes=rt.max_message_bytes, max_vector_dim=rt.max_vector_dim)
            record = Record(
                topic=logical,
                partition=tp.partition,
                offset=msg.offset,
                key=msg.key,
                value=None if isinstance(decoded, DecodeFailure) else decoded,
                raw=msg.value,
                timestamp_ms=msg.timestamp,
            )
            if isinstance(decoded, DecodeFailure):
                self._dead_letter(out, tp, record, decoded.error_type, decoded.error, None)
            else:
                good.append(record)  # value None: a tombstone on a compacted topic (the key left the set)
        for proc in self._by_topic.get(logical, []):
            start_at = self._resume.get((proc.name, tp), 0)
            mine = [r for r in good if r.offset >= start_at]
            if not mine:
                continue
            result = self._call_process(proc, mine)
            out.outputs.extend(result.outputs)
            for rej in result.rejected:
                self._dead_letter(out, tp, rej.record, rej.error_type, rej.error, proc.name)
        return out

    def _call_process(self, proc: Processor, records: list[Record]) -> Result:
        try:
            return proc.process(records)
        except Exception:
            log.exception("processor %s raised on a batch of %d; retrying record by record", proc.name, len(records))
            self.metrics.processing_errors.labels(proc.name).inc()
        result = Result()
        for record in records:
            try:
                result.extend(proc.process([record]))
            except Exception as exc:
                result.rejected.append(Rejection(record, PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"))
        return result

    def _dead_letter(
        self, out: _Batch, tp: TopicPartition, record: Record, error_type: str, error: str, processor: str | None
    ) -> None:
        letter = dead_letter(
            source_topic=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            raw=record.raw,
            error_type=error_type,
            error=error,
            max_value_bytes=self.settings.runtime.dlq_value_max_bytes,
            processor=processor,
        )
        out.outputs.append(Output(DLQ, record.key or b"", events.encode(letter)))
        out.dead[letter.error_type] = out.dead.get(letter.error_type, 0) + 1
        log.debug("dead-lettered %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, error)

    async def _produce(self, outputs: list[Output]) -> None:
        """Send outputs in order and wait for every acknowledgement; retry until acked or stopped."""
        if outputs:
            await self._deliver(outputs, await self._send(outputs))

    async def _send(self, outputs: list[Output]) -> list[asyncio.Future[Any]] | None:
        """Hand outputs to the producer, in order; None when it refused them (:meth:`_deliver` re-sends)."""
        assert self._producer is not None
        try:
            return [await self._producer.send(self.names.physical(o.topic), key=o.key, value=o.value) for o in outputs]
        except KafkaError as exc:
            log.warning("producer refused %d outputs (%s)", len(outputs), exc)
            return None

    async def _deliver(self, outputs: list[Output], futures: list[asyncio.Future[Any]] | None) -> None:
        """Wait until every output is acknowledged.  After a failure all of them are sent again, in
        their order, so that a key's last record is still the newest (outputs are idempotent)."""
        backoff = self.settings.runtime.send_retry_backoff_s
        while True:
            try:
                if futures is None:
                    raise KafkaError("outputs were not accepted by the producer")
                await asyncio.gather(*futures)
                break
            except KafkaError as exc:
                self.metrics.send_retries.inc()
                if self._stop.is_set():
                    raise
                log.warning("outputs not acknowledged (%s); re-sending %d records in %.1fs", exc, len(outputs), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                futures = await self._send(outputs)
        counts: dict[str, int] = {}
        for o in outputs:
            counts[o.topic] = counts.get(o.topic, 0) + 1
        for topic, n in counts.items():
            self.metrics.produced.labels(topic).inc(n)

    async def _tick(self) -> set[str]:
        """Let every processor do its time-driven work; the stateful ones that produced outputs."""
        loop = asyncio.get_running_loop()
        now = time.time()
        stateful_outputs: set[str] = set()
        for proc in self.processors:
            try:
                result = await loop.run_in_executor(self._executor, proc.tick, now)
            except Exception:
                # A bug in time-driven work must not stop consumption; it is logged and counted.
                log.exception("processor %s raised in tick(); continuing", proc.name)
                self.metrics.processing_errors.labels(proc.name).inc()
                continue
            await self._produce(result.outputs)
            if proc.stateful and result.outputs:
                assert self._checkpointer is not None
                self._checkpointer.changed(proc.name)  # the offsets did not move, the state did
                stateful_outputs.add(proc.name)
            if result.rejected:
                log.error("processor %s returned rejections from tick(); they have no input to dead-letter", proc.name)
        return stateful_outputs

    def _update_lag(self) -> None:
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            position = self._progress.processed.get(tp, self._resume_min(tp))
            self.metrics.lag.labels(self.names.logical(tp.topic), str(tp.partition)).set(max(0, high - position))

    def _resume_min(self, tp: TopicPartition) -> int:
        offsets = [off for (name, t), off in self._resume.items() if t == tp]
        return min(offsets) if offsets else 0

    # ----------------------------------------------------------------- rebalancing
    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Checkpoint what we own before the group moves it (flush, save state, commit)."""
        async with self._lock:
            self._ready = False
            self.metrics.ready.set(0)
            mine = set(revoked)
            assert self._checkpointer is not None
            try:
                await self._checkpointer.run(save_state=True, only=mine, moving=True)
            except KafkaError as exc:
                log.warning("checkpoint on revoke incomplete (%s); the new owner replays the tail", exc)
            # Release happens in _on_assigned: a partition handed straight back to us in the
            # same generation keeps its in-memory state (nobody else can have processed it).
            self._pending_release |= mine
            log.info("partitions revoked: %s", _fmt(mine))

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self._lock:
            assert self._consumer is not None
            loop = asyncio.get_running_loop()
            new = set(assigned)
            # Hold fetching until every partition is positioned: with auto_offset_reset="none"
            # the fetcher must never see a partition whose position is not decided yet.
            self._consumer.pause(*new)
            gone, kept = self._pending_release - new, self._pending_release & new
            self._pending_release = set()
            for tp in gone:
                await self._release(tp, loop)
            await self._read_remote({tp for tp in new if not (tp in kept and tp in self._progress.processed)})
            for tp in new:
                if tp in kept and tp in self._progress.processed:
                    self._consumer.seek(tp, self._progress.processed[tp])
                else:
                    await self._position(tp, loop)
            self._consumer.resume(*new)
            self._count_assigned()
            self._ready = True
            self.metrics.ready.set(1)
            log.info("partitions assigned: %s", _fmt(new))

    async def _release(self, tp: TopicPartition, loop: asyncio.AbstractEventLoop) -> None:
        assert self._checkpointer is not None
        await self._checkpointer.settle()  # no checkpoint of it is still being written
        logical = self.names.logical(tp.topic)
        for proc in self._by_topic.get(logical, []):
            await loop.run_in_executor(self._executor, proc.release, logical, tp.partition)
            self._resume.pop((proc.name, tp), None)
        try:
            self.metrics.lag.remove(logical, str(tp.partition))
        except KeyError:
            pass
        self._progress.forget([tp])
        assert self._checkpointer is not None
        self._checkpointer.forget([tp])

    async def _position(self, tp: TopicPartition, loop: asyncio.AbstractEventLoop, fresh: bool = False) -> None:
        """Load each processor's state for ``tp`` and seek to the oldest offset any of them needs."""
        assert self._consumer is not None
        logical = self.names.logical(tp.topic)
        committed = None if fresh else await self._consumer.committed(tp)
        beginning = (await self._consumer.beginning_offsets([tp]))[tp]
        targets: list[int] = []
        for proc in self._by_topic.get(logical, []):
            started = time.perf_counter()
            ckpt: Checkpointed | None = None
            source = "none"
            if proc.stateful and not fresh:
                ckpt, source = await self._recover(proc, tp, loop)
            directory = ckpt.directory if ckpt else None
            wish = await loop.run_in_executor(self._executor, proc.load_state, logical, tp.partition, directory)
            if ckpt is not None and wish != REBUILD:
                start = ckpt.offset
                fp = ckpt.meta.get("fingerprint")
                if fp is not None:
                    self._progress.fingerprints[(proc.name, tp)] = Fingerprint(**fp)
                assert self._checkpointer is not None
                self._checkpointer.restored((proc.name, tp), ckpt)
            elif wish in (FROM_BEGINNING, REBUILD):
                start = beginning
                source = "none" if proc.stateful else source
            elif wish == FROM_COMMITTED:
                start = committed if committed is not None else beginning
            else:
                raise ValueError(f"{proc.name}.load_state returned {wish!r}")
            start = max(start, beginning)
            self._resume[(proc.name, tp)] = start
            self._progress.state[(proc.name, tp)] = start
            targets.append(start)
            if proc.stateful:
                self.metrics.restores.labels(proc.name, logical, source).inc()
                self.metrics.restore_seconds.labels(proc.name).observe(time.perf_counter() - started)
        position = min(targets) if targets else (committed if committed is not None else beginning)
        self._consumer.seek(tp, position)
        if committed is not None:
            self._progress.committed[tp] = committed
        log.info("%s[%d]: resuming at offset %d (committed %s)", tp.topic, tp.partition, position, committed)

    async def _read_remote(self, tps: set[TopicPartition]) -> None:
        """Read the state index partitions these input partitions' snapshots are in (once per assignment)."""
        self._remote = {}
        if not tps or self._state_partitions <= 0 or self._reader is None:
            return
        try:
            self._remote = await snapshots.latest_indexes(
                self._reader, self.names, {tp.partition % self._state_partitions for tp in tps}
            )
        except (KafkaError, LookupError) as exc:
            log.warning("state index not readable (%s): partitions resume from this disk or their input", exc)

    async def _recover(
        self, proc: Processor, tp: TopicPartition, loop: asyncio.AbstractEventLoop
    ) -> tuple[Checkpointed | None, str]:
        """The newest usable checkpoint of (proc, tp): the local cache or the state topic's snapshot,
        whichever reflects more input, once its files and its input fingerprint check out."""
        local = await loop.run_in_executor(self._executor, self._store.load, proc.name, tp.topic, tp.partition)
        if local is not None:
            problem = await loop.run_in_executor(self._executor, CheckpointStore.verify, local)
            if problem is not None:
                log.warning("local checkpoint of %s %s[%d] is damaged (%s): not used", proc.name, tp.topic, tp.partition, problem)
                local = None
        remote = self._remote.get(snapshots.index_key(self.settings.group_id, proc.name, tp.topic, tp.partition))
        candidates: list[tuple[int, int, str]] = []
        if local is not None:
            candidates.append((local.offset, 1, "local"))
        if remote is not None:
            candidates.append((remote.offset, 0, "kafka"))
        for _offset, _pref, source in sorted(candidates, reverse=True):
            if source == "local":
                assert local is not None
                fp = local.meta.get("fingerprint")
                meta = (local.offset, Fingerprint(**fp) if fp else None, local.meta.get("cluster_id"))
            else:
                assert remote is not None
                meta = (remote.offset, remote.fingerprint, remote.cluster_id)
            why = await self._foreign(tp, *meta)
            if why is not None:
                self.metrics.foreign_checkpoints.labels(proc.name).inc()
                log.warning(
                    "%s checkpoint of %s %s[%d] at offset %d is not of this topic's incarnation (%s): not resumed from",
                    source, proc.name, tp.topic, tp.partition, meta[0], why,
                )
                continue
            if source == "local":
                assert local is not None
                self._snapshot_known(proc, tp, remote, local.offset)
                return local, "local"
            assert remote is not None
            ckpt = await self._download(proc, tp, remote)
            if ckpt is not None:
                self._snapshot_known(proc, tp, remote, remote.offset)
                return ckpt, "kafka"
        if remote is not None:
            self._snapshot_known(proc, tp, remote, remote.offset + 1)
        return None, "none"

    def _snapshot_known(self, proc: Processor, tp: TopicPartition, remote: SnapshotIndex | None, resumed_at: int) -> None:
        """Tell the snapshot policy what the state topic already holds for (proc, tp)."""
        assert self._checkpointer is not None
        if remote is None:
            return
        # Kafka's copy is behind what we resume from: the next copy is due once the interval has passed.
        behind = -(10**18) if remote.offset != resumed_at else 0
        self._checkpointer.policy.known((proc.name, tp), remote.offset, remote.size, remote.slot, behind)

    async def _foreign(self, tp: TopicPartition, offset: int, fp: Fingerprint | None, cluster: str | None) -> str | None:
        """Why a checkpoint at ``offset`` cannot be of this incarnation of ``tp`` (None: it can)."""
        assert self._prober is not None
        if cluster and self._cluster_id and cluster != self._cluster_id:
            return f"made on cluster {cluster!r}, this is {self._cluster_id!r}"
        if offset <= 0:
            return None
        probe = await snapshots.probe(self._prober, tp, offset - 1)
        if probe.past_end:
            return f"the partition ends before offset {offset - 1}, which the checkpoint has read"
        if fp is None:
            return "it records no fingerprint of the input it read"
        if probe.before_start or probe.record is None:
            log.info("%s[%d]@%d is no longer on the topic (retention): the checkpoint cannot be checked, resuming from it", tp.topic, tp.partition, offset - 1)
            return None
        rec = probe.record
        if rec.offset != fp.offset:
            return None  # compacted away: nothing to compare
        if snapshots.fingerprint_of(rec) != fp:
            return f"the record at offset {fp.offset} is not the one it read"
        return None

    async def _download(self, proc: Processor, tp: TopicPartition, remote: SnapshotIndex) -> Checkpointed | None:
        """Copy a snapshot from the state topic into the local cache; None when it cannot be read whole."""
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        staging = self._store.staging(proc.name, tp.topic, tp.partition)
        started = time.perf_counter()
        try:
            nbytes = await snapshots.fetch(self._reader, self.names, remote, staging / "data")
        except (SnapshotError, KafkaError, OSError) as exc:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            log.warning("snapshot of %s %s[%d] in the state topic is unusable (%s)", proc.name, tp.topic, tp.partition, exc)
            return None
        extra = {
            "fingerprint": msgspec.to_builtins(remote.fingerprint) if remote.fingerprint else None,
            "cluster_id": remote.cluster_id,
            "snapshot_id": remote.snapshot_id,
        }
        ckpt = await loop.run_in_executor(
            self._executor, self._store.publish, staging, proc.name, tp.topic, tp.partition, remote.offset, extra
        )
        self.metrics.restore_bytes.labels(proc.name).inc(nbytes)
        log.info(
            "state of %s %s[%d] at offset %d read from the state topic: %d bytes in %.2fs",
            proc.name, tp.topic, tp.partition, remote.offset, nbytes, time.perf_counter() - started,
        )
        return ckpt

    async def _out_of_range(self, tps: list[TopicPartition]) -> None:
        """A stored position no longer exists (topic recreated, data expired): rebuild from the start."""
        async with self._lock:
            assert self._consumer is not None
            loop = asyncio.get_running_loop()
            targets = tps or list(self._consumer.assignment())
            for tp in targets:
                log.warning("%s[%d]: stored offset is out of range; dropping state and replaying from the beginning", tp.topic, tp.partition)
                await self._release(tp, loop)
                await self._position(tp, loop, fresh=True)

    def _count_assigned(self) -> None:
        assert self._consumer is not None
        counts = {t: 0 for t in self._by_topic}
        for tp in self._consumer.assignment():
            counts[self.names.logical(tp.topic)] = counts.get(self.names.logical(tp.topic), 0) + 1
        for topic, n in counts.items():
            self.metrics.assigned.labels(topic).set(n)

    def status(self) -> dict[str, Any]:
        return {p.name: p.status() for p in self.processors}


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            await self._runtime._on_revoked(list(revoked))  # noqa: SLF001

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._runtime._on_assigned(list(assigned))  # noqa: SLF001


def _fmt(tps: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "none"
