"""Replaying dead letters: their original value, sent again to the input topic it came from.

For after a producer or a processor was fixed (a ``processing_error`` from a bug, a
function whose vectors were re-dimensioned...).  Only whole values go back: a dead
letter whose value was cut (``value_truncated``) or that had none (``null_value``) is
skipped and said so.  Values go only to the input topics of the configured prefix,
whatever ``source_topic`` a dead letter names.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer

from stream.contract.deadletter import NULL_VALUE
from stream.contract.topics import INPUTS, TopicNames
from .state import DlqEntry


@dataclass(slots=True)
class ReplayResult:
    replayed: list[str] = field(default_factory=list)  # dead-letter ids sent again
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, why)

    def as_json(self) -> dict[str, object]:
        return {"replayed": self.replayed, "skipped": [{"id": i, "why": w} for i, w in self.skipped]}


def select(
    entries: Iterable[DlqEntry],
    *,
    ids: Iterable[str] | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    source_topic: str | None = None,
) -> list[DlqEntry]:
    """Dead letters matching every filter given (ids, reason, dead-lettered at or after ``since``, source topic)."""
    wanted = set(ids) if ids is not None else None
    return [
        e for e in entries
        if (wanted is None or e.id in wanted)
        and (reason is None or e.letter.error_type == reason)
        and (since is None or e.letter.at >= since)
        and (source_topic is None or e.letter.source_topic == source_topic)
    ]


def _value(entry: DlqEntry, names: TopicNames) -> tuple[str, bytes] | str:
    """(topic, value) to send, or why not."""
    letter = entry.letter
    inputs = {names.physical(t) for t in INPUTS}
    if letter.source_topic not in inputs:
        return f"source topic {letter.source_topic!r} is not an input topic of prefix {names.prefix!r}"
    if letter.value_truncated:
        return f"the dead letter keeps only part of the value ({letter.value_bytes} bytes)"
    if letter.error_type == NULL_VALUE or letter.value_bytes == 0:
        return "the record had no value"
    try:
        raw = base64.b64decode(letter.value_b64, validate=True)
    except (binascii.Error, ValueError):
        return "value_b64 is not base64"
    return letter.source_topic, raw


async def replay(bootstrap: str, names: TopicNames, entries: list[DlqEntry], *, dry_run: bool = False) -> ReplayResult:
    """Send each dead letter's value (with its original key) to its source topic; acknowledged before returning."""
    result = ReplayResult()
    sends: list[tuple[DlqEntry, str, bytes]] = []
    for entry in entries:
        got = _value(entry, names)
        if isinstance(got, str):
            result.skipped.append((entry.id, got))
        else:
            sends.append((entry, *got))
    if dry_run or not sends:
        result.replayed = [e.id for e, _t, _v in sends]
        return result
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", client_id="vt-dlq-replay", max_request_size=16 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, key=entry.key, value=value) for entry, topic, value in sends]
        for (entry, _topic, _value_), fut in zip(sends, futures, strict=True):
            await fut
            result.replayed.append(entry.id)
    finally:
        await producer.stop()
    return result


def preview(letter: object, limit: int = 600) -> str:
    """The start of a dead letter's value as text (undecodable bytes shown as U+FFFD)."""
    b64 = getattr(letter, "value_b64", "")
    try:
        raw = base64.b64decode(b64[: (limit * 4 // 3 + 8) // 4 * 4])
    except (binascii.Error, ValueError):
        return ""
    return raw.decode("utf-8", errors="replace")[:limit]
