"""A producer that is not ours: librdkafka through confluent-kafka."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from stream.contract import events
from stream.runtime.kafka import read_topic
from tests.support.processors import Echo
from tests.support.runtime import metric, running, wait_for

pytestmark = pytest.mark.broker
confluent_kafka = pytest.importorskip("confluent_kafka")


def _send(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "acks": "all"})
    errors: list[object] = []
    for key, value in items:
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0
    assert not errors, errors


async def test_librdkafka_producer_is_accepted_or_dead_lettered(make_settings, topics) -> None:
    settings = make_settings()
    good = {
        "uuid": "c-1",
        "function_name": "from_librdkafka",
        "timestamp_utc": "2026-11-24T12:00:00Z",
        "status": "SUCCESS",
        "inputs": {"q": "hello from C"},
        "return_value": "hi",
    }
    bad = dict(good, uuid="c-2", status="PERHAPS")
    await asyncio.to_thread(
        _send,
        settings.bootstrap,
        topics.physical("executions"),
        [(b"from_librdkafka", json.dumps(good).encode()), (b"from_librdkafka", json.dumps(bad).encode())],
    )
    echo = Echo()
    async with running(settings, [echo]) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= 2, what="both consumed")
        await wait_for(lambda: metric(rt, "vt_dead_letters_total") >= 1, what="one dead letter")
    assert len(echo.seen) == 1
    (letter,) = [msgspec.json.decode(r.value, type=events.DeadLetter) for r in await read_topic(settings.bootstrap, topics.physical("dlq"))]
    assert letter.error_type == "unknown_status" and "PERHAPS" in letter.error
