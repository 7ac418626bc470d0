"""Hostile input, property-based: whatever arrives on an input topic is either processed or
dead-lettered with a reason; the processor never stops and never drops a record silently.

The pure layers (decoding, the engines' ``process``) are hammered with thousands of
generated values; then the real runtime with every processor takes a generated mix of
bad and good events on the broker, and every bad offset must be found in the
dead-letter topic while every good event around them is processed.
"""

from __future__ import annotations

import asyncio
import json
import uuid as uuid_mod
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.density import DensityProcessor
from processors.feedback.processor import FeedbackProcessor
from stream.contract import deadletter as dl
from stream.contract.config import DensitySettings, FeedbackSettings, RuntimeSettings, Settings
from stream.contract.events import DeadLetter, ExecutionLog, Feedback
from stream.contract.processing import Record
from stream.contract.topics import TopicNames
from stream.pipeline import build_processors
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.kafka import ensure_topics, read_topic
from stream.tools.traffic import TrafficGenerator
from tests.support.faults import figure
from tests.support.runtime import metric, running, wait_for

MAX_BYTES = 1_048_576

# ----------------------------------------------------------------------------- strategies
json_scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=40),
    st.integers(min_value=-(2**80), max_value=2**80),  # beyond 64 bits too
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)

_GOOD = TrafficGenerator(seed=3)
_BASE_LOG = msgspec.json.decode(_GOOD.execution(_GOOD.functions[0]).value)  # has a vector
_BASE_FEEDBACK = {
    "uuid": str(uuid_mod.UUID(int=7)), "function_name": "answer_faq", "bad_output": "Hello! x", "fixed_output": "x",
    "timestamp_utc": "2026-11-01T00:00:00Z",
}
_REQUIRED = {"executions": ("uuid", "function_name", "timestamp_utc", "status", "inputs", "return_value"),
             "feedback": ("uuid", "function_name", "bad_output", "fixed_output", "timestamp_utc")}
_WRONG_TYPES = {
    "executions": {"uuid": 12, "function_name": ["x"], "timestamp_utc": 1.5, "status": 3, "inputs": "text",
                   "duration_ms": "slow", "vector": "v", "trace_id": {"a": 1}},
    "feedback": {"uuid": None, "function_name": 5, "bad_output": ["a"], "fixed_output": {"b": 1}, "timestamp_utc": True},
}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


@st.composite
def bad_values(draw: st.DrawFn, topic: str) -> tuple[str, bytes | None]:
    """(kind, value): an input that must be dead-lettered."""
    base = dict(_BASE_LOG if topic == "executions" else _BASE_FEEDBACK)
    kind = draw(st.sampled_from(
        ["bytes", "not_object", "missing", "wrong_type", "extra_wrong", "nan", "huge_exponent", "big_int_field",
         "unknown_status", "deep", "invalid_utf8", "null", "oversize", "truncated"]
        + (["empty_vector", "vector_nan"] if topic == "executions" else [])
    ))
    if kind == "bytes":
        raw = draw(st.binary(min_size=0, max_size=300).filter(lambda b: not b.strip().startswith(b"{")))
        return kind, raw
    if kind == "not_object":
        return kind, _dumps(draw(st.one_of(json_scalars, st.lists(json_scalars, max_size=3))))
    if kind == "missing":
        for name in draw(st.lists(st.sampled_from(_REQUIRED[topic]), min_size=1, unique=True)):
            base.pop(name, None)
        return kind, _dumps(base)
    if kind in ("wrong_type", "extra_wrong"):
        name = draw(st.sampled_from(sorted(_WRONG_TYPES[topic])))
        base[name] = _WRONG_TYPES[topic][name]
        return kind, _dumps(base)
    if kind == "nan":
        field = "duration_ms" if topic == "executions" else "bad_output"
        base[field] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        return kind, _dumps(base)
    if kind == "huge_exponent":
        return kind, _dumps(base).replace(b"{", b'{"duration_ms": 1e999, ' if topic == "executions" else b'{"comment": 1e999, ', 1)
    if kind == "big_int_field":  # an integer where text belongs (beyond 64 bits: msgspec's int path)
        field = "function_name" if topic == "executions" else "bad_output"
        base[field] = draw(st.integers(min_value=2**64, max_value=2**200))
        return kind, _dumps(base)
    if kind == "unknown_status":
        if topic == "executions":
            base["status"] = draw(st.text(min_size=1, max_size=12).filter(lambda s: s not in ("SUCCESS", "ERROR", "FAILURE", "CACHE_HIT", "ANOMALY")))
        else:
            base["timestamp_utc"] = draw(st.text(max_size=12))
        return kind, _dumps(base)
    if kind == "deep":
        depth = draw(st.integers(min_value=2_000, max_value=100_000))
        return kind, b'{"inputs": {"q": ' + b"[" * depth + b"]" * depth + b"}}"
    if kind == "invalid_utf8":
        text = _dumps(base)
        at = draw(st.integers(min_value=1, max_value=len(text) - 2))
        return kind, text[:at] + b"\xff\xfe" + text[at:]
    if kind == "null":
        return kind, None
    if kind == "oversize":
        return kind, b'{"inputs": {"q": "' + b"x" * draw(st.integers(MAX_BYTES + 1, MAX_BYTES + 4096)) + b'"}}'
    if kind == "truncated":
        text = _dumps(base)
        return kind, text[: draw(st.integers(min_value=0, max_value=len(text) - 1))]
    if kind == "empty_vector":
        base["vector"] = []
        return kind, _dumps(base)
    base["vector"] = [0.1, float("nan")]
    return kind, _dumps(base)


