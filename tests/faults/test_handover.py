"""Handover to an instance with an EMPTY disk: instance A takes the first half of the input and is
killed with -9; instance B, with a state dir of its own that has never been written, takes every
partition over and the rest of the input arrives.  Everything B needs comes from Kafka (the state
topics, the hooks history, the training topic).

The final golden table, every hook version (history, then a rollback made from the command line
with only --bootstrap) and the training decisions must equal those of one uninterrupted instance fed
the same input in the same two phases.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from stream.contract.events import HookRelease, TrainingEvent
from stream.contract.topics import STATE_INDEX, TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.partitioning import function_partition
from stream.runtime.snapshots import SnapshotIndex
from stream.tools.traffic import TrafficGenerator
from tests.support.faults import INPUTS, ProcessorProcess, figure, highwater, outputs, send, topic, wait_drained

pytestmark = [pytest.mark.broker, pytest.mark.faults]

EVENTS = 5000
PARTITIONS = 3
# Synthesis waits for 3 s of quiet per function, the training trigger fires at 10 new samples (near-copies may both be golden here, so there are enough);
# the state goes to the state topic at every checkpoint (1 s), so the kill finds it there.
SETS = (
    "feedback.debounce_s=3", "feedback.max_delay_s=30", "training.threshold=10", "training.trainer=none", "density.dedup_similarity=0.999",
    "runtime.state_snapshot_interval_s=1", "runtime.state_snapshot_ratio=0",
)
QUIET_S = 8.0  # longer than synthesis' debounce and density's idle evaluation


def _events() -> list:
    gen = TrafficGenerator(seed=71, bad_ratio=0.01, feedback_ratio=0.08)
    return list(itertools.islice(gen.stream(), EVENTS))


def _vt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def _history(b: str, names: TopicNames) -> dict[bytes, bytes]:
    return outputs(b, names.physical("hooks.history")).latest


def _training(b: str, names: TopicNames) -> list[tuple]:
    """The training decisions: which function, what outcome.  (How many samples a dataset holds depends
    on which wall-clock tick of the trigger first saw the threshold crossed, in either run; ids and
    times aside too.)  A function decided twice would show here: the new owner must know A's jobs."""
    out = []
    for r in topic(b, names.physical("training")):
        e = msgspec.json.decode(r.value, type=TrainingEvent)
        out.append((e.function_name, e.status))
    return sorted(out)


def _snapshots_cover(b: str, names: TopicNames, group: str, ends: dict[tuple[str, int], int]) -> bool:
    """Whether the state topic holds density and feedback snapshots at the end of every busy input partition."""
    latest: dict[tuple[str, int], int] = {}
    for r in topic(b, names.physical(STATE_INDEX)):
        if r.value is None:
            continue
        s = msgspec.json.decode(r.value, type=SnapshotIndex)
        if s.group == group and s.processor in ("density", "feedback"):
            latest[(s.topic, s.partition)] = s.offset
    return all(latest.get(tp, -1) >= end for tp, end in ends.items())


