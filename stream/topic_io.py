"""Reading whole topics and producing paced traffic: shared by the CLI, the demo and tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from .traffic import Labelled, Rate


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> list[TopicPartition]:
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
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic, timeout=5.0)
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


async def produce_traffic(
    bootstrap: str,
    topic_of: Callable[[str], str],
    events: Iterable[Labelled],
    *,
    rate: float = 0.0,
    duration: float | None = None,
    on_sent: Callable[[Labelled], None] | None = None,
    max_request_size: int = 4_194_304,
) -> int:
    """Send labelled events (paced at ``rate``/s, for at most ``duration`` s); return how many were acknowledged."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=max_request_size, client_id="vt-traffic"
    )
    await producer.start()
    sent = 0
    pending: list[asyncio.Future[object]] = []
    pacer = Rate(rate)
    started = time.monotonic()
    try:
        for item in events:
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            wait = pacer.delay(now)
            if wait > 0:
                await asyncio.sleep(wait)
            pending.append(await producer.send(topic_of(item.topic), key=item.key, value=item.value))
            if on_sent is not None:
                on_sent(item)
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
        await asyncio.gather(*pending)
        sent += len(pending)
    finally:
        await producer.stop()
    return sent
