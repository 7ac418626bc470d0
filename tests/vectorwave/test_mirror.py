"""The real-time mirror: a VectorWave-decorated function's calls appear on the broker."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from vectorwave import vectorize

from stream.contract import events
from stream.runtime.kafka import read_topic
from stream.vectorwave_bridge import mirror_executions
from stream.vectorwave_bridge.mirror import ExecutionMirror
from tests.support.vectorwave import LiteStore

pytestmark = pytest.mark.broker


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_decorated_calls_appear_on_the_broker_with_the_stored_uuid(make_settings, topics, lite: LiteStore, hashing_vectorizer) -> None:
    settings = make_settings()
    registry = CollectorRegistry()
    mirror = mirror_executions(settings.bootstrap, settings=settings, registry=registry)  # the one-line opt-in
    try:
        assert mirror_executions() is mirror  # calling it again is harmless
        with pytest.raises(RuntimeError, match="already installed"):
            ExecutionMirror(settings.bootstrap, registry=CollectorRegistry()).install()

        @vectorize(capture_return_value=True, capture_inputs=True)
        def summarize(ticket: str, lang: str = "en", api_key: str = "sk-secret") -> dict:
            return {"summary": ticket.split()[0], "lang": lang}

        @vectorize(capture_inputs=True)
        def explode(x: int) -> None:
            raise ValueError(f"cannot handle {x}")

        tickets = [f"invoice {i} charged twice" for i in range(12)]
        for t in tickets:
            summarize(t, lang="fr")
        for x in range(3):
            with pytest.raises(ValueError):
                explode(x)
        assert await asyncio.to_thread(mirror.flush, 30.0), "mirror did not drain"
        assert _value(registry, "vt_vectorwave_mirror_forwarded_total") == 15
        assert _value(registry, "vt_vectorwave_mirror_dropped_total", reason="queue_full") == 0
    finally:
        mirror.close()

    logs = [
        msgspec.json.decode(r.value, type=events.ExecutionLog)
        for r in await read_topic(settings.bootstrap, topics.physical("executions"))
    ]
    assert len(logs) == 15
    ok = [log for log in logs if log.function_name == "summarize"]
    bad = [log for log in logs if log.function_name == "explode"]
    assert sorted(log.inputs["ticket"] for log in ok) == sorted(tickets)
    for log in ok:
        assert log.status == "SUCCESS" and log.inputs["lang"] == "fr"
        assert log.inputs["api_key"] == "[MASKED]"  # VectorWave's masking happened before we saw it
        assert log.return_value == {"summary": "invoice", "lang": "fr"}  # decoded from VectorWave's JSON string
        assert log.duration_ms is not None and log.trace_id and log.span_id
        assert log.vector is not None and len(log.vector) == 384
    assert sorted(log.inputs["x"] for log in bad) == [0, 1, 2]
    for log in bad:
        assert log.status == "ERROR" and "ValueError: cannot handle" in (log.error_message or "")

    # Kafka and VectorWave's store name each execution by the same UUID, with the same vector.
    stored = {row.uuid: row for row in lite.wait_executions(15)}
    assert set(stored) == {log.uuid for log in logs}
    sample = ok[0]
    row = lite.store.fetch_by_id(lite.settings.EXECUTION_COLLECTION_NAME, sample.uuid, include_vector=True)
    assert row.properties["ticket"] == sample.inputs["ticket"]
    assert sample.vector == pytest.approx(row.vector, abs=1e-6)  # LanceDB keeps float32


async def test_full_queue_drops_and_counts_without_blocking_the_decorated_function(lite: LiteStore) -> None:
    registry = CollectorRegistry()
    # Nothing listens on this port: the sender cannot deliver, so the queue fills up.
    mirror = ExecutionMirror("127.0.0.1:9", queue_size=5, registry=registry, retry_backoff_s=0.05).install()
    try:

        @vectorize(capture_return_value=True)
        def answer(q: str) -> str:
            return q.upper()

        started = time.perf_counter()
        for i in range(40):
            assert answer(f"q{i}") == f"Q{i}"
        elapsed = time.perf_counter() - started
        assert elapsed < 5.0, f"40 decorated calls took {elapsed:.2f}s: the mirror blocked them"
        assert _value(registry, "vt_vectorwave_mirror_queue_depth") == 5
        assert _value(registry, "vt_vectorwave_mirror_dropped_total", reason="queue_full") == 35
    finally:
        mirror.close(timeout=0.2)
    # VectorWave itself stored every call: the mirror never takes records away from it.
    assert len(lite.wait_executions(40)) == 40
