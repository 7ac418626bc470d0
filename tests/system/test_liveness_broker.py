"""Liveness on the real embedded broker: outputs appear without waiting for the next event, and a
provider that hangs does not hold up consumption."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from processors.density import DensityProcessor
from processors.density.extract import extract
from processors.feedback.llm import LLMRuleProposer
from processors.feedback.processor import FeedbackProcessor
from processors.training import TrainingProcessor
from stream.contract import events
from stream.contract.config import DensitySettings, FeedbackSettings, TrainingSettings
from stream.contract.events import ExecutionLog, TrainingEvent
from stream.runtime.kafka import latest_by_key, read_topic

from stream.runtime.sensors import PrometheusSensors
from tests.support.runtime import metric, running, wait_for
from tests.support.density import clustered, logs
from tests.support.feedback import feedback_event, uuids
from tests.support.loopback_http import LoopbackServer

pytestmark = pytest.mark.broker

IDLE_S = 2.0
DENSITY = DensitySettings(exact_threshold=256, anomaly_min_logs=50, idle_evaluate_s=IDLE_S)
FUNCTIONS = ("refund_order", "summarize_ticket", "route_call")


def _burst(stamp: datetime) -> list[ExecutionLog]:
    """A few hundred clustered logs of a few functions, all stamped with the time they are sent."""
    out: list[ExecutionLog] = []
    for k, fn in enumerate(FUNCTIONS):
        data = clustered(200, 32, 10, spread=0.5, isolated=12, seed=70 + k)
        out.extend(msgspec.structs.replace(e, timestamp_utc=stamp) for e in logs(data.vectors, function=fn, seed=70 + k))
    return out


async def _send(bootstrap: str, topic: str, items: list[ExecutionLog]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for e in items:
            await producer.send(topic, key=e.function_name.encode(), value=events.encode(e))
        await producer.flush()
    finally:
        await producer.stop()


async def test_a_burst_then_quiet_gets_its_golden_set_and_training_without_another_event(make_settings, topics, tmp_path: Path) -> None:
    settings = make_settings(
        topic_prefix=topics.prefix, density=DENSITY,
        training=TrainingSettings(trainer="none", threshold=10, cooldown_s=0.0),
    )
    items = _burst(datetime.now(UTC))
    registry = CollectorRegistry()
    density = DensityProcessor(DENSITY, sensor=PrometheusSensors(registry).density)
    training = TrainingProcessor(settings)
    async with running(settings, [density, training], registry=registry) as rt:
        await _send(settings.bootstrap, topics.physical("executions"), items)
        sent = time.monotonic()
        await wait_for(lambda: metric(rt, "vt_events_consumed_total", topic="executions") >= len(items), timeout=60, what="the burst consumed")
        assert metric(rt, "vt_density_unevaluated_age_seconds") >= 0
        # Nothing else arrives: the burst's window is evaluated after IDLE_S of quiet.
        await wait_for(
            lambda: set(density.golden()) == set(FUNCTIONS) and not any(e.unevaluated() for e in density.engines.values()),
            timeout=IDLE_S + 5, what=f"the golden set within idle_evaluate_s + 5 s ({IDLE_S + 5:.0f} s)",
        )
        waited = time.monotonic() - sent
        # The training trigger follows from the golden set, still without any new input.
        await wait_for(
            lambda: {j.function_name for j in training._jobs.values() if j.status == "exported"} == set(FUNCTIONS),  # noqa: SLF001
            timeout=30, what="an exported training decision per function",
        )
        assert metric(rt, "vt_density_unevaluated_age_seconds") == 0, "the freshness gauge is back at 0"
    assert waited >= IDLE_S * 0.5, "not evaluated before the quiet (the burst is one select window)"

    golden = latest_by_key(await read_topic(settings.bootstrap, topics.physical("golden")))
    stream = {(d["function_name"], d["uuid"], d["strategy"]) for d in map(json.loads, golden.values())}
    path = tmp_path / "logs.jsonl"
    path.write_bytes(b"".join(events.encode(e) + b"\n" for e in items))
    extract(path, tmp_path / "golden.jsonl", DENSITY)
    batch = {(d["function_name"], d["uuid"], d["strategy"]) for d in map(json.loads, (tmp_path / "golden.jsonl").read_text().splitlines())}
    assert stream == batch and {fn for fn, _u, _s in batch} == set(FUNCTIONS), "the stream's final golden set is extract's"

    exported = [
        e for r in await read_topic(settings.bootstrap, topics.physical("training"))
        if r.value is not None and isinstance(e := events.decode("training", r.value), TrainingEvent) and e.status == "exported"
    ]
    assert {e.function_name for e in exported} == set(FUNCTIONS)
    assert all(e.n_train + e.n_val == sum(1 for fn, _u, _s in stream if fn == e.function_name) for e in exported)


class SlowLLM(LoopbackServer):
    """An OpenAI-compatible chat-completions endpoint that takes ``delay_s`` to answer."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.received = threading.Event()
        self.release = threading.Event()
        self.requests = 0
        self._serve()

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        h.rfile.read(int(h.headers.get("Content-Length", "0")))
        self.requests += 1
        self.received.set()
        self.release.wait(self.delay_s)
        payload = json.dumps({
            "id": "chatcmpl-slow", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": '{"rules": []}'}}],
        }).encode()
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except OSError:
            pass  # the client gave up