def _rollback(b: str, prefix: str, fn: str, to: int, cwd: Path) -> str:
    res = _vt("hooks", "rollback", fn, "--to", str(to), "--bootstrap", b, "--topic-prefix", prefix, cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _wait_version(p: ProcessorProcess, fn: str, version: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.scrape().total("vt_hook_version", function=fn) == version:
            return
        time.sleep(0.5)
    raise AssertionError(f"the processor did not adopt {fn} v{version} within {timeout}s")


def test_kill9_then_an_instance_with_an_empty_disk_takes_over_from_kafka(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    events = _events()
    half = len(events) // 2
    b = own_broker.bootstrap

    # The reference: one uninterrupted instance, the same two phases.
    ref_names = TopicNames("ref.")
    ref = ProcessorProcess(b, "ref.", "ref", tmp_path / "ref-state", tmp_path / "ref.log", sets=SETS).start()
    send(b, "ref.", events[:half])
    wait_drained(ref, ref_names)
    time.sleep(QUIET_S)
    send(b, "ref.", events[half:])
    wait_drained(ref, ref_names)
    time.sleep(QUIET_S)

    # A takes the first half, its state reaches the state topic, then kill -9 (no revoke, no final checkpoint).
    names = TopicNames("ho.")
    a = ProcessorProcess(b, "ho.", "ho", tmp_path / "a-state", tmp_path / "a.log", sets=SETS).start()
    send(b, "ho.", events[:half])
    ends = wait_drained(a, names)
    time.sleep(QUIET_S)
    deadline = time.monotonic() + 60
    while not _snapshots_cover(b, names, "ho", ends):
        assert time.monotonic() < deadline, "A's state did not reach the state topic"
        time.sleep(0.5)
    a.kill9()

    # B: a state dir that has never existed.
    b_dir = tmp_path / "b-state"
    assert not b_dir.exists()
    bb = ProcessorProcess(b, "ho.", "ho", b_dir, tmp_path / "b.log", sets=SETS).start()
    send(b, "ho.", events[half:])
    wait_drained(bb, names)
    time.sleep(QUIET_S)
    scrape = bb.scrape()
    restored = {src: scrape.total("vt_state_restores_total", processor="density", topic="executions", source=src) for src in ("kafka", "local", "none")}
    restore_bytes = scrape.total("vt_state_restore_bytes_total")
    consumed_b = scrape.total("vt_events_consumed_total", topic="executions")
    second_half_logs = sum(1 for e in events[half:] if e.topic == "executions")
    busy = {function_partition(e.key, PARTITIONS) for e in events[:half] if e.topic == "executions"}

    golden_ref, golden = outputs(b, ref_names.physical("golden")), outputs(b, names.physical("golden"))
    history_ref, history = _history(b, ref_names), _history(b, names)
    training_ref, training = _training(b, ref_names), _training(b, names)
    assert restored["kafka"] == len(busy) and restored["local"] == 0, f"B took the density state from Kafka: {restored}"
    assert consumed_b == second_half_logs, "B replayed nothing of the first half"
    assert golden.latest == golden_ref.latest and golden.latest, "the final golden table is the uninterrupted run's"
    assert history and {k.decode() for k in history} == {k.decode() for k in history_ref}, "the same hook versions"
    assert history == history_ref, "every hook version byte for byte (rules, validation, lineage)"
    assert training == training_ref and training, "the same training decisions"
    assert len(set(training)) == len(training), "no function's training decided twice (the job history moved with it)"

    # Rollback from the command line, with only --bootstrap (a fresh directory: no state dir anywhere).
    fn = max({msgspec.json.decode(v, type=HookRelease).function_name for v in history.values()},
             key=lambda f: sum(1 for k in history if k.startswith(f.encode() + b"/")))
    versions = sorted(msgspec.json.decode(v, type=HookRelease).version for k, v in history.items() if k.startswith(fn.encode() + b"/"))
    listed = _vt("hooks", "list", fn, "--bootstrap", b, "--topic-prefix", "ho.", cwd=tmp_path / "cli-1")
    assert listed.returncode == 0 and all(f" {v} " in listed.stdout for v in versions), listed.stdout
    if len(versions) > 1:
        diff = _vt("hooks", "diff", fn, str(versions[0]), str(versions[-1]), "--bootstrap", b, "--topic-prefix", "ho.", cwd=tmp_path / "cli-2")
        assert diff.returncode == 0 and diff.stdout.strip(), diff.stdout + diff.stderr
    _rollback(b, "ho.", fn, versions[0], tmp_path / "cli-3")
    _rollback(b, "ref.", fn, versions[0], tmp_path / "cli-4")
    _wait_version(bb, fn, versions[-1] + 1)
    _wait_version(ref, fn, versions[-1] + 1)
    after_ref, after = _history(b, ref_names), _history(b, names)
    new_key = f"{fn}/{versions[-1] + 1:09d}".encode()
    rb, rb_ref = (msgspec.json.decode(h[new_key], type=HookRelease) for h in (after, after_ref))
    assert rb.rollback_of == versions[0] and (rb.rules, rb.vetoed, rb.parent_version) == (rb_ref.rules, rb_ref.vetoed, rb_ref.parent_version)
    assert bb.stop() == 0 and ref.stop() == 0
    inputs = sum(end for (t, _p), end in highwater(topic(b, names.physical("executions")) + topic(b, names.physical("feedback"))).items())
    assert inputs == len(events)
    figure(
        "handover", inputs=len(events), killed_after=half, restored_from_kafka=int(restored["kafka"]),
        restore_bytes=int(restore_bytes), replayed_first_half=int(consumed_b - second_half_logs), golden_final=len(golden.latest),
        golden_equal=golden.latest == golden_ref.latest, hook_versions=len(history), hook_history_equal=history == history_ref,
        training_events=len(training), training_equal=training == training_ref, rollback=f"{fn} v{versions[0]} -> v{versions[-1] + 1}",
        inputs_topics=",".join(INPUTS),
    )
