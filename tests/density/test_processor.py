"""The density processor with plain calls: emission, ChatML, bad input, replays and checkpoints."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from processors.density import DensityProcessor
from processors.density.chatml import MASK, embedding_text, messages
from processors.density.embedder import EmbedderError, HashingEmbedder, make_embedder
from stream.contract.config import DensitySettings
from stream.contract.events import ExecutionLog, GoldenSample
from stream.contract.processing import FROM_BEGINNING, REBUILD, Output, Record, Result
from stream.runtime.sensors import PrometheusSensors
from stream.tools.traffic import TrafficGenerator
from tests.support.density import clustered, logs, records


def _settings(**kw) -> DensitySettings:
    base = dict(exact_threshold=128, anomaly_min_logs=50)
    base.update(kw)
    return DensitySettings(**base)


def _run(proc: DensityProcessor, recs: list[Record], batch: int) -> Result:
    out = Result()
    for i in range(0, len(recs), batch):
        out.extend(proc.process(recs[i : i + batch]))
    return out


def _current(outputs: list[Output]) -> dict[bytes, bytes]:
    """What a compacted topic holds after these outputs."""
    state: dict[bytes, bytes] = {}
    for o in outputs:
        if o.value is None:
            state.pop(o.key, None)
        else:
            state[o.key] = o.value
    return state


@pytest.fixture(scope="module")
def stream_records() -> list[Record]:
    gen = TrafficGenerator(seed=17, feedback_ratio=0.0)
    return records([gen.execution().event for _ in range(2500)])  # type: ignore[misc]


def test_entries_are_golden_samples_and_exits_are_tombstones(stream_records) -> None:
    proc = DensityProcessor(_settings())
    result = _run(proc, stream_records, 250)
    assert not result.rejected
    assert result.outputs and all(o.topic == "golden" for o in result.outputs)
    entries = [o for o in result.outputs if o.value is not None]
    tombstones = [o for o in result.outputs if o.value is None]
    assert tombstones, "selection changes as logs arrive: some samples leave"
    by_uuid = {r.value.uuid: r.value for r in stream_records}
    for o in entries:
        sample = msgspec.json.decode(o.value, type=GoldenSample)
        assert o.key == f"{sample.function_name}/{sample.uuid}".encode()
        log = by_uuid[sample.uuid]
        assert log.status == "SUCCESS" and sample.source_timestamp == log.timestamp_utc
        roles = [m.role for m in sample.messages]
        assert roles == ["system", "user", "assistant"]
        assert sample.messages[1].content == next(iter(log.inputs.values()))  # the real input
        assert sample.messages[2].content == log.return_value  # the real output
        assert sample.function_name in sample.messages[0].content
    current = _current(result.outputs)
    published = {f"{fn}/{u}".encode() for fn, sel in proc.golden().items() for u in sel}
    assert set(current) == published, "the compacted topic equals the processor's golden set"


def test_replays_in_any_batching_emit_the_same_records(stream_records) -> None:
    a = _run(DensityProcessor(_settings()), stream_records, 1).outputs
    b = _run(DensityProcessor(_settings()), stream_records, 97).outputs
    c = _run(DensityProcessor(_settings()), stream_records, len(stream_records)).outputs
    assert a == b == c


def test_restart_from_checkpoint_emits_what_an_uninterrupted_run_emits(stream_records, tmp_path: Path) -> None:
    whole = DensityProcessor(_settings())
    whole.load_state("executions", 0, None)
    first = _run(whole, stream_records[:1100], 300).outputs
    rest = _run(whole, stream_records[1100:], 300).outputs

    part = DensityProcessor(_settings())
    assert part.load_state("executions", 0, None) == FROM_BEGINNING
    _run(part, stream_records[:1100], 64)
    part.save_state("executions", 0, tmp_path)
    restored = DensityProcessor(_settings())
    restored.load_state("executions", 0, tmp_path)
    again = _run(restored, stream_records[1100:], 41).outputs
    assert again == rest
    assert restored.golden() == whole.golden()
    assert first  # the first half emitted too


def test_changed_index_settings_rebuild_and_withdraw_old_samples(stream_records, tmp_path: Path) -> None:
    old = DensityProcessor(_settings())
    old.load_state("executions", 0, None)
    _run(old, stream_records, 500)
    old.save_state("executions", 0, tmp_path)
    old_keys = {f"{fn}/{u}".encode() for fn, sel in old.golden().items() for u in sel}

    new = DensityProcessor(_settings(epsilon=0.2))
    assert new.load_state("executions", 0, tmp_path) == REBUILD
    replay = _run(new, stream_records, 500).outputs
    after = _current([Output("golden", k, b"old") for k in sorted(old_keys)] + replay)
    assert set(after) == {f"{fn}/{u}".encode() for fn, sel in new.golden().items() for u in sel}
    assert all(v != b"old" or k in {o.key for o in replay if o.value} for k, v in after.items())


def _log(uuid: str, vector: list[float] | None, *, fn: str = "f", status: str = "SUCCESS", ms: int = 0, **kw) -> ExecutionLog:
    return ExecutionLog(
        uuid=uuid, function_name=fn, timestamp_utc=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(milliseconds=ms),
        status=status, inputs=kw.pop("inputs", {"q": uuid}), return_value=kw.pop("return_value", "a"), vector=vector, **kw,  # type: ignore[arg-type]
    )


def test_bad_vectors_become_rejections_with_reasons() -> None:
    proc = DensityProcessor(_settings())
    nan_log = _log("nan", [1.0, 0.0, 0.0])
    nan_log.vector = [float("nan"), 1.0, 0.0]  # bypasses decoding checks, as a buggy in-process producer could
    recs = records([
        _log("a", [1.0, 0.0, 0.0]),
        _log("b", [1.0, 0.0]),  # wrong dimension
        _log("c", [0.0, 0.0, 0.0]),  # zero vector: no direction
        nan_log,
        _log("d", None),  # the function carries its own vectors
        _log("e", None, fn="g"),  # embedded
        _log("f", [0.5, 0.5, 0.5], fn="g"),  # a vector in an embedded function
        _log("h", None, fn="g", inputs={}, return_value=""),  # nothing to embed
    ])
    result = proc.process(recs)
    reasons = {r.record.value.uuid: r.error_type for r in result.rejected}
    assert reasons == {
        "b": "wrong_dimension", "c": "invalid_vector", "nan": "invalid_vector", "d": "invalid_vector",
        "f": "invalid_vector", "h": "invalid_value",
    }
    assert all("$.vector" in r.error for r in result.rejected if r.error_type != "invalid_value")
    assert proc.status()["functions"]["f"]["logs"] == 1 and proc.status()["functions"]["g"]["logs"] == 1


def test_cache_hits_and_duplicates_are_not_indexed_twice() -> None:
    registry = CollectorRegistry()
    proc = DensityProcessor(_settings(), sensor=PrometheusSensors(registry).density)
    v = [1.0, 0.0, 0.0]
    result = proc.process(records([_log("a", v), _log("a", v, ms=1), _log("b", v, status="CACHE_HIT", ms=2), _log("c", v, status="ERROR", ms=3)]))
    assert not result.rejected
    assert proc.status()["functions"]["f"]["logs"] == 2
    assert registry.get_sample_value("vt_density_skipped_total", {"function": "f", "reason": "duplicate"}) == 1
    assert registry.get_sample_value("vt_density_skipped_total", {"function": "f", "reason": "cache_hit"}) == 1
    assert registry.get_sample_value("vt_density_indexed_total", {"function": "f"}) == 2


def test_ttl_and_cap_evict_by_event_time_and_tombstone() -> None:
    registry = CollectorRegistry()
    data = clustered(400, 16, 2, spread=0.3, seed=8)
    events = logs(data.vectors, step_ms=1000)  # 400 s of event time
    proc = DensityProcessor(_settings(ttl_s=120, max_per_function=1000, select_interval_s=10, anomaly_k=0), sensor=PrometheusSensors(registry).density)
    result = proc.process(records(events))
    live = proc.engines[0].functions["fn"].index
    # 120 s of logs at one per second, plus what arrived since the last evaluation point (every 10 s)
    assert live is not None and 120 <= live.live_count <= 121 + 10
    assert registry.get_sample_value("vt_density_evictions_total", {"function": "fn", "reason": "ttl"}) > 0
    assert registry.get_sample_value("vt_density_evictions_total", {"function": "fn", "reason": "cap"}) == 0  # created at 0
    tomb = [o for o in result.outputs if o.value is None]
    assert tomb, "evicted golden samples leave the golden set"
    oldest_live = live.cols.ts[live.live_slots()].min()
    assert oldest_live >= events[-11].timestamp_utc.timestamp() * 1000 - 120_000 - 10_000
    capped = DensityProcessor(_settings(ttl_s=0, max_per_function=50, select_interval_s=10), sensor=PrometheusSensors(CollectorRegistry()).density)
    capped.process(records(events))
    idx = capped.engines[0].functions["fn"].index
    assert idx is not None and 50 <= idx.live_count <= 60
    kept_ts = np.sort(idx.cols.ts[idx.live_slots()])
    assert kept_ts[0] > events[300].timestamp_utc.timestamp() * 1000  # the newest stayed


def test_masked_keys_never_reach_samples_or_vectors() -> None:
    proc = DensityProcessor(_settings(mask_keys=("Password",), anomaly_k=0, steady_min_density=0.0, select_interval_s=1))
    events = [
        _log(f"u{i}", None, fn="login", ms=i * 400, inputs={"user": "ann", "auth": {"password": f"hunter{i}"}}, return_value="ok")
        for i in range(10)
    ]
    outputs = proc.process(records(events)).outputs
    samples = [msgspec.json.decode(o.value, type=GoldenSample) for o in outputs if o.value]
    assert samples
    text = msgspec.json.encode(samples).decode()
    assert "hunter" not in text and MASK in text
    # Logs differing only in the masked value embed identically.
    idx = proc.engines[0].functions["login"].index
    assert idx is not None and len(np.unique(idx.vectors(idx.live_slots()), axis=0)) == 1


def test_chatml_rendering_and_embedding_text() -> None:
    msgs = messages("You are {function}.", "fn", {"q": "hi"}, "hello")
    assert [(m.role, m.content) for m in msgs] == [("system", "You are fn."), ("user", "hi"), ("assistant", "hello")]
    msgs = messages("", "fn", {"a": 1, "b": [1, 2]}, {"x": None})
    assert [(m.role, m.content) for m in msgs] == [("user", '{"a":1,"b":[1,2]}'), ("assistant", '{"x":null}')]
    assert embedding_text({"b": "2", "a": "1"}, "out") == "1\n2\nout"


def test_hashing_embedder_is_deterministic_and_extra_is_optional(tmp_path: Path) -> None:
    e = HashingEmbedder(64)
    a = e.embed(["cancel my plan", "upgrade to pro"])
    b = HashingEmbedder(64).embed(["upgrade to pro"])
    assert a.shape == (2, 64) and np.array_equal(a[1], b[0])
    with pytest.raises(EmbedderError, match="does not exist"):
        make_embedder("sentence-transformers", model_path=tmp_path / "missing")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(EmbedderError, match=r"vector-trainer\[embed\]"):
            make_embedder("sentence-transformers", model_path=model_dir)


def test_metrics_describe_the_index_and_the_golden_set(stream_records) -> None:
    registry = CollectorRegistry()
    proc = DensityProcessor(_settings(), sensor=PrometheusSensors(registry).density)
    proc.process(stream_records)
    fn = "summarize_ticket"
    assert registry.get_sample_value("vt_density_index_logs", {"function": fn}) > 100
    assert registry.get_sample_value("vt_density_quantile", {"function": fn, "quantile": "0.5"}) > 1
    steady = registry.get_sample_value("vt_golden_samples", {"function": fn, "strategy": "steady"})
    assert steady == sum(1 for s in proc.golden()[fn].values() if s == "steady")
    assert registry.get_sample_value("vt_density_batch_insert_seconds_count") > 0
    assert registry.get_sample_value("vt_golden_changes_total", {"function": fn, "strategy": "steady", "change": "enter"}) >= steady
    # The gauge histogram of densities: cumulative, its +Inf bucket is the index size.
    logs = registry.get_sample_value("vt_density_index_logs", {"function": fn})
    buckets = [registry.get_sample_value("vt_density_distribution_bucket", {"function": fn, "le": le}) for le in ("1.0", "10.0", "+Inf")]
    assert buckets == sorted(buckets) and buckets[-1] == logs
    assert registry.get_sample_value("vt_density_distribution_gsum", {"function": fn}) > 0
    # Counters of a seen function exist at 0 before anything happens (alerts and rate() see them).
    assert registry.get_sample_value("vt_density_range_cap_hits_total", {"function": fn}) == 0
    proc.release("executions", 0)
    assert registry.get_sample_value("vt_density_index_logs", {"function": fn}) is None
    assert registry.get_sample_value("vt_density_distribution_bucket", {"function": fn, "le": "+Inf"}) is None


def test_an_unreadable_checkpoint_rebuilds(tmp_path: Path) -> None:
    (tmp_path / "density.json").write_text("{not json")
    assert DensityProcessor(_settings()).load_state("executions", 0, tmp_path) == REBUILD
    shutil.rmtree(tmp_path)
    assert DensityProcessor(_settings()).load_state("executions", 0, None) == FROM_BEGINNING
