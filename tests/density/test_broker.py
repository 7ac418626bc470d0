"""Engine 1 through the runtime on the real embedded broker: restarts, crashes and dead letters."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from processors.density import DensityProcessor
from stream.contract import events
from stream.contract.config import DensitySettings
from stream.runtime.kafka import latest_by_key, read_topic
from stream.runtime.sensors import PrometheusSensors
from stream.runtime.statestore import CheckpointStore
from stream.tools.traffic import TrafficGenerator, produce_traffic
from tests.support.runtime import metric, running, wait_for

pytestmark = pytest.mark.broker

DENSITY = DensitySettings(exact_threshold=128, anomaly_min_logs=50)


def _traffic(n: int, seed: int = 23) -> list:
    gen = TrafficGenerator(seed=seed, feedback_ratio=0.0)
    return [gen.execution() for _ in range(n)]


async def _produce(settings, items) -> None:
    await produce_traffic(settings.bootstrap, lambda t: f"{settings.topic_prefix}{t}", items)


async def _consume_all(settings, total: int) -> DensityProcessor:
    """Run the runtime with a fresh density processor until exactly ``total`` records (this run) are consumed."""
    registry = CollectorRegistry()
    proc = DensityProcessor(DENSITY, sensor=PrometheusSensors(registry).density)
    async with running(settings, [proc], registry=registry) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= total, timeout=120, what=f"{total} consumed")
        await wait_for(lambda: metric(rt, "vt_consumer_lag_records") == 0, what="lag 0")
        await asyncio.sleep(0.3)
        assert metric(rt, "vt_events_consumed_total") == total, "resumed at the checkpoint: nothing more, nothing less"
    return proc


async def _golden(settings) -> dict[bytes, bytes]:
    return latest_by_key(await read_topic(settings.bootstrap, f"{settings.topic_prefix}golden"))


async def test_restart_and_crash_replay_give_the_uninterrupted_golden_set(make_settings, topics, tmp_path: Path) -> None:
    items = _traffic(1800)
    half = 900

    # A: one uninterrupted run over everything.
    a = make_settings(topic_prefix=f"{topics.prefix}a.", group_id="a", state_dir=tmp_path / "a")
    await _ensure(a)
    await _produce(a, items)
    proc_a = await _consume_all(a, len(items))
    golden_a = await _golden(a)
    assert golden_a, "the run selected golden samples"
    assert {k.decode() for k in golden_a} == {f"{fn}/{u}" for fn, sel in proc_a.golden().items() for u in sel}

    # B: stop half-way (graceful: final checkpoint), restart from the checkpoint for the rest.
    b = make_settings(topic_prefix=f"{topics.prefix}b.", group_id="b", state_dir=tmp_path / "b")
    await _ensure(b)
    await _produce(b, items[:half])
    await _consume_all(b, half)
    saved = _copy_checkpoints(b, tmp_path / "b-half")
    await _produce(b, items[half:])
    proc_b = await _consume_all(b, len(items) - half)
    assert proc_b.golden() == proc_a.golden()
    assert await _golden(b) == golden_a, "same samples, same densities, same selected_at"

    # C: a crash after the second half was processed but before its state was saved:
    # the state rolls back to the half-way checkpoint while offsets stay committed at the end.
    _restore_checkpoints(b, saved)
    proc_c = await _consume_all(b, len(items) - half)
    assert proc_c.golden() == proc_a.golden()
    assert await _golden(b) == golden_a, "the replay re-emitted exactly what the lost run had emitted"


async def test_changed_epsilon_rebuilds_from_the_beginning_through_the_runtime(make_settings, topics, tmp_path: Path) -> None:
    """A checkpoint built under another epsilon is dropped (REBUILD): the whole topic is replayed."""
    items = _traffic(600, seed=29)
    s = make_settings(state_dir=tmp_path / "s")
    await _produce(s, items)
    await _consume_all(s, len(items))
    narrow = DensitySettings(exact_threshold=128, anomaly_min_logs=50, epsilon=0.2)
    registry = CollectorRegistry()
    proc = DensityProcessor(narrow, sensor=PrometheusSensors(registry).density)
    async with running(s, [proc], registry=registry) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= len(items), timeout=120, what="the replay")
        await asyncio.sleep(0.3)
        assert metric(rt, "vt_events_consumed_total") == len(items), "replayed from the beginning, once"
    fresh = DensityProcessor(narrow)
    fresh.process(_records(items, s.partitions))
    assert proc.golden() == fresh.golden()
    golden = {k.decode() for k in await _golden(s)}
    assert golden == {f"{fn}/{u}" for fn, sel in fresh.golden().items() for u in sel}, "old samples withdrawn"


def _records(items, partitions: int = 3) -> list:
    """The records as the runtime sees them: grouped by the partition each key hashes to, in order."""
    from stream.runtime.partitioning import function_partition
    from tests.support.density import records

    by_partition: dict[int, list] = {}
    for it in items:
        by_partition.setdefault(function_partition(it.key, partitions), []).append(it.event)
    return [r for p, evs in sorted(by_partition.items()) for r in records(evs, partition=p)]


async def test_wrong_dimensions_are_dead_lettered_by_the_density_processor(make_settings, topics) -> None:
    settings = make_settings()
    gen = TrafficGenerator(seed=5, feedback_ratio=0.0)
    good = [gen.execution(gen.functions[0]) for _ in range(60)]
    bad = [gen.bad("wrong_dimension") for _ in range(3)]
    await _produce(settings, good + bad)
    registry = CollectorRegistry()
    proc = DensityProcessor(DENSITY, sensor=PrometheusSensors(registry).density)
    async with running(settings, [proc], registry=registry) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= 63, what="63 consumed")
        await wait_for(lambda: metric(rt, "vt_dead_letters_total", reason="wrong_dimension") == 3, what="3 dead letters")
        assert metric(rt, "vt_density_indexed_total", function="summarize_ticket") == 60
        await asyncio.sleep(0.2)
    letters = [msgspec.json.decode(r.value, type=events.DeadLetter) for r in await read_topic(settings.bootstrap, topics.physical("dlq"))]
    assert len(letters) == 3
    assert all(x.processor == "density" and "uses 64" in x.error for x in letters)


async def _ensure(settings) -> None:
    from stream.contract.topics import TopicNames
    from stream.runtime.kafka import ensure_topics

    await ensure_topics(settings.bootstrap, TopicNames(settings.topic_prefix), settings.partitions)


def _store(settings) -> CheckpointStore:
    return CheckpointStore(settings.state_dir / "checkpoints" / settings.group_id)


def _copy_checkpoints(settings, dest: Path) -> dict[int, tuple[int, Path]]:
    """Copy each partition's current density checkpoint aside: {partition: (offset, copy)}."""
    store, topic = _store(settings), f"{settings.topic_prefix}executions"
    out = {}
    for p in range(settings.partitions):
        ckpt = store.load("density", topic, p)
        assert ckpt is not None, f"partition {p} has no checkpoint"
        shutil.copytree(ckpt.directory, dest / str(p))
        out[p] = (ckpt.offset, dest / str(p))
    return out


def _restore_checkpoints(settings, saved: dict[int, tuple[int, Path]]) -> None:
    store, topic = _store(settings), f"{settings.topic_prefix}executions"
    for p, (offset, path) in saved.items():
        store.save("density", topic, p, offset, lambda d, path=path: shutil.copytree(path, d, dirs_exist_ok=True))
