"""The consumer loop on the real embedded broker."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter

import msgspec
import pytest

from stream.contract import events
from stream.contract.deadletter import REASONS
from stream.runtime.kafka import read_topic
from stream.tools.scrape import Scrape
from stream.tools.traffic import BAD_KINDS, TrafficGenerator, produce_traffic
from tests.support.processors import DimensionCheck, Echo, Explodes, SlowTick, Tally
from tests.support.runtime import count_requests, metric, running, wait_for

pytestmark = pytest.mark.broker


async def _produce(settings, items) -> int:
    return await produce_traffic(settings.bootstrap, lambda t: f"{settings.topic_prefix}{t}", items)


async def test_good_events_processed_bad_ones_dead_lettered_none_lost(make_settings, topics) -> None:
    settings = make_settings()
    gen = TrafficGenerator(seed=11, feedback_ratio=0.0)
    good = [gen.execution() for _ in range(300)]
    bad = [gen.bad(kind) for kind in BAD_KINDS for _ in range(2)]
    mixed = good[:150] + bad + good[150:]
    await _produce(settings, mixed)
    echo = Echo()
    async with running(settings, [echo, DimensionCheck()]) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= len(mixed), what="all inputs consumed")
        await wait_for(lambda: metric(rt, "vt_consumer_lag_records") == 0, what="lag 0")
        await asyncio.sleep(0.5)
    outputs = await read_topic(settings.bootstrap, topics.physical("golden"))
    letters = [msgspec.json.decode(r.value, type=events.DeadLetter) for r in await read_topic(settings.bootstrap, topics.physical("dlq"))]

    # Every good event produced exactly one output (graceful run: no replays).
    assert sorted(json.loads(r.value)["offset"] for r in outputs) == sorted(o for _p, o in echo.seen)
    # Wrong-dimension vectors are valid events: Echo handles them, the dimension check dead-letters them.
    assert len(outputs) == len(good) + 2
    by_reason = Counter(letter.error_type for letter in letters)
    assert sum(by_reason.values()) == len(bad)
    assert by_reason == Counter(
        {"malformed_json": 2, "missing_field": 2, "wrong_type": 2, "unknown_status": 2, "invalid_vector": 2,
         "wrong_dimension": 2, "oversize": 2, "too_deep": 2, "null_value": 2}
    )
    for letter in letters:
        assert letter.source_topic == topics.physical("executions") and letter.error
        assert letter.value_bytes > 0 or letter.error_type == "null_value"


async def test_restart_resumes_from_committed_offsets_without_skipping(make_settings, topics) -> None:
    settings = make_settings()
    gen = TrafficGenerator(seed=5, feedback_ratio=0.0)
    first = [gen.execution() for _ in range(200)]
    await _produce(settings, first)
    echo1 = Echo()
    async with running(settings, [echo1]) as rt:
        await wait_for(lambda: len(echo1.seen) >= 200, what="first 200")
    second = [gen.execution() for _ in range(150)]
    await _produce(settings, second)
    echo2 = Echo()
    async with running(settings, [echo2]) as rt:
        await wait_for(lambda: len(echo2.seen) >= 150, what="next 150")
        await asyncio.sleep(0.5)
        assert metric(rt, "vt_events_consumed_total") == 150
    # The second run read exactly the new records: nothing skipped, nothing re-read.
    assert len(echo2.seen) == 150 and not set(echo1.seen) & set(echo2.seen)
    per_partition: dict[int, list[int]] = {}
    for p, o in sorted(echo1.seen + echo2.seen):
        per_partition.setdefault(p, []).append(o)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets))), "a gap or a duplicate in a partition"


async def test_state_checkpoint_survives_restart_and_matches_input(make_settings, topics) -> None:
    settings = make_settings()
    gen = TrafficGenerator(seed=8, feedback_ratio=0.0)
    await _produce(settings, [gen.execution() for _ in range(120)])
    tally = Tally()
    async with running(settings, [tally]) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= 120, what="120 consumed")
    assert sum(tally.counts.values()) == 120
    await _produce(settings, [gen.execution() for _ in range(60)])
    tally2 = Tally()
    async with running(settings, [tally2]) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= 60, what="60 more consumed")
        await asyncio.sleep(0.5)
    assert all(d is not None for d in tally2.loaded_from.values()), "state was not loaded from the checkpoint"
    assert sum(tally2.counts.values()) == 180  # 120 restored + 60 new: nothing lost, nothing counted twice


async def test_state_older_than_committed_offset_is_replayed_from_its_own_offset(make_settings, topics) -> None:
    """A crash after a commit but before the next state checkpoint: the state's offset wins."""
    from stream.runtime.statestore import CheckpointStore

    # Without the state topic: the local checkpoint rolled back below is then the newest state there is
    # (with it, the snapshot the first run wrote at shutdown would be newer and win, tests/runtime/test_state.py).
    settings = make_settings(runtime={"state_snapshots": False})
    gen = TrafficGenerator(seed=9, feedback_ratio=0.0)
    await _produce(settings, [gen.execution() for _ in range(90)])
    tally = Tally()
    async with running(settings, [tally]):
        await wait_for(lambda: sum(tally.counts.values()) >= 90, what="90 counted")
    # Roll every partition's state back to an empty checkpoint at offset 0, as if the
    # process had died before any state checkpoint while offsets were already committed.
    store = CheckpointStore(settings.state_dir / "checkpoints" / settings.group_id)
    for p in range(settings.partitions):
        store.save("tally", topics.physical("executions"), p, 0, lambda d: (d / "count").write_text("0"))
    tally2 = Tally()
    async with running(settings, [tally2]) as rt:
        await wait_for(lambda: sum(tally2.counts.values()) >= 90, what="replay")
        await asyncio.sleep(0.5)
        assert metric(rt, "vt_events_consumed_total") == 90
    assert sum(tally2.counts.values()) == 90


