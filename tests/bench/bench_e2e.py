"""End to end: events/s from the producer to the golden decision, 1 and 2 instances; record
latency at a fixed 1k events/s; resident memory per 100k indexed vectors.

Every instance is a real ``vector-trainer run`` process (all three engines) on one
embedded broker; the events carry 384-d vectors (a sentence-transformers size), come
from 12 functions (the demo's vector functions, four times over under other names) on
4 partitions, and are produced by this process.  Figures:

* ``throughput``: a backlog of N events is produced first, then the instance(s) start;
  events/s = N / (time from the first record consumed to every input offset committed).
  ``scaling_2_over_1`` is the ratio of the two runs.  On a 2-core machine the broker,
  the instances and this process share the cores: the report says how busy they were.
* ``latency_at_1k``: one instance, events produced at 1000/s for a while; p50/p99 of
  ``vt_record_latency_seconds`` (broker timestamp of a record -> its outputs
  acknowledged), interpolated within histogram buckets as Prometheus does.  A golden
  *selection* additionally waits for its partition's next evaluation window
  (``density.select_interval_s`` of event time, 5 s by default).
  Measured with the 384-d events and again with the demo functions' own 32-64-d ones.
* ``rss_per_100k_vectors``: the 1-instance run's RSS growth over its indexed logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import time
from pathlib import Path

from stream.broker import EmbeddedBroker
from stream.scrape import Scrape
from stream.topic_io import produce_traffic
from stream.topics import TopicNames, ensure_topics
from stream.traffic import DEMO_FUNCTIONS, TrafficGenerator
from tests.faults import INPUTS, ProcessorProcess, wait_drained

DIM = 384
PARTITIONS = 4
FUNCTIONS = tuple(dataclasses.replace(s, name=f"{s.name}_{i}") for i in range(4) for s in DEMO_FUNCTIONS if s.dim is not None)
SETS = (f"partitions={PARTITIONS}",)


def _events(n: int, seed: int, dim: int | None = DIM) -> list:
    """``dim=None``: the demo functions' own vector sizes (32, 48, 64)."""
    gen = TrafficGenerator(seed=seed, functions=FUNCTIONS, feedback_ratio=0.03, bad_ratio=0.002, dim_override=dim)
    return list(itertools.islice(gen.stream(), n))


def _consumed(procs: list[ProcessorProcess]) -> float:
    return sum(p.scrape().by("vt_events_consumed_total", "topic").get(t, 0.0) for p in procs for t in INPUTS)


def _cpu_busy() -> tuple[float, float]:
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _throughput(broker: EmbeddedBroker, prefix: str, events: list, instances: int, scratch: Path) -> dict:
    names = TopicNames(prefix)
    asyncio.run(ensure_topics(broker.bootstrap, names, PARTITIONS))
    asyncio.run(produce_traffic(broker.bootstrap, names.physical, events))
    procs = [ProcessorProcess(broker.bootstrap, prefix, prefix, scratch / f"{prefix}{i}", scratch / f"{prefix}{i}.log", sets=SETS) for i in range(instances)]
    rss0 = []
    for p in procs:  # start both before timing: the group settles first
        p.start()
        rss0.append(p.rss_bytes())
    first = None
    busy0 = _cpu_busy()
    deadline = time.monotonic() + 900
    while first is None and time.monotonic() < deadline:
        if _consumed(procs) > 0:
            first = time.monotonic()
        time.sleep(0.02)
    wait_drained(procs[0], names, timeout=900)
    elapsed = time.monotonic() - (first or time.monotonic())
    busy1 = _cpu_busy()
    scrapes = [p.scrape() for p in procs]
    indexed = sum(s.total("vt_density_index_logs") for s in scrapes)
    rss = [p.rss_bytes() for p in procs]
    cpu = [p.cpu_seconds() for p in procs]
    for p in procs:
        p.stop()
    return {
        "instances": instances,
        "events": len(events),
        "events_per_s": round(len(events) / elapsed),
        "seconds": round(elapsed, 2),
        "indexed_logs": int(indexed),
        "machine_cpu_busy": round((busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]), 2),
        "processor_cpu_s": [round(c, 1) for c in cpu],
        "rss_growth_bytes": sum(r - r0 for r, r0 in zip(rss, rss0, strict=True)),
    }


