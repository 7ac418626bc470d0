"""Golden write-back: vt.golden samples become VectorWave golden data, visible through VectorWave's API."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from vectorwave.database.dataset import VectorWaveDatasetManager

from stream.contract import events
from stream.contract.events import ChatMessage, GoldenSample
from stream.contract.processing import Record
from stream.pipeline import build_processors
from stream.runtime.kafka import read_topic
from stream.tools.traffic import Labelled, produce_traffic
from stream.vectorwave_bridge.golden import TAG, GoldenDataset, GoldenWriteBack
from tests.support.runtime import metric, running, wait_for
from tests.support.vectorwave import LiteStore, hashing_vector

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _store_execution(lite: LiteStore, fn: str, i: int) -> str:
    u = str(uuid.uuid4())
    text = f"question {i} for {fn}"
    lite.add_execution(
        u,
        {"function_name": fn, "timestamp_utc": (T0 + timedelta(seconds=i)).isoformat(), "status": "SUCCESS",
         "duration_ms": 5.0, "return_value": json.dumps(f"answer {i}"), "question": text},
        hashing_vector(text),
    )
    return u


def _sample(fn: str, log_uuid: str, strategy: str = "steady", density: float = 3.5) -> GoldenSample:
    return GoldenSample(
        uuid=log_uuid, function_name=fn, strategy=strategy, density=density,
        messages=[ChatMessage(role="user", content="q"), ChatMessage(role="assistant", content="a")],
        source_timestamp=T0, selected_at=T0 + timedelta(minutes=5),
    )


def _golden_rows(lite: LiteStore) -> dict[str, dict]:
    """VectorWave's golden dataset as VectorWave's own store API returns it: original uuid -> properties."""
    rows = lite.store.query(lite.settings.GOLDEN_COLLECTION_NAME, limit=10_000)
    out: dict[str, dict] = {}
    for r in rows:
        assert r.properties["original_uuid"] not in out, "a sample is registered twice"
        out[r.properties["original_uuid"]] = r.properties
    return out


def _record(sample: GoldenSample | None, key: str, offset: int = 0) -> Record:
    raw = None if sample is None else events.encode(sample)
    return Record(topic="golden", partition=0, offset=offset, key=key.encode(), value=sample, raw=raw)


@pytest.mark.broker
async def test_golden_samples_registered_once_and_removed_on_tombstones(make_settings, topics, lite: LiteStore) -> None:
    settings = make_settings()
    fn = "summarize"
    stored = [_store_execution(lite, fn, i) for i in range(6)]
    lite.wait_executions(6)
    late = str(uuid.uuid4())  # its execution reaches VectorWave only after its sample reaches us
    # Golden data a person registered directly in VectorWave: a tombstone must not remove it.
    human = stored[5]
    assert VectorWaveDatasetManager().register_as_golden(human, note="picked by hand")

    g = lambda s: Labelled("golden", f"{s.function_name}/{s.uuid}".encode(), events.encode(s), None, "sample")  # noqa: E731
    tomb = lambda u: Labelled("golden", f"{fn}/{u}".encode(), None, None, "tombstone")  # noqa: E731
    traffic = [
        g(_sample(fn, stored[0])), g(_sample(fn, stored[1], "anomaly", 0.2)), g(_sample(fn, stored[2])),
        g(_sample(fn, stored[0])),  # emitted again (replay): still one golden object
        g(_sample(fn, stored[3])), tomb(stored[3]),  # entered, then left the golden set
        tomb(human),
        g(_sample(fn, late)),
        g(_sample(fn, "not-a-uuid")),  # bad input: dead-lettered, the processor keeps going
        Labelled("golden", b"no-slash-key", None, None, "bad tombstone"),  # a tombstone whose key is not function/uuid
    ]
    await produce_traffic(settings.bootstrap, topics.physical, traffic)

    registry = CollectorRegistry()
    writeback = GoldenWriteBack(GoldenDataset(), golden_topic=topics.physical("golden"), retry_s=0.2, give_up_s=120, registry=registry)
    async with running(settings, [writeback], registry=registry) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total", topic="golden") >= len(traffic), what="golden consumed")
        await wait_for(lambda: metric(rt, "vt_vectorwave_golden_pending") == 1, what="the late sample waiting")
        rows = _golden_rows(lite)
        assert set(rows) == {stored[0], stored[1], stored[2], human}
        # Now VectorWave stores the late execution; the retry registers it.
        lite.add_execution(late, {"function_name": fn, "timestamp_utc": T0.isoformat(), "status": "SUCCESS",
                                  "return_value": json.dumps("late answer"), "question": "late"}, hashing_vector("late"))
        await wait_for(lambda: late in _golden_rows(lite), timeout=30, what="the late sample registered")
        assert metric(rt, "vt_vectorwave_golden_writeback_total", result="registered") == 5
        assert metric(rt, "vt_vectorwave_golden_writeback_total", result="already_registered") == 1
        assert metric(rt, "vt_vectorwave_golden_writeback_total", result="removed") == 1
        assert metric(rt, "vt_vectorwave_golden_writeback_total", result="not_ours") == 1
        assert metric(rt, "vt_dead_letters_total", topic="golden", reason="invalid_value") == 2

    rows = _golden_rows(lite)
    assert set(rows) == {stored[0], stored[1], stored[2], human, late}
    assert TAG in rows[stored[1]]["tags"] and "strategy:anomaly" in rows[stored[1]]["tags"]
    assert rows[stored[0]]["return_value"] == json.dumps("answer 0")  # copied from the stored execution
    assert TAG not in (rows[human]["tags"] or [])
    # VectorWave's own golden object id and vector: what its semantic cache and pytest plugin read.
    from weaviate.util import generate_uuid5

    obj = lite.store.fetch_by_id(lite.settings.GOLDEN_COLLECTION_NAME, generate_uuid5(stored[2]), include_vector=True)
    assert obj.vector == pytest.approx(hashing_vector("question 2 for summarize"), abs=1e-6)
    letters = [msgspec.json.decode(r.value, type=events.DeadLetter) for r in await read_topic(settings.bootstrap, topics.physical("dlq"))]
    assert sorted(letter.error_type for letter in letters) == ["invalid_value", "invalid_value"]

    # A fresh instance (new group) replays the whole topic: nothing is registered twice.  (The
    # embedded broker does not compact, so the replay also sees stored[3] enter and leave again.)
    again = make_settings(group_id=settings.group_id + "-2", topic_prefix=settings.topic_prefix)
    registry2 = CollectorRegistry()
    async with running(again, [GoldenWriteBack(GoldenDataset(), golden_topic=topics.physical("golden"), registry=registry2)], registry=registry2) as rt2:
        await wait_for(lambda: metric(rt2, "vt_events_consumed_total", topic="golden") >= len(traffic), what="replay consumed")
        await asyncio.sleep(0.3)
        assert metric(rt2, "vt_vectorwave_golden_writeback_total", result="already_registered") == 5
        assert metric(rt2, "vt_vectorwave_golden_writeback_total", result="registered") == 1
        assert metric(rt2, "vt_vectorwave_golden_writeback_total", result="removed") == 1
    assert set(_golden_rows(lite)) == {stored[0], stored[1], stored[2], human, late}


def test_sample_whose_execution_never_arrives_is_dead_lettered_not_dropped(lite: LiteStore) -> None:
    now = [1000.0]
    wb = GoldenWriteBack(GoldenDataset(), golden_topic="vt.golden", retry_s=1.0, give_up_s=30.0, clock=lambda: now[0])
    missing = str(uuid.uuid4())
    result = wb.process([_record(_sample("f", missing), f"f/{missing}", offset=7)])
    assert not result.outputs and not result.rejected and wb.status() == {"pending": 1}
    # The pending sample survives a checkpoint and a restart of the processor.
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        wb.save_state("golden", 0, Path(d))
        wb2 = GoldenWriteBack(GoldenDataset(), golden_topic="vt.golden", retry_s=1.0, give_up_s=30.0, clock=lambda: now[0])
        wb2.load_state("golden", 0, Path(d))
    assert wb2.status() == {"pending": 1}
    now[0] += 10
    assert not wb2.tick(now[0]).outputs  # retried, still waiting
    now[0] += 25
    out = wb2.tick(now[0]).outputs
    assert len(out) == 1 and out[0].topic == "dlq" and out[0].key == f"f/{missing}".encode()
    letter = msgspec.json.decode(out[0].value, type=events.DeadLetter)
    assert (letter.source_topic, letter.partition, letter.offset) == ("vt.golden", 0, 7)
    assert letter.error_type == "processing_error" and "not in VectorWave's store" in letter.error
    assert wb2.status() == {"pending": 0}


def test_only_selected_strategies_are_written_back(lite: LiteStore) -> None:
    u = _store_execution(lite, "f", 1)
    lite.wait_executions(1)
    wb = GoldenWriteBack(GoldenDataset(), strategies=("steady",))
    wb.process([_record(_sample("f", u, "anomaly"), f"f/{u}")])
    assert _golden_rows(lite) == {}
    wb.process([_record(_sample("f", u, "steady"), f"f/{u}", 1)])
    assert set(_golden_rows(lite)) == {u}
    wb.process([_record(_sample("f", u, "anomaly"), f"f/{u}", 2)])  # re-classified: no longer selected
    assert _golden_rows(lite) == {}


def test_run_registers_the_writeback_only_when_enabled(make_settings, lite: LiteStore) -> None:
    assert "vectorwave-golden" not in [p.name for p in build_processors(make_settings())]
    from stream.contract.config import VectorWaveSettings

    on = make_settings(vectorwave=VectorWaveSettings(golden_writeback=True, mode="lite", lite_path=lite.path))
    names = [p.name for p in build_processors(on)]
    assert names.count("vectorwave-golden") == 1 and names[-1] == "vectorwave-golden"
