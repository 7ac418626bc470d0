"""Our producers put many records in one produce request (real broker)."""

from __future__ import annotations

import asyncio

import pytest

from stream.contract.topics import EXECUTIONS
from stream.runtime import kafka
from tests.support.runtime import count_requests

pytestmark = pytest.mark.broker


async def test_a_burst_of_8kb_records_shares_produce_requests(make_settings, topics) -> None:
    """aiokafka keeps one produce request in flight per broker, and by default a partition's batch
    holds only 16 KB. A 384-d vector as JSON is about 8 KB, so such records would go one to a round
    trip. At 1k events/s the benchmark's producer then fell behind (806-861/s), and records waited
    in its buffer: a bare consumer measured a p99 of 206-289 ms against 42 ms. A batch may now be as
    large as a request."""
    settings = make_settings()
    producer = kafka.producer(settings.bootstrap, client_id="batching-test")
    await producer.start()
    requests = count_requests(producer.client, "ProduceRequest")
    try:
        value = b"x" * 8_000
        futures = [await producer.send(topics.physical(EXECUTIONS), key=b"one_function", value=value) for _ in range(100)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    # One key, one partition: with 16 KB batches (two such records) this took 50 requests.
    assert 1 <= len(requests) <= 10, f"{len(requests)} produce requests for 100 records of 8 KB"
