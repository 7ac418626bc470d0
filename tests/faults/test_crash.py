"""Crash: ``kill -9`` the processor at random points while traffic flows, restart it, and
compare everything with an uninterrupted run over the same input.

A kill loses whatever was not checkpointed and committed; the restart resumes each
partition at its checkpoint (state and the input offset it reflects) and replays the
rest.  Because density decisions happen at event-time evaluation points, a replay
re-emits exactly the records the lost run had emitted: duplicates on the output
topics are byte-identical rewrites of records an uninterrupted run also writes.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.tools.traffic import TrafficGenerator
from tests.support.faults import (
    INPUTS,
    ProcessorProcess,
    Producer,
    dead_letters,
    figure,
    outputs,
    send,
    wait_drained,
)

pytestmark = [pytest.mark.broker, pytest.mark.faults]

EVENTS = 6000
RATE = 250.0  # events/s while the processor is being killed: about 24 s of traffic


def _events() -> list:
    gen = TrafficGenerator(seed=41, bad_ratio=0.02, feedback_ratio=0.05)
    return list(itertools.islice(gen.stream(), EVENTS))


def test_kill9_at_random_points_loses_nothing_and_only_rewrites(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    events = _events()
    bad = sum(1 for e in events if e.label.startswith("bad:"))
    b = own_broker.bootstrap

    # A: the reference, one uninterrupted run over all of the input.
    ref_names = TopicNames("ref.")
    ref = ProcessorProcess(b, "ref.", "ref", tmp_path / "ref-state", tmp_path / "ref.log").start()
    assert send(b, "ref.", events) == len(events)
    wait_drained(ref, ref_names)
    assert ref.stop() == 0
    golden_ref = outputs(b, ref_names.physical("golden"))
    dlq_ref = dead_letters(b, ref_names.physical("dlq"))
    assert golden_ref.latest, "the reference run selected golden samples"
    assert len(dlq_ref) == bad, "every bad input of the reference run is dead-lettered once"

    # B: the same input, produced while the processor is killed with SIGKILL at random moments.
    names = TopicNames("crash.")
    rng = random.Random(5)
    proc = ProcessorProcess(b, "crash.", "crash", tmp_path / "crash-state", tmp_path / "crash.log").start()
    producer = Producer(b, "crash.", events, RATE).start()
    kills = 0
    while producer.running() or kills < 5:
        time.sleep(rng.uniform(0.5, 3.0))
        proc.kill9()
        kills += 1
        proc.start()
    assert producer.join() == len(events)
    ends = wait_drained(proc, names)
    consumed_last_run = proc.scrape().by("vt_events_consumed_total", "topic")
    assert proc.stop() == 0

    golden = outputs(b, names.physical("golden"))
    dlq = dead_letters(b, names.physical("dlq"))
    assert golden.latest == golden_ref.latest, "the final compacted golden set is the uninterrupted run's"
    assert dlq == {(t.replace("ref.", "crash."), p, o, r) for t, p, o, r in dlq_ref}, "every bad input dead-lettered, nothing else"
    # Every record written is one the uninterrupted run also wrote (same key, same bytes): replays only rewrite.
    assert set(golden.records) == set(golden_ref.records)
    extra = len(golden.records) - len(golden_ref.records)
    assert extra == golden.duplicates - golden_ref.duplicates >= 0
    inputs = sum(end for (t, _p), end in ends.items() if t in {names.physical(x) for x in INPUTS})
    assert inputs == len(events), "the committed offsets cover every input record"
    figure(
        "crash",
        kills=kills, inputs=len(events), bad_inputs=bad, dead_letters=len(dlq), golden_final=len(golden.latest),
        golden_equal=golden.latest == golden_ref.latest, golden_records=len(golden.records),
        golden_records_uninterrupted=len(golden_ref.records), duplicate_rewrites=extra,
        consumed_by_last_run=dict(Counter({k: int(v) for k, v in consumed_last_run.items()})),
    )
