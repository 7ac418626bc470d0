"""A bare aiokafka consumer in a group, as a process: the end-to-end benchmark's baseline.

    python -m tests.bench.bare_consumer BOOTSTRAP GROUP TOPIC...

Reads from the beginning until nothing has arrived for ``IDLE_S`` (after something
did) and prints ``{"first": t, "last": t, "count": n}`` (wall-clock seconds of its
first and last record), so that the runs of several processes can be combined.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer

IDLE_S = 3.0
TIMEOUT_S = 600.0


async def consume(bootstrap: str, group: str, topics: list[str]) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=3000, heartbeat_interval_ms=750, max_partition_fetch_bytes=8_388_608,
    )
    await consumer.start()
    first = last = 0.0
    count = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < TIMEOUT_S:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            n = sum(len(v) for v in batch.values())
            now = time.time()
            if n:
                first = first or now
                last = now
                count += n
            elif count and now - last >= IDLE_S:
                break
    finally:
        await consumer.stop()
    return {"first": first, "last": last, "count": count}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(consume(sys.argv[1], sys.argv[2], sys.argv[3:]))), flush=True)