@pytest.fixture
def slow_llm() -> Iterator[SlowLLM]:
    with SlowLLM(60.0) as server:
        yield server
        server.release.set()


async def test_a_provider_that_hangs_60s_does_not_stall_consumption(make_settings, topics, slow_llm: SlowLLM) -> None:
    fb = FeedbackSettings(debounce_s=0.2, max_delay_s=1.0, llm_enabled=True, llm_base_url=slow_llm.url, llm_timeout_s=60.0)
    settings = make_settings(topic_prefix=topics.prefix, density=DENSITY, feedback=fb)
    proposer = LLMRuleProposer(model="m", base_url=slow_llm.url, api_key="local", timeout_s=60.0)
    feedback = FeedbackProcessor(fb, store_dir=settings.state_dir / "hooks", proposer=proposer)
    density = DensityProcessor(DENSITY)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        async with running(settings, [density, feedback]) as rt:
            pairs = [feedback_event("slow_fn", f"Dear customer, item {i} ships.", f"Dear client, item {i} ships.", u, i)
                     for i, u in enumerate(uuids(12, tag="slow"))]
            for p in pairs:
                await producer.send(topics.physical("feedback"), key=b"slow_fn", value=events.encode(p))
            await producer.flush()
            await wait_for(slow_llm.received.is_set, timeout=20, what="the proposer's call to reach the slow server")
            hung_at = time.monotonic()

            # While the call hangs, every partition keeps consuming: three waves of logs of functions
            # spread over the partitions, each consumed promptly, lag back at 0 each time.
            stamp = datetime.now(UTC)
            consumed_before = metric(rt, "vt_events_consumed_total", topic="executions")
            items = _burst(stamp)
            partitions: set[int] = set()
            for wave in range(3):
                chunk = items[wave::3]
                t0 = time.monotonic()
                for e in chunk:
                    md = await (await producer.send(topics.physical("executions"), key=e.function_name.encode(), value=events.encode(e)))
                    partitions.add(md.partition)
                target = consumed_before + sum(len(items[w::3]) for w in range(wave + 1))
                await wait_for(lambda target=target: metric(rt, "vt_events_consumed_total", topic="executions") >= target,
                               timeout=10, what=f"wave {wave} consumed while the provider hangs")
                await wait_for(lambda: metric(rt, "vt_consumer_lag_records", topic="executions") == 0, timeout=5, what="lag 0")
                assert time.monotonic() - t0 < 10
            assert len(partitions) >= 2, "the functions live on several partitions"
            # Even the density engine's idle evaluation runs while the provider hangs.
            await wait_for(lambda: set(density.golden()) == set(FUNCTIONS), timeout=IDLE_S + 5, what="golden sets during the hang")
            assert slow_llm.requests == 1 and proposer.in_flight == 1, "the call is still out"
            assert feedback.status()["functions"]["slow_fn"]["pending"], "its synthesis waits for the answer, not the worker"
            assert time.monotonic() - hung_at < 40, "all of this happened well inside the provider's 60 s"
    finally:
        await producer.stop()
        slow_llm.release.set()