async def test_processor_bug_dead_letters_only_the_poison_records(make_settings, topics) -> None:
    settings = make_settings()
    gen = TrafficGenerator(seed=4, feedback_ratio=0.0)
    items = [gen.execution() for _ in range(50)]
    poison = gen.execution()
    log = msgspec.json.decode(poison.value)
    log["function_name"] = "boom"
    poison.value, poison.key = msgspec.json.encode(log), b"boom"
    await _produce(settings, items[:25] + [poison] + items[25:])
    proc = Explodes()
    async with running(settings, [proc]) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= 51, what="51 consumed")
        await wait_for(lambda: metric(rt, "vt_dead_letters_total", reason="processing_error") == 1, what="1 dead letter")
    assert proc.ok == 50
    letters = await read_topic(settings.bootstrap, topics.physical("dlq"))
    assert len(letters) == 1
    letter = msgspec.json.decode(letters[0].value, type=events.DeadLetter)
    assert letter.error_type == "processing_error" and "kaboom" in letter.error and letter.processor == "explodes"


async def test_metrics_endpoint_serves_plausible_values(make_settings, topics) -> None:
    settings = make_settings()
    gen = TrafficGenerator(seed=12, feedback_ratio=0.0)
    items = [gen.execution() for _ in range(100)] + [gen.bad("unknown_status"), gen.bad("malformed_json")]
    await _produce(settings, items)
    async with running(settings, [Echo()], serve_metrics=True) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= 102, what="102 consumed")
        await wait_for(lambda: metric(rt, "vt_consumer_lag_records") == 0, what="lag 0")
        server = rt.metrics_server
        assert server is not None
        scrape = await asyncio.to_thread(Scrape.fetch, server.url)
        import urllib.request

        ready = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://{server.host}:{server.port}/ready").status)
    assert ready == 200
    assert scrape.total("vt_up") == 1 and scrape.total("vt_ready") == 1
    assert scrape.total("vt_events_consumed_total", topic="executions") == 102
    assert scrape.total("vt_events_produced_total", topic="golden") == 100
    assert scrape.total("vt_events_produced_total", topic="dlq") == 2
    dead = {reason: n for reason, n in scrape.by("vt_dead_letters_total", "reason").items() if n}
    assert dead == {"unknown_status": 1.0, "malformed_json": 1.0}
    # Every reason of the closed vocabulary exists from the start (at 0), for rate() and alerts.
    assert set(scrape.by("vt_dead_letters_total", "reason")) == set(REASONS)
    lag = scrape.select("vt_consumer_lag_records", topic="executions")
    assert len(lag) == 3 and all(s.value == 0 for s in lag)
    assert scrape.total("vt_batch_processing_seconds_count", processor="echo") >= 1
    assert scrape.total("vt_record_latency_seconds_count", topic="executions") == 102
    assert scrape.total("vt_assigned_partitions", topic="executions") == 3


