"""Golden-set test data (what the density engine will produce on vt.golden) and small helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from stream.contract import events
from stream.contract.events import ChatMessage, GoldenSample
from stream.contract.processing import Record
from stream.runtime.kafka import read_topic
from stream.runtime.partitioning import function_partitioner

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def golden(fn: str, i: int, *, at: datetime | None = None, answer: str | None = None) -> GoldenSample:
    return GoldenSample(
        uuid=f"{fn}-s{i:04d}",
        function_name=fn,
        strategy="steady" if i % 5 else "anomaly",
        density=1.0 + i / 10,
        messages=[
            ChatMessage(role="system", content=f"You are the {fn} function."),
            ChatMessage(role="user", content=f"Request number {i}: please handle the customer's invoice question."),
            ChatMessage(role="assistant", content=answer if answer is not None else f"Answer {i}: the invoice was corrected."),
        ],
        source_timestamp=T0,
        selected_at=at or (T0 + timedelta(seconds=i)),
    )


def key(sample: GoldenSample) -> bytes:
    return f"{sample.function_name}/{sample.uuid}".encode()


def record(sample: GoldenSample | None, *, partition: int = 0, offset: int = 0, k: bytes | None = None) -> Record:
    raw = events.encode(sample) if sample is not None else None
    return Record("golden", partition, offset, k if k is not None else key(sample), sample, raw)  # type: ignore[arg-type]


def records(samples: list[GoldenSample], *, partition: int = 0, start: int = 0) -> list[Record]:
    return [record(s, partition=partition, offset=start + i) for i, s in enumerate(samples)]


def tombstone(fn: str, uuid: str, *, partition: int = 0, offset: int = 0) -> Record:
    return Record("golden", partition, offset, f"{fn}/{uuid}".encode(), None, None)


async def produce(settings, items: list[tuple[str, bytes, bytes | None]]) -> None:
    """Produce like the runtime does (function partitioner), e.g. golden samples and tombstones."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, partitioner=function_partitioner, acks="all")
    await producer.start()
    try:
        for topic, k, v in items:
            await producer.send_and_wait(f"{settings.topic_prefix}{topic}", key=k, value=v)
    finally:
        await producer.stop()


def golden_items(fn: str, ids: range) -> list[tuple[str, bytes, bytes | None]]:
    return [("golden", key(s), events.encode(s)) for s in (golden(fn, i) for i in ids)]


async def topic_events(settings, topic: str) -> list:
    recs = await read_topic(settings.bootstrap, f"{settings.topic_prefix}{topic}", idle_timeout=0.5)
    return [events.decode(topic, r.value) for r in sorted(recs, key=lambda r: (r.timestamp, r.partition, r.offset))]