# ----------------------------------------------------------------------------- pure layers
@pytest.mark.parametrize("topic", ["executions", "feedback"])
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_generated_bad_value_decodes_to_a_reason(topic: str, data: st.DataObject) -> None:
    kind, raw = data.draw(bad_values(topic))
    result = dl.decode_input(topic, raw, max_bytes=MAX_BYTES, max_vector_dim=8192)
    assert isinstance(result, dl.DecodeFailure), f"{kind} was accepted: {raw[:200]!r}"
    assert result.error_type in dl.REASONS and result.error_type != dl.PROCESSING_ERROR and result.error


@settings(max_examples=1500, deadline=None)
@given(raw=st.binary(max_size=400), topic=st.sampled_from(["executions", "feedback", "golden", "hooks"]))
def test_random_bytes_never_raise_from_decoding(raw: bytes, topic: str) -> None:
    result = dl.decode_input(topic, raw, max_bytes=MAX_BYTES, max_vector_dim=8192)
    assert result is None or isinstance(result, dl.DecodeFailure) or isinstance(result, msgspec.Struct)


_DIM = len(_BASE_LOG["vector"])


@st.composite
def valid_logs(draw: st.DrawFn) -> ExecutionLog:
    """Valid execution logs with arbitrary JSON inputs and outputs (huge ints, nesting, any text)."""
    fn = draw(st.sampled_from(["f_vec", "f_text"]))
    vector = draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=_DIM, max_size=_DIM)) if fn == "f_vec" else None
    return ExecutionLog(
        uuid=str(uuid_mod.UUID(int=draw(st.integers(0, 2**128 - 1)))), function_name=fn,
        timestamp_utc=datetime(2026, 11, 1, tzinfo=UTC), status=draw(st.sampled_from(["SUCCESS", "ERROR", "CACHE_HIT"])),
        inputs=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4)), return_value=draw(json_values),
        vector=vector,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(logs=st.lists(valid_logs(), min_size=1, max_size=40))
def test_the_density_engine_takes_any_valid_log_without_raising(logs: list[ExecutionLog]) -> None:
    """Valid events with odd content (ints beyond 64 bits, deep nesting, any text) are processed or
    refused with a reason; an exception here would turn into a processing_error dead letter."""
    proc = DensityProcessor(DensitySettings(exact_threshold=8, anomaly_min_logs=5))
    records = [Record("executions", 0, i, log.function_name.encode(), log, msgspec.json.encode(log)) for i, log in enumerate(logs)]
    result = proc.process(records)
    for refused in result.rejected:
        assert refused.error_type in dl.REASONS and refused.error_type != dl.PROCESSING_ERROR, refused


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(st.text(max_size=60), st.text(max_size=60)), min_size=1, max_size=30))
def test_the_feedback_engine_takes_any_text_without_raising(pairs: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory) -> None:
    proc = FeedbackProcessor(FeedbackSettings(min_support=2, debounce_s=0.0), store_dir=tmp_path_factory.mktemp("hooks"))
    records = [
        Record("feedback", 0, i, b"fn", Feedback(uuid=str(uuid_mod.UUID(int=i)), function_name="fn", bad_output=a, fixed_output=b,
               timestamp_utc=datetime(2026, 11, 1, tzinfo=UTC)), b"")
        for i, (a, b) in enumerate(pairs)
    ]
    result = proc.process(records)
    result.extend(proc.tick(now=1e12))
    assert all(r.error_type != dl.PROCESSING_ERROR for r in result.rejected)


