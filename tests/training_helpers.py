"""Golden-set test data (what the density engine will produce on vt.golden) and small helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stream import events
from stream.events import ChatMessage, GoldenSample
from stream.processing import Record

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
