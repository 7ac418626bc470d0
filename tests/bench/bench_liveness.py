"""Liveness: from the last log of a burst to its golden set on ``vt.golden``, with nothing after it.

Twenty bursts, one after the other, each of a function of its own (a few hundred clustered
logs stamped with one time, as a producer sending them at once would), through a real
runtime with the density engine and its default ``density.idle_evaluate_s`` on an embedded
broker.  The clock starts when the burst's last log is acknowledged by the broker and stops
when the last golden record of that function's evaluation arrives on ``vt.golden``.

    python -m tests.bench --only liveness [--quick] --out bench-results/liveness.json
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from processors.density import DensityProcessor
from stream.contract import events
from stream.runtime.broker import EmbeddedBroker
from stream.contract.config import DensitySettings, RuntimeSettings, Settings
from stream.runtime.loop import Runtime
from stream.contract.topics import TopicNames
from stream.runtime.kafka import ensure_topics
from tests.support.density import clustered, logs

BURSTS = 20
LOGS_PER_BURST = 300


def run(ctx) -> dict:  # type: ignore[no-untyped-def]
    bursts = 5 if ctx.quick else BURSTS
    density = DensitySettings(exact_threshold=4096, anomaly_min_logs=100)  # idle_evaluate_s: the default

    async def main() -> dict:
        with EmbeddedBroker(log_file=ctx.scratch / "liveness-broker.log") as broker:
            names = TopicNames("live.")
            await ensure_topics(broker.bootstrap, names, 3)
            settings = Settings(
                bootstrap=broker.bootstrap, topic_prefix="live.", group_id="bench-live", state_dir=ctx.scratch / "live",
                metrics_port=0, partitions=3, density=density,
                runtime=RuntimeSettings(session_timeout_ms=3000, poll_timeout_ms=200),
            )
            proc = DensityProcessor(density)
            rt = Runtime(settings, [proc], serve_metrics=False)
            task = asyncio.create_task(rt.run())
            arrivals: dict[str, list[float]] = {}
            consumer = AIOKafkaConsumer(names.physical("golden"), bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
            await consumer.start()
            await producer.start()

            async def follow() -> None:
                async for r in consumer:
                    fn = (r.key or b"").decode().partition("/")[0]
                    arrivals.setdefault(fn, []).append(time.monotonic())

            follower = asyncio.create_task(follow())
            try:
                while not rt.ready:
                    await asyncio.sleep(0.05)
                latencies: list[float] = []
                for i in range(bursts):
                    fn = f"burst_{i:02d}"
                    data = clustered(LOGS_PER_BURST, 64, 6, spread=0.5, isolated=10, seed=100 + i)
                    stamp = datetime.now(UTC)
                    items = [msgspec.structs.replace(e, timestamp_utc=stamp) for e in logs(data.vectors, function=fn, seed=100 + i)]
                    futures = [await producer.send(names.physical("executions"), key=fn.encode(), value=events.encode(e)) for e in items]
                    await asyncio.gather(*futures)
                    last_acked = time.monotonic()
                    deadline = last_acked + 60
                    while time.monotonic() < deadline:
                        done = fn in proc.golden() and not any(e.unevaluated() for e in proc.engines.values())
                        if done and len(arrivals.get(fn, ())) >= len(proc.golden()[fn]):
                            break
                        await asyncio.sleep(0.02)
                    else:
                        raise RuntimeError(f"no golden set for {fn} within 60 s")
                    latencies.append(max(arrivals[fn]) - last_acked)
                    await asyncio.sleep(0.5)  # the next burst starts on a quiet pipeline
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
                await consumer.stop()
                await producer.stop()
                rt.stop()
                await task
            lat = np.array(latencies)
            return {
                "bursts": bursts,
                "logs_per_burst": LOGS_PER_BURST,
                "idle_evaluate_s": density.idle_evaluate_s,
                "last_log_to_golden_set_p50_s": round(float(np.percentile(lat, 50)), 3),
                "last_log_to_golden_set_p99_s": round(float(np.percentile(lat, 99)), 3),
                "last_log_to_golden_set_max_s": round(float(lat.max()), 3),
                "last_log_to_golden_set_min_s": round(float(lat.min()), 3),
            }

    return asyncio.run(main())
