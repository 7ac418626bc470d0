"""Rebalance: one instance, then two in the same consumer group, then one again, mid-stream.

Each instance has a state dir of its own (no shared volume): partitions move between
instances through the state topics in Kafka (snapshots written on revoke and shutdown,
verified, then read by the new owner).  Afterwards every function's
densities must equal the exact O(n²) computation over the logs its index holds, and
the index must hold every good log exactly once: nothing counted twice by an instance
that replayed a partition another had already processed, nothing missing.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from processors.density import DensityProcessor
from processors.density.vectors import from_fixed
from stream.contract.config import DensitySettings
from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.statestore import CheckpointStore
from stream.tools.traffic import TrafficGenerator
from tests.support.density import exact_densities
from tests.support.faults import ProcessorProcess, Producer, figure, wait_drained

pytestmark = [pytest.mark.broker, pytest.mark.faults]

EVENTS = 9000
RATE = 300.0
DENSITY = DensitySettings(exact_threshold=256)  # past this many logs a function's index is HNSW
SETS = (f"density.exact_threshold={DENSITY.exact_threshold}",)


def _assigned(p: ProcessorProcess, topic: str) -> int:
    return int(p.scrape().total("vt_assigned_partitions", topic=topic))


def test_scaling_1_2_1_moves_state_through_kafka_and_keeps_densities_exact(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    gen = TrafficGenerator(seed=47, bad_ratio=0.01, feedback_ratio=0.03)
    events = list(itertools.islice(gen.stream(), EVENTS))
    b = own_broker.bootstrap
    names = TopicNames("reb.")
    executions = names.physical("executions")
    one = ProcessorProcess(b, "reb.", "reb", tmp_path / "one-state", tmp_path / "one.log", sets=SETS).start()
    producer = Producer(b, "reb.", events, RATE).start()
    time.sleep(8.0)
    two_dir = tmp_path / "two-state"
    assert not two_dir.exists()
    two = ProcessorProcess(b, "reb.", "reb", two_dir, tmp_path / "two.log", sets=SETS).start()
    deadline = time.monotonic() + 60
    split: tuple[int, int] = (0, 0)
    while time.monotonic() < deadline:  # the group rebalances: both instances own part of the input
        split = (_assigned(one, "executions"), _assigned(two, "executions"))
        if split[0] > 0 and split[1] > 0 and sum(split) == 3:
            break
        time.sleep(0.5)
    assert split[0] > 0 and split[1] > 0, f"the two instances did not share the partitions: {split}"
    time.sleep(8.0)
    assert one.stop() == 0  # back to one instance: the other takes every partition over
    assert producer.join() == len(events)
    wait_drained(two, names)
    assert _assigned(two, "executions") == 3
    restored = two.scrape().by("vt_state_restores_total", "source", processor="density", topic="executions")
    assert two.stop() == 0
    # "two" never saw "one"'s disk: what it took over from "one" came from Kafka.  ("local": a partition
    # "two" itself had checkpointed, handed back to it; "none": a partition still empty when assigned.)
    assert restored.get("kafka", 0) >= 1, restored

    # The final checkpoints of "two" (which ended owning everything), read the way an instance restores them.
    store = CheckpointStore(two_dir / "checkpoints" / "reb")
    loader = DensityProcessor(DENSITY)
    indexed, worst_rel, functions, hnsw = 0, 0.0, 0, 0
    for p in range(3):
        ckpt = store.load("density", executions, p)
        assert ckpt is not None, f"partition {p} has no checkpoint"
        loader.load_state(executions, p, ckpt.directory)
        for fn in loader.engines[p].functions.values():
            idx = fn.index
            assert idx is not None
            live = idx.live_slots()
            ref, ref_count = exact_densities(idx.vectors(live), DENSITY.epsilon)
            got = np.asarray(from_fixed(idx.cols.density[live]), dtype=np.float64)
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4, err_msg=f"{fn.name}: densities differ from the exact computation")
            assert np.array_equal(idx.cols.count[live], ref_count), f"{fn.name}: neighbour counts differ"
            worst_rel = max(worst_rel, float(np.max(np.abs(got - ref) / np.maximum(ref, 1e-9))) if len(ref) else 0.0)
            indexed += len(live)
            functions += 1
            hnsw += idx.mode == "hnsw"
    good = [e for e in events if e.topic == "executions" and not e.label.startswith("bad:")]
    expected = len({e.event.uuid for e in good if e.event is not None and e.event.status != "CACHE_HIT"})
    assert indexed == expected, f"every good log indexed exactly once: {indexed} in the indexes, {expected} expected"
    assert hnsw > 0, "at least one function's index went past the exact threshold to HNSW"
    figure(
        "rebalance", instances="1->2->1", state_dirs="separate", restored_by_second=dict(restored), split_while_two=f"{split[0]}+{split[1]}", logs_indexed=indexed, logs_expected=expected,
        functions=functions, hnsw_indexes=hnsw, max_relative_density_error=f"{worst_rel:.2e}", double_counted=indexed - expected,
    )