async def test_a_raising_tick_is_counted_and_consumption_goes_on(make_settings, topics) -> None:
    from tests.support.processors import TickBomb

    settings = make_settings()
    gen = TrafficGenerator(seed=21, feedback_ratio=0.0)
    await _produce(settings, [gen.execution() for _ in range(40)])
    proc = TickBomb()
    async with running(settings, [proc]) as rt:
        await wait_for(lambda: proc.seen >= 40, what="40 processed")
        assert metric(rt, "vt_processing_errors_total", processor="tickbomb") >= 1


async def test_ticks_longer_than_their_interval_leave_the_interval_to_records(make_settings, topics) -> None:
    """tick_interval_s counts from the end of a round: rounds that take longer than it (several
    syntheses due) must not follow each other with only one fetch between them, or records wait for
    their sum (the 1k/s benchmark's p99 was 281-422 ms so, 182-190 ms after)."""
    settings = make_settings(runtime={"tick_interval_s": 0.2})
    proc = SlowTick(tick_s=0.3)
    async with running(settings, [proc]):
        await wait_for(lambda: len(proc.ticks) >= 5, what="five ticks")
    gaps = [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(proc.ticks)]
    assert min(gaps) >= 0.19, gaps


async def test_an_idle_consumer_fetches_less_often_and_a_record_brings_the_short_wait_back(make_settings, topics) -> None:
    """Quiet partitions: after a second without records the fetch wait grows (fewer empty fetches);
    the next record is still consumed and the short wait is back."""
    settings = make_settings(runtime={"fetch_max_wait_ms": 50, "idle_fetch_max_wait_ms": 500})
    gen = TrafficGenerator(seed=3, feedback_ratio=0.0)
    echo = Echo()
    async with running(settings, [echo]) as rt:
        fetches = count_requests(rt._consumer._client, "FetchRequest")
        await wait_for(lambda: rt.fetch_wait is not None and rt.fetch_wait.idle, what="the consumer to count as idle")
        assert rt._consumer._fetcher._fetch_max_wait_ms == 500
        start = len(fetches)
        await asyncio.sleep(3.0)
        idle_rate = (len(fetches) - start) / 3.0
        # 500 ms held at the broker: about two fetches a second (20 at the short wait).
        assert idle_rate <= 4.0, f"{idle_rate} fetches/s while idle"

        await _produce(settings, [gen.execution() for _ in range(20)])
        await wait_for(lambda: len(echo.seen) >= 20, what="records produced while idle consumed")
        assert not rt.fetch_wait.idle and rt._consumer._fetcher._fetch_max_wait_ms == 50
        start = len(fetches)
        await asyncio.sleep(0.5)  # still within the quiet second: the short wait
        busy_rate = (len(fetches) - start) / 0.5
        assert busy_rate > idle_rate * 2, (busy_rate, idle_rate)
