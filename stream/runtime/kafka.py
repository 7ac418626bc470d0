"""Every Kafka client of vector-trainer is built here, and the few things done with them.

* :func:`producer` — the one producer configuration: acks=all (an output counts once
  the broker has it), no idempotence (the embedded broker lacks it: outputs are
  idempotent by key instead) and the function partitioner (one function, one
  partition, also for ``function/uuid`` keys); a partition's batch may fill a whole
  request (aiokafka keeps one request in flight per broker and batches 16 KB by default:
  two 8 KB records, a 384-d vector as JSON, to a round trip);
* :func:`group_consumer` — the runtime's consumer in its group;
* :func:`reader` — a consumer outside any group, for reading whole topics;
* :func:`state_reader` — the runtime's own reader for state snapshots and checkpoint probes;
* :func:`ensure_topics`, :func:`read_topic`, :func:`follow_topic`, :func:`publish`.

The hook client (:mod:`stream.client`) is the one exception: a library for other
services, it depends on the contract and aiokafka only and builds its own reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from stream.contract.config import Settings
from stream.contract.topics import ALL, TopicNames, topic_configs
from stream.runtime.partitioning import function_partitioner

log = logging.getLogger(__name__)


def producer(bootstrap: str, *, client_id: str, max_request_size: int = 1_048_576, linger_ms: int = 5) -> AIOKafkaProducer:
    """A producer with vector-trainer's delivery settings (see the module docstring)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,  # not supported by the embedded broker; outputs are idempotent by key instead
        linger_ms=linger_ms,
        max_request_size=max_request_size,
        max_batch_size=max_request_size,
        partitioner=function_partitioner,
    )


def output_producer(settings: Settings) -> AIOKafkaProducer:
    """The runtime's producer of outputs and dead letters (a dead letter carries up to 2x its value, base64)."""
    assert settings.bootstrap is not None
    rt = settings.runtime
    return producer(
        settings.bootstrap, client_id=settings.client_id, max_request_size=max(1_048_576, 2 * rt.dlq_value_max_bytes + 65_536)
    )


def group_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The runtime's consumer: in the group, offsets committed by hand, every partition positioned explicitly."""
    assert settings.bootstrap is not None
    rt = settings.runtime
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        client_id=settings.client_id,
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="none",
        # Range assignment co-partitions the inputs: partition p of every topic (same count, same
        # key → same partition) goes to one instance, so a function's feedback and its hooks meet.
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=rt.session_timeout_ms,
        heartbeat_interval_ms=max(300, rt.session_timeout_ms // 4),  # every assigned partition is positioned explicitly in _on_assigned
        # 8 MB per partition per fetch: a 384-d log is ~8 KB of JSON, and 1 MB (aiokafka's default)
        # would bring ~130 of them per round trip.
        max_partition_fetch_bytes=max(8_388_608, rt.max_message_bytes + 65_536),
        fetch_max_bytes=max(52_428_800, rt.max_message_bytes + 65_536),
        fetch_max_wait_ms=rt.fetch_max_wait_ms,
        fetch_min_bytes=rt.fetch_min_bytes,
    )


def reader(bootstrap: str, *, client_id: str | None = None, auto_offset_reset: str = "earliest") -> AIOKafkaConsumer:
    """A consumer outside any group (partitions are assigned by hand), committing nothing."""
    options = {"client_id": client_id} if client_id is not None else {}
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset=auto_offset_reset, **options)


def state_reader(settings: Settings, *, probe: bool = False) -> AIOKafkaConsumer:
    """Outside any group, never resetting positions by itself.  Big fetches for snapshot chunks (512 KiB
    each); with ``probe``, fetches of about one input record (reading back the record a checkpoint names)."""
    assert settings.bootstrap is not None
    per_partition = settings.runtime.max_message_bytes + 65_536 if probe else 16_777_216
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        client_id=f"{settings.client_id}-{'probe' if probe else 'state'}",
        enable_auto_commit=False,
        auto_offset_reset="none",
        max_partition_fetch_bytes=per_partition,
        fetch_max_bytes=max(per_partition, 52_428_800 if not probe else per_partition),
        fetch_max_wait_ms=settings.runtime.fetch_max_wait_ms,
    )


