"""State that moves with its partition: restored from the state topic on an instance with an empty disk,
the local disk used only when it checks out, and checkpoints of another incarnation of a topic refused.

Each instance here has a state dir of its own (no shared volume), on the real embedded broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from processors.density import DensityProcessor
from stream.contract.config import DensitySettings
from stream.contract.topics import STATE, STATE_INDEX, TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.kafka import ensure_topics, latest_by_key, read_topic
from stream.runtime.sensors import PrometheusSensors
from stream.runtime.snapshots import SnapshotIndex
from stream.runtime.statestore import CheckpointStore
from stream.tools.traffic import TrafficGenerator, produce_traffic
from tests.support.runtime import metric, running, wait_for

pytestmark = pytest.mark.broker

DENSITY = DensitySettings(exact_threshold=128, anomaly_min_logs=50)


def _traffic(n: int, seed: int) -> list:
    gen = TrafficGenerator(seed=seed, feedback_ratio=0.0)
    return [gen.execution() for _ in range(n)]


async def _produce(settings, items) -> None:
    await produce_traffic(settings.bootstrap, lambda t: f"{settings.topic_prefix}{t}", items)


async def _run(settings, consumed: int) -> tuple[DensityProcessor, dict[str, float]]:
    """Run a density processor until this run has consumed exactly ``consumed`` inputs and has no lag."""
    registry = CollectorRegistry()
    proc = DensityProcessor(DENSITY, sensor=PrometheusSensors(registry).density)
    async with running(settings, [proc], registry=registry) as rt:
        await wait_for(
            lambda: metric(rt, "vt_events_consumed_total", topic="executions") >= consumed and metric(rt, "vt_consumer_lag_records") == 0,
            timeout=120, what=f"{consumed} consumed",
        )
        await asyncio.sleep(1.5)  # anything more would show up now
        # The state reader and the prober let go of what they read: nothing is fetched again in the background.
        assert rt._reader.assignment() == set() and rt._prober.assignment() == set()
        figures = {
            source: metric(rt, "vt_state_restores_total", processor="density", topic="executions", source=source) for source in ("local", "kafka", "none")
        }
        figures["consumed"] = metric(rt, "vt_events_consumed_total", topic="executions")
        figures["restore_bytes"] = metric(rt, "vt_state_restore_bytes_total", processor="density")
        figures["foreign"] = metric(rt, "vt_state_foreign_checkpoints_total", processor="density")
        assert figures["consumed"] == consumed, f"consumed {figures['consumed']}, expected {consumed}"
    return proc, figures


def _busy(items, partitions: int) -> set[int]:
    """The partitions these inputs land on."""
    from stream.runtime.partitioning import function_partition

    return {function_partition(it.key, partitions) for it in items}


def _records(items, partitions: int) -> list:
    """The records as the runtime sees them: grouped by the partition each key hashes to, in order."""
    from stream.runtime.partitioning import function_partition
    from tests.support.density import records

    by_partition: dict[int, list] = {}
    for it in items:
        by_partition.setdefault(function_partition(it.key, partitions), []).append(it.event)
    return [r for p, evs in sorted(by_partition.items()) for r in records(evs, partition=p)]


async def _golden(settings) -> dict[bytes, bytes]:
    return latest_by_key(await read_topic(settings.bootstrap, f"{settings.topic_prefix}golden"))


async def test_a_partition_moves_to_an_instance_with_an_empty_disk_through_the_state_topic(make_settings, tmp_path: Path) -> None:
    items = _traffic(900, seed=61)
    ref = make_settings(topic_prefix=f"{make_settings().topic_prefix}ref.", group_id="ref", state_dir=tmp_path / "ref")
    await ensure_topics(ref.bootstrap, TopicNames(ref.topic_prefix), ref.partitions)
    await _produce(ref, items)
    proc_ref, _ = await _run(ref, len(items))

    a = make_settings(state_dir=tmp_path / "a")
    names = TopicNames(a.topic_prefix)
    await ensure_topics(a.bootstrap, names, a.partitions)
    await _produce(a, items[:500])
    await _run(a, 500)  # stops gracefully: its state goes to the state topic

    index = latest_by_key(await read_topic(a.bootstrap, names.physical(STATE_INDEX)))
    snaps = [msgspec.json.decode(v, type=SnapshotIndex) for v in index.values()]
    density = [s for s in snaps if s.processor == "density"]
    busy = _busy(items[:500], a.partitions)
    assert sorted(s.partition for s in density) == sorted(busy) and all(s.group == a.group_id and s.chunks for s in density)
    assert all(s.fingerprint is not None and s.fingerprint.offset == s.offset - 1 for s in density)

    # B: same group, an empty state dir of its own; the rest of the input arrives.
    b = a.replace(state_dir=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    await _produce(b, items[500:])
    proc_b, figures = await _run(b, len(items) - 500)
    # Partitions without input have nothing to restore: they start empty (no snapshot, "none").
    assert figures["kafka"] == len(busy) and figures["none"] == b.partitions - len(busy) and figures["local"] == 0, figures
    assert figures["restore_bytes"] == sum(s.size for s in density), "read exactly the snapshots' bytes"
    assert proc_b.golden() == proc_ref.golden()
    assert await _golden(b) == await _golden(ref), "the golden table equals the uninterrupted run's"


async def test_a_damaged_local_cache_is_not_used(make_settings, tmp_path: Path) -> None:
    items = _traffic(400, seed=62)
    s = make_settings(state_dir=tmp_path / "s")
    await ensure_topics(s.bootstrap, TopicNames(s.topic_prefix), s.partitions)
    await _produce(s, items)
    proc, _ = await _run(s, len(items))
    store = CheckpointStore(s.state_dir / "checkpoints" / s.group_id)
    damaged = 0
    for p in _busy(items, s.partitions):
        ckpt = store.load("density", f"{s.topic_prefix}executions", p)
        assert ckpt is not None
        victim = max((f for f in ckpt.directory.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        damaged += 1
    again, figures = await _run(s, 0)
    # (the partition without input has an intact, empty checkpoint at offset 0 on the disk)
    assert figures["kafka"] == damaged and figures["local"] == s.partitions - damaged, f"the damaged cache was verified and refused: {figures}"
    assert again.golden() == proc.golden()


async def test_a_checkpoint_of_another_incarnation_of_the_topic_is_rebuilt_not_resumed(tmp_path: Path) -> None:
    """The same topic names on a new broker (the old one gone with its data): the disk's checkpoints
    name offsets of records that are not there any more (other bytes, or the topic is now shorter)."""
    from stream.contract.config import RuntimeSettings, Settings

    def settings(bootstrap: str) -> Settings:
        rt = RuntimeSettings(poll_timeout_ms=100, commit_interval_s=0.2, checkpoint_interval_s=1.0, session_timeout_ms=3000)
        return Settings(bootstrap=bootstrap, topic_prefix="inc.", group_id="inc", state_dir=tmp_path / "state", metrics_port=0, partitions=3, runtime=rt)

    with EmbeddedBroker(log_file=tmp_path / "first.log") as first:
        s1 = settings(first.bootstrap)
        await ensure_topics(s1.bootstrap, TopicNames("inc."), 3)
        await _produce(s1, _traffic(600, seed=63))
        await _run(s1, 600)
    store = CheckpointStore(tmp_path / "state" / "checkpoints" / "inc")
    busy = _busy(_traffic(600, seed=63), 3)
    offsets = {p: store.load("density", "inc.executions", p).offset for p in busy}  # type: ignore[union-attr]
    assert all(o > 0 for o in offsets.values())

    second_items = _traffic(400, seed=64)  # other logs: fewer of them, other bytes at the same offsets
    with EmbeddedBroker(log_file=tmp_path / "second.log") as second:
        s2 = settings(second.bootstrap)
        await ensure_topics(s2.bootstrap, TopicNames("inc."), 3)
        await _produce(s2, second_items)
        proc, figures = await _run(s2, 400)
        assert figures["foreign"] == len(busy) and figures["none"] == len(busy) and figures["local"] == 3 - len(busy), figures
        fresh = DensityProcessor(DENSITY)
        fresh.process(_records(second_items, 3))
        assert proc.golden() == fresh.golden(), "rebuilt from this topic alone, nothing of the old one mixed in"
        state_records = await read_topic(s2.bootstrap, "inc." + STATE, idle_timeout=0.5)
        assert state_records, "the rebuilt state went to this cluster's state topic"