def _quantile(scrape: Scrape, q: float) -> float:
    """histogram_quantile over vt_record_latency_seconds of both input topics."""
    buckets: dict[float, float] = {}
    for s in scrape.select("vt_record_latency_seconds_bucket"):
        if s.labels.get("topic") in INPUTS:
            le = float(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if b == float("inf"):
                return lower_bound
            return lower_bound + (b - lower_bound) * (rank - lower_count) / max(1e-9, buckets[b] - lower_count)
        lower_bound, lower_count = b, buckets[b]
    return bounds[-2]


def _latency(broker: EmbeddedBroker, prefix: str, events: list, rate: float, scratch: Path) -> dict:
    names = TopicNames(prefix)
    asyncio.run(ensure_topics(broker.bootstrap, names, PARTITIONS))
    proc = ProcessorProcess(broker.bootstrap, prefix, prefix, scratch / prefix, scratch / f"{prefix}log", sets=SETS).start()
    started = time.monotonic()
    sent = asyncio.run(produce_traffic(broker.bootstrap, names.physical, events, rate=rate))
    produce_s = time.monotonic() - started
    wait_drained(proc, names, timeout=600)
    scrape = proc.scrape()
    proc.stop()
    return {
        "target_events_per_s": rate,
        "achieved_events_per_s": round(sent / produce_s),
        "events": sent,
        "p50_ms": round(1000 * _quantile(scrape, 0.50), 1),
        "p99_ms": round(1000 * _quantile(scrape, 0.99), 1),
        "what": "broker timestamp of an input record -> its outputs acknowledged (vt_record_latency_seconds)",
        "goal": "p99 < 250 ms",
    }


def run(ctx) -> dict:  # type: ignore[no-untyped-def]
    n = 6_000 if ctx.quick else 30_000
    lat_n = 5_000 if ctx.quick else 20_000
    scratch = ctx.scratch / "e2e"
    with EmbeddedBroker(log_file=scratch / "broker.log") as broker:
        events = _events(n, seed=5)
        one = _throughput(broker, "one.", events, 1, scratch)
        two = _throughput(broker, "two.", events, 2, scratch)
        latency = _latency(broker, "lat384.", _events(lat_n, seed=9), 1000.0, scratch)
        latency_native = _latency(broker, "latnative.", _events(lat_n, seed=9, dim=None), 1000.0, scratch)
    per_100k = one["rss_growth_bytes"] / max(1, one["indexed_logs"]) * 100_000
    return {
        "vector_dim": DIM,
        "functions": len(FUNCTIONS),
        "partitions": PARTITIONS,
        "cpus": os.cpu_count(),
        "throughput_1_instance": one,
        "throughput_2_instances": two,
        "scaling_2_over_1": round(two["events_per_s"] / one["events_per_s"], 2),
        "latency_at_1k": latency,
        "latency_at_1k_native_dims": {**latency, **latency_native, "vector_dims": "32, 48, 64 (the demo functions' own)"},
        "rss_mb_per_100k_vectors": round(per_100k / 2**20, 1),
        "goals": {"events_per_s_1_instance": ">= 3000", "scaling_2_over_1": ">= 1.6 where cores allow", "p99_ms_at_1k": "< 250"},
        "goals_met": {
            "events_per_s_1_instance": one["events_per_s"] >= 3000,
            "scaling_2_over_1": two["events_per_s"] / one["events_per_s"] >= 1.6,
            "p99_ms_at_1k": latency["p99_ms"] < 250,
            "p99_ms_at_1k_native_dims": latency_native["p99_ms"] < 250,
        },
    }