async def cluster_id(consumer: AIOKafkaConsumer) -> str | None:
    """The cluster id the broker reports (Metadata v2+), or None.  The embedded broker says
    ``tansu_cluster`` whatever the instance, so it only tells real clusters apart."""
    from aiokafka.protocol.metadata import MetadataRequest

    client = consumer._client  # noqa: SLF001 - aiokafka keeps the cluster id of its metadata to itself
    try:
        node = next(iter(client.cluster.brokers())).nodeId
        response = await client.send(node, MetadataRequest([], False))
    except (KafkaError, StopIteration, OSError) as exc:
        log.debug("no cluster id: %s", exc)
        return None
    return getattr(response, "cluster_id", None)


async def publish(bootstrap: str, topic: str, key: bytes, value: bytes | None, *, client_id: str) -> None:
    """Produce one record and wait for the broker's acknowledgement."""
    out = producer(bootstrap, client_id=client_id)
    await out.start()
    try:
        await out.send_and_wait(topic, key=key, value=value)
    finally:
        await out.stop()


async def ensure_topics(
    bootstrap: str,
    names: TopicNames,
    partitions: int,
    replication_factor: int = 1,
    client_id: str = "vector-trainer-admin",
) -> dict[str, str]:
    """Create any missing topic; return ``{physical name: "created" | "exists"}``.

    Idempotent: a topic that already exists is left as it is (its partition count is
    not changed, since that would move keys between partitions).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(names.physical(t), partitions, replication_factor, topic_configs=topic_configs(t))
            for t in ALL
            if names.physical(t) not in existing
        ]
        result = {names.physical(t): "exists" for t in ALL if names.physical(t) in existing}
        if wanted:
            try:
                response = await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                response = None
            errors = {t: (code, msg) for t, code, msg in getattr(response, "topic_errors", [])}
            for topic in wanted:
                code, msg = errors.get(topic.name, (0, None))
                if code == 0:
                    result[topic.name] = "created"
                    log.info("created topic %s (%d partitions)", topic.name, partitions)
                elif code == TopicAlreadyExistsError.errno:
                    result[topic.name] = "exists"
                else:
                    raise RuntimeError(f"could not create topic {topic.name}: error {code} {msg or ''}".strip())
        return result
    finally:
        await admin.close()


async def partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> list[TopicPartition]:
    """The partitions of ``topic`` (waiting up to ``timeout`` seconds for its metadata), or LookupError."""
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic!r} does not exist (create it with: vector-trainer topics create)")
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call for this
        await asyncio.sleep(0.1)


async def at_highwater(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    """True when every partition's position has reached the highwater of its last fetch.

    The highwater in fetch responses is used because the embedded broker's
    ListOffsets answer can be short of the true end.
    """
    for tp in tps:
        high = consumer.highwater(tp)
        if high is not None and await consumer.position(tp) < high:
            return False
    return True


async def follow_topic(
    bootstrap: str, topic: str, *, from_beginning: bool = True, follow: bool = False, idle_timeout: float = 1.5
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield a topic's records without joining a group.

    Without ``follow`` it stops once every partition has been read up to the
    highwater it reports in fetch responses (the embedded broker's ListOffsets
    answer is short of the true end, so it is not used) and nothing new came for
    ``idle_timeout`` seconds.
    """
    consumer = reader(bootstrap)
    await consumer.start()
    try:
        tps = await partitions(consumer, topic, timeout=5.0)
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        last_data = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    yield record
            if batch:
                last_data = time.monotonic()
                continue
            if follow or time.monotonic() - last_data < idle_timeout:
                continue
            if await at_highwater(consumer, tps):
                return
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, *, idle_timeout: float = 1.5) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record currently in ``topic``, in partition then offset order."""
    records = [r async for r in follow_topic(bootstrap, topic, idle_timeout=idle_timeout)]
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def latest_by_key(records: Iterable[ConsumerRecord[bytes, bytes]]) -> dict[bytes, bytes]:
    """What a compacted topic holds: the last value per key; tombstones delete."""
    out: dict[bytes, bytes] = {}
    for r in records:
        if r.key is None:
            continue
        if r.value is None:
            out.pop(r.key, None)
        else:
            out[r.key] = r.value
    return out
