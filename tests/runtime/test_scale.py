"""Horizontal scale: two instances in one consumer group split the partitions, each function
is owned by exactly one of them at any moment, and together they publish the golden set a
single instance publishes for the same input."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from processors.density import DensityProcessor
from stream.contract.topics import TopicNames
from stream.runtime.kafka import ensure_topics, latest_by_key, read_topic
from stream.runtime.loop import Runtime
from stream.runtime.partitioning import function_partition
from stream.runtime.sensors import PrometheusSensors
from stream.tools.traffic import DEMO_FUNCTIONS, TrafficGenerator, produce_traffic
from tests.support.runtime import metric, running, wait_for

pytestmark = pytest.mark.broker

EVENTS = 3000


def _traffic() -> list:
    gen = TrafficGenerator(seed=71, functions=DEMO_FUNCTIONS, feedback_ratio=0.05, bad_ratio=0.01)
    return [next(gen.stream()) for _ in range(EVENTS)]


def _consumed(*runtimes: Runtime) -> float:
    return sum(metric(rt, "vt_events_consumed_total", topic=t) for rt in runtimes for t in ("executions", "feedback"))


async def _golden(settings) -> dict[bytes, bytes]:
    return latest_by_key(await read_topic(settings.bootstrap, TopicNames(settings.topic_prefix).physical("golden")))


def _density(settings) -> tuple[DensityProcessor, CollectorRegistry]:
    registry = CollectorRegistry()
    return DensityProcessor(settings.density, sensor=PrometheusSensors(registry).density), registry


async def test_two_instances_split_the_functions_and_publish_the_single_instance_golden_set(make_settings, tmp_path: Path) -> None:
    items = _traffic()
    functions = sorted({i.event.function_name for i in items if i.topic == "executions" and i.event is not None})

    # One instance.
    one = make_settings(topic_prefix=f"{make_settings().topic_prefix}one.", group_id="one", state_dir=tmp_path / "one")
    await ensure_topics(one.bootstrap, TopicNames(one.topic_prefix), one.partitions)
    await produce_traffic(one.bootstrap, TopicNames(one.topic_prefix).physical, items)
    proc, registry = _density(one)
    async with running(one, [proc], registry=registry) as rt:
        await wait_for(lambda: _consumed(rt) >= sum(1 for i in items if i.topic == "executions"), timeout=120, what="single instance done")
        await wait_for(lambda: metric(rt, "vt_consumer_lag_records") == 0, what="lag 0")
    golden_one = await _golden(one)
    assert golden_one

    # Two instances of one group, both up before the traffic arrives.
    two = make_settings(topic_prefix=f"{make_settings().topic_prefix}two.", group_id="two", state_dir=tmp_path / "two")
    names = TopicNames(two.topic_prefix)
    await ensure_topics(two.bootstrap, names, two.partitions)
    (pa, ra), (pb, rb) = _density(two), _density(two)
    owners: dict[int, set[str]] = defaultdict(set)  # executions partition -> instances seen owning it
    overlaps = 0
    async with running(two, [pa], registry=ra) as a, running(two.replace(state_dir=tmp_path / "two-b"), [pb], registry=rb) as b:
        def split() -> bool:
            ea = {tp.partition for tp in a.assignment() if tp.topic == names.physical("executions")}
            eb = {tp.partition for tp in b.assignment() if tp.topic == names.physical("executions")}
            return bool(ea) and bool(eb) and ea | eb == set(range(two.partitions))

        await wait_for(split, timeout=60, what="the group to split the partitions between the two")
        producing = asyncio.create_task(produce_traffic(two.bootstrap, names.physical, items))
        executions = sum(1 for i in items if i.topic == "executions")
        while not producing.done() or _consumed(a, b) < executions or metric(a, "vt_consumer_lag_records") + metric(b, "vt_consumer_lag_records") > 0:
            ea = {tp.partition for tp in a.assignment() if tp.topic == names.physical("executions")}
            eb = {tp.partition for tp in b.assignment() if tp.topic == names.physical("executions")}
            overlaps += len(ea & eb)
            for p in ea:
                owners[p].add("a")
            for p in eb:
                owners[p].add("b")
            await asyncio.sleep(0.05)
        await producing
        share = {"a": metric(a, "vt_events_consumed_total", topic="executions"), "b": metric(b, "vt_events_consumed_total", topic="executions")}

    assert overlaps == 0, "no partition was ever owned by both instances at once"
    assert all(len(o) == 1 for o in owners.values()), f"partitions stayed with one instance: {dict(owners)}"
    assert share["a"] > 0 and share["b"] > 0, f"both instances did work: {share}"
    # Each function lives on one partition, so on one instance: its index exists there only.
    indexed_a = {fn for e in pa.engines.values() for fn in e.functions}
    indexed_b = {fn for e in pb.engines.values() for fn in e.functions}
    assert not indexed_a & indexed_b and indexed_a | indexed_b == set(functions)
    for fn in functions:
        owner = "a" if fn in indexed_a else "b"
        assert owner in owners[function_partition(fn.encode(), two.partitions)]
    assert await _golden(two) == golden_one, "two instances publish exactly the single instance's golden set"