# ----------------------------------------------------------------------------- through the runtime
async def _produce(bootstrap: str, items: list[tuple[str, bytes | None, bytes | None]]) -> list[tuple[str, int, int]]:
    """Send (topic, key, value) in order; return (topic, partition, offset) of each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=16 * 1024 * 1024, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(t, key=k, value=v) for t, k, v in items]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metas]


@pytest.mark.broker
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(
    bad_exec=st.lists(bad_values("executions"), min_size=40, max_size=60),
    bad_fb=st.lists(bad_values("feedback"), min_size=15, max_size=25),
    big=st.integers(min_value=10 * 1024 * 1024, max_value=10 * 1024 * 1024 + 999),
    seed=st.integers(0, 10_000),
)
def test_a_hostile_mix_reaches_the_dead_letter_topic_and_good_events_are_all_processed(
    broker: EmbeddedBroker, tmp_path: Path, bad_exec: list, bad_fb: list, big: int, seed: int
) -> None:
    tag = uuid_mod.uuid4().hex[:8]
    s = Settings(
        bootstrap=broker.bootstrap, topic_prefix=f"h{tag}.", group_id=f"h{tag}", state_dir=tmp_path / tag, metrics_port=0, partitions=3,
        runtime=RuntimeSettings(poll_timeout_ms=100, commit_interval_s=0.2, checkpoint_interval_s=1.0, session_timeout_ms=3000),
    )
    names = TopicNames(s.topic_prefix)
    gen = TrafficGenerator(seed=seed, feedback_ratio=0.1)
    first = [gen.execution() for _ in range(60)]  # every function's first logs: their vector dimension is known
    later = [e for e in (gen.execution() if i % 5 else gen.feedback() for i in range(300)) if e is not None]
    bad = [("executions", k, v) for k, v in bad_exec] + [("feedback", k, v) for k, v in bad_fb]
    bad.append(("executions", "ten_megabytes", b'{"inputs": {"q": "' + b"y" * big + b'"}}'))
    wrong_dim = dict(_BASE_LOG, uuid=str(uuid_mod.uuid4()), vector=[0.5, 0.5, 0.5])  # the function uses more dimensions
    bad.append(("executions", "wrong_dimension", _dumps(wrong_dim)))
    items: list[tuple[str, bytes | None, bytes | None, str | None]] = [(names.physical(e.topic), e.key, e.value, None) for e in first]
    for i, good in enumerate(later):  # interleave: a bad event after every few good ones
        items.append((names.physical(good.topic), good.key, good.value, None))
        if i % 5 == 0 and bad:
            topic, kind, value = bad.pop()
            key = _BASE_LOG["function_name"].encode() if topic == "executions" else b"answer_faq"
            items.append((names.physical(topic), key, value, kind))
    for topic, kind, value in bad:
        items.append((names.physical(topic), b"answer_faq", value, kind))
    kinds = [k for *_, k in items if k is not None]

    async def scenario() -> None:
        await ensure_topics(s.bootstrap, names, s.partitions)
        located = await _produce(s.bootstrap, [(t, k, v) for t, k, v, _ in items])
        bad_at = {loc for loc, (*_, kind) in zip(located, items, strict=True) if kind is not None}
        processors = build_processors(s)
        async with running(s, processors) as rt:
            await wait_for(lambda: metric(rt, "vt_events_consumed_total", topic="executions") + metric(rt, "vt_events_consumed_total", topic="feedback") >= len(items),
                           timeout=180, what="every input consumed")
            dead = metric(rt, "vt_dead_letters_total")
            by_reason = {r: metric(rt, "vt_dead_letters_total", reason=r) for r in dl.REASONS}
            indexed = sum(len(e.functions[f].index.live_slots()) for e in processors[0].engines.values() for f in e.functions if e.functions[f].index)
        letters = [msgspec.json.decode(r.value, type=DeadLetter) for r in await read_topic(s.bootstrap, names.physical("dlq"))]
        got = {(d.source_topic, d.partition, d.offset) for d in letters}
        assert got == bad_at, f"missing: {sorted(bad_at - got)[:5]}, unexpected: {sorted(got - bad_at)[:5]}"
        assert all(d.error_type in dl.REASONS and d.error for d in letters)
        assert not [d for d in letters if d.error_type == dl.PROCESSING_ERROR], "a processor raised on hostile input"
        assert dead == len(bad_at) and sum(by_reason.values()) == dead
        good_logs = {e.event.uuid for e in first + later if e.topic == "executions" and e.event is not None and e.event.status != "CACHE_HIT"}
        assert indexed == len(good_logs), "every good execution log around the bad ones is in the density index"
        figure("bad-input", bad=len(bad_at), dead_lettered=len(got), good=len(items) - len(bad_at), logs_indexed=indexed,
               kinds=len(set(kinds)), reasons={r: int(n) for r, n in by_reason.items() if n})

    asyncio.run(scenario())
