"""Runtime overhead: records/s through the consumer loop vs a bare aiokafka consumer.

Both read the same topic of execution logs with vectors, in the same process, on
the embedded broker.  The runtime decodes and validates every record, runs a no-op
processor in its worker thread and commits; the baseline only fetches bytes.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer

from stream.contract.config import RuntimeSettings, Settings
from stream.contract.processing import Processor, Record, Result
from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.kafka import ensure_topics
from stream.runtime.loop import Runtime
from stream.tools.traffic import TrafficGenerator, produce_traffic


class _Count(Processor):
    name = "count"
    inputs = ("executions",)

    def __init__(self) -> None:
        self.n = 0

    def process(self, records: list[Record]) -> Result:
        self.n += len(records)
        return Result()


async def _baseline(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"b{uuid.uuid4().hex[:6]}", enable_auto_commit=False)
    await consumer.start()
    seen, started = 0, None
    while seen < n:
        batch = await consumer.getmany(timeout_ms=200, max_records=500)
        if batch and started is None:
            started = time.perf_counter()
        seen += sum(len(v) for v in batch.values())
    elapsed = time.perf_counter() - (started or time.perf_counter())
    await consumer.stop()
    return n / elapsed


async def _runtime(settings: Settings, n: int) -> float:
    proc = _Count()
    rt = Runtime(settings, [proc], serve_metrics=False)
    task = asyncio.create_task(rt.run())
    while proc.n == 0:
        await asyncio.sleep(0.001)
    started = time.perf_counter()
    while proc.n < n:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    rt.stop()
    await task
    return n / elapsed


def run(ctx) -> dict:  # type: ignore[no-untyped-def]
    n = 5_000 if ctx.quick else 30_000

    async def main() -> dict:
        with EmbeddedBroker() as broker:
            names = TopicNames("bench.")
            await ensure_topics(broker.bootstrap, names, 3)
            gen = TrafficGenerator(seed=1, feedback_ratio=0.0, dim_override=384)
            items = [gen.execution(gen.functions[0]) for _ in range(n)]
            await produce_traffic(broker.bootstrap, names.physical, items)
            settings = Settings(
                bootstrap=broker.bootstrap, topic_prefix="bench.", group_id="bench-rt", state_dir=ctx.scratch / "rt",
                runtime=RuntimeSettings(session_timeout_ms=3000, poll_timeout_ms=50),
            )
            base = await _baseline(broker.bootstrap, names.physical("executions"), n)
            rt = await _runtime(settings, n)
            return {
                "records": n,
                "vector_dim": 384,
                "baseline_aiokafka_records_per_s": round(base),
                "runtime_records_per_s": round(rt),
                "runtime_over_baseline": round(rt / base, 3),
            }

    return asyncio.run(main())
