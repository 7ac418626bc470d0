"""Broker stall: SIGSTOP the broker for 30 s while traffic flows, then SIGCONT.

The processor must neither exit nor spin while the broker answers nothing (its CPU
time over the stall is read from /proc), must reconnect on its own, and must then
drain the lag: every input committed, every bad input dead-lettered, nothing lost.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.tools.traffic import TrafficGenerator
from tests.support.faults import INPUTS, ProcessorProcess, Producer, dead_letters, figure, wait_drained

pytestmark = [pytest.mark.broker, pytest.mark.faults]

STALL_S = 30.0
EVENTS = 8000
RATE = 300.0


def test_a_30s_broker_stall_is_survived_without_spinning_and_drained(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    gen = TrafficGenerator(seed=43, bad_ratio=0.02, feedback_ratio=0.05)
    events = list(itertools.islice(gen.stream(), EVENTS))
    bad = sum(1 for e in events if e.label.startswith("bad:"))
    b = own_broker.bootstrap
    names = TopicNames("stall.")
    proc = ProcessorProcess(b, "stall.", "stall", tmp_path / "state", tmp_path / "processor.log").start()
    producer = Producer(b, "stall.", events, RATE).start()
    time.sleep(6.0)  # traffic is flowing and being processed
    before = proc.scrape().by("vt_events_consumed_total", "topic")
    assert sum(before.get(t, 0) for t in INPUTS) > 0, "processing had started before the stall"

    cpu0 = proc.cpu_seconds()
    own_broker.suspend()
    try:
        time.sleep(STALL_S)
        assert proc.alive(), f"the processor exited during the stall; see {proc.log_file}"
        cpu_stalled = proc.cpu_seconds() - cpu0
    finally:
        own_broker.resume()
    resumed = time.monotonic()

    assert producer.join() == len(events)
    ends = wait_drained(proc, names, timeout=300)
    drain_s = time.monotonic() - resumed
    after = proc.scrape()
    consumed = sum(after.by("vt_events_consumed_total", "topic").get(t, 0) for t in INPUTS)
    dlq = dead_letters(b, names.physical("dlq"))
    assert proc.stop() == 0, "a clean shutdown after the stall"

    assert sum(ends.values()) == len(events), "every event produced is on the input topics"
    assert consumed >= len(events), "every input was processed (more only if a rebalance replayed some)"
    assert len(dlq) == bad, "every bad input was dead-lettered, once per offset"
    assert cpu_stalled < 0.2 * STALL_S, f"the processor spun while the broker was stopped: {cpu_stalled:.1f} s of CPU"
    figure(
        "broker-stall", stall_s=STALL_S, cpu_s_during_stall=round(cpu_stalled, 2), seconds_to_drain_after_resume=round(drain_s, 1),
        inputs=len(events), processed=int(consumed), replayed=int(consumed) - len(events), dead_letters=len(dlq), lost=0,
        send_retries=int(after.total("vt_send_retries_total")),
    )
