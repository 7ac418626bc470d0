"""Curation in the density engine (no broker): rejected logs never enter the golden set, pinned
ones enter whatever their density, and the decisions survive a checkpoint.

A "topic" is a dict key -> value with every output applied in order, as compaction keeps it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from processors.density import DensityProcessor
from stream.contract.config import DensitySettings
from stream.contract.deadletter import INVALID_VALUE
from stream.contract.events import Curation, ExecutionLog, GoldenSample, decode
from stream.contract.processing import FROM_BEGINNING, Output, Record
from stream.runtime.sensors import PrometheusSensors
from tests.support.density import clustered, logs

SETTINGS = DensitySettings(
    exact_threshold=64, anomaly_min_logs=30, select_interval_s=2.0, idle_evaluate_s=3.0, steady_k=6, anomaly_k=4,
)
FN = "alpha"


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def _logs() -> list[ExecutionLog]:
    data = clustered(240, 16, 5, spread=0.6, isolated=10, seed=5)
    statuses = ["SUCCESS" if i % 7 else "ERROR" for i in range(len(data.vectors))]
    return logs(data.vectors, function=FN, statuses=statuses, start=datetime(2026, 11, 1, tzinfo=UTC), step_ms=40, seed=5)


def _new(clock: Clock, state: Path | None = None, curation: Path | None = None) -> DensityProcessor:
    proc = DensityProcessor(SETTINGS, clock=clock, sensor=PrometheusSensors(CollectorRegistry()).density)
    assert proc.load_state("curation", 0, curation) == FROM_BEGINNING
    proc.load_state("executions", 0, state)
    return proc


def _decision(uuid: str, decision: str | None, offset: int = 0, *, key: str | None = None) -> Record:
    key_bytes = (key or f"{FN}/{uuid}").encode()
    value = None if decision is None else Curation(
        function_name=FN, uuid=uuid, decision=decision, at=datetime(2026, 11, 2, tzinfo=UTC), reason="test",  # type: ignore[arg-type]
    )
    return Record("curation", 0, offset, key_bytes, value, None)


def _apply(topic: dict[bytes, bytes | None], outputs: list[Output]) -> None:
    for o in outputs:
        assert o.topic == "golden"
        topic[o.key] = o.value


def _feed(proc: DensityProcessor, items: list[ExecutionLog], topic: dict[bytes, bytes | None]) -> None:
    for i in range(0, len(items), 25):
        recs = [Record("executions", 0, i + j, e.function_name.encode(), e, None) for j, e in enumerate(items[i : i + 25])]
        result = proc.process(recs)
        assert not result.rejected
        _apply(topic, result.outputs)


def _quiet(proc: DensityProcessor, clock: Clock, topic: dict[bytes, bytes | None]) -> list[Output]:
    clock.t += SETTINGS.idle_evaluate_s + 0.5
    outputs = proc.tick(clock.t).outputs
    _apply(topic, outputs)
    return outputs


def _golden(topic: dict[bytes, bytes | None]) -> dict[str, GoldenSample]:
    out = {}
    for key, value in topic.items():
        if value is not None:
            sample = decode("golden", value)
            assert isinstance(sample, GoldenSample) and key == f"{FN}/{sample.uuid}".encode()
            out[sample.uuid] = sample
    return out


def _shape(topic: dict[bytes, bytes | None]) -> dict[str, tuple[str, bool]]:
    """What a golden table holds, as curation decides it: key -> (strategy, pinned)."""
    return {u: (s.strategy, s.pinned) for u, s in _golden(topic).items()}


def _plain_run(items: list[ExecutionLog]) -> tuple[DensityProcessor, Clock, dict[bytes, bytes | None]]:
    clock = Clock()
    proc = _new(clock)
    topic: dict[bytes, bytes | None] = {}
    _feed(proc, items, topic)
    _quiet(proc, clock, topic)
    return proc, clock, topic


def test_reject_pin_and_clear_change_the_golden_set_after_quiet() -> None:
    items = _logs()
    proc, clock, topic = _plain_run(items)
    plain = _shape(topic)
    assert any(s == "steady" for s, _ in plain.values()) and not any(p for _, p in plain.values())
    assert "pinned" not in next(v for v in topic.values() if v is not None).decode(), "pinned is omitted unless true"

    # Reject the densest steady sample: it leaves (tombstone), another representative of its region enters.
    victim = max((s for s in _golden(topic).values() if s.strategy == "steady"), key=lambda s: s.density).uuid
    assert not proc.process([_decision(victim, "reject", 0)]).outputs, "the decision waits for the idle evaluation"
    assert proc.engines[0].unevaluated()
    outputs = _quiet(proc, clock, topic)
    assert Output("golden", f"{FN}/{victim}".encode(), None) in outputs
    after_reject = _shape(topic)
    assert victim not in after_reject
    assert set(after_reject) - set(plain), "the next best log of the rejected one's region took its place"
    assert not proc.engines[0].unevaluated()

    # Pin the least dense SUCCESS log that is not golden: it enters, marked pinned.
    snap = proc.engines[0].snapshot(FN)
    assert snap is not None
    candidates = [(d, u) for u, d, ok in zip(snap.uuids, snap.densities, snap.success, strict=True) if ok and u not in after_reject]
    _density, low = min(candidates)
    proc.process([_decision(low, "pin", 1)])
    _quiet(proc, clock, topic)
    pinned = _golden(topic)[low]
    assert pinned.pinned and pinned.strategy in ("steady", "anomaly")
    assert proc.pinned() == {FN: {low}}
    assert proc.golden()[FN][low] == pinned.strategy, "views show the plain strategy"

    # A decision about a log never seen is kept and harmless.
    proc.process([_decision("no-such-log", "pin", 2)])
    assert not _quiet(proc, clock, topic)

    # Clear both (tombstones on curation): back to the plain selection.
    proc.process([_decision(victim, None, 3), _decision(low, None, 4)])
    _quiet(proc, clock, topic)
    assert _shape(topic) == plain
    assert proc.decisions[0] == {FN: {"no-such-log": "pin"}}


def test_a_decision_on_the_wrong_key_is_rejected() -> None:
    proc = _new(Clock())
    result = proc.process([_decision("u1", "reject", 0, key=f"{FN}/u2")])
    assert [r.error_type for r in result.rejected] == [INVALID_VALUE]
    assert not proc.decisions[0]


def test_decisions_before_or_after_the_logs_give_the_same_golden_set() -> None:
    items = _logs()
    _proc, _clock, plain_topic = _plain_run(items)
    plain = _golden(plain_topic)
    steady = sorted((s for s in plain.values() if s.strategy == "steady"), key=lambda s: -s.density)
    rejected = [steady[0].uuid, steady[2].uuid]
    pinned_uuid = next(e.uuid for e in items[5:] if e.status == "SUCCESS" and e.uuid not in plain)
    decisions = [_decision(u, "reject", i) for i, u in enumerate(rejected)] + [_decision(pinned_uuid, "pin", 2)]

    # Before: decisions first, then the logs.
    clock = Clock()
    before = _new(clock)
    before.process(decisions)
    topic_before: dict[bytes, bytes | None] = {}
    _feed(before, items, topic_before)
    _quiet(before, clock, topic_before)

    # After: the logs, quiet, then the decisions, quiet.
    after, clock_after, topic_after = _plain_run(items)
    after.process(decisions)
    _quiet(after, clock_after, topic_after)

    # Mid-way: half the logs, the decisions, the rest.
    clock_mid = Clock()
    mid = _new(clock_mid)
    topic_mid: dict[bytes, bytes | None] = {}
    _feed(mid, items[:120], topic_mid)
    mid.process(decisions)
    _feed(mid, items[120:], topic_mid)
    _quiet(mid, clock_mid, topic_mid)

    shape = _shape(topic_before)
    assert shape == _shape(topic_after) == _shape(topic_mid)
    assert not set(rejected) & set(shape)
    assert shape[pinned_uuid][1] is True


def test_decisions_survive_a_checkpoint_of_the_curation_partition(tmp_path: Path) -> None:
    items = _logs()
    proc, clock, topic = _plain_run(items)
    victim = next(u for u, s in _golden(topic).items() if s.strategy == "steady")
    proc.process([_decision(victim, "reject", 0)])
    # Checkpoints written before the idle evaluation: the engine's state predates the decision.
    (tmp_path / "c").mkdir()
    (tmp_path / "e").mkdir()
    proc.save_state("curation", 0, tmp_path / "c")
    proc.save_state("executions", 0, tmp_path / "e")
    assert msgspec.json.decode((tmp_path / "c" / "curation.json").read_bytes()) == {FN: {victim: "reject"}}

    restored = _new(Clock(), state=tmp_path / "e", curation=tmp_path / "c")
    assert restored.decisions[0] == {FN: {victim: "reject"}}
    assert restored.engines[0].decisions is restored.decisions[0], "the engine follows its curation partition"
    restored_topic = dict(topic)
    _quiet(restored, restored._clock, restored_topic)  # type: ignore[arg-type]
    _quiet(proc, clock, topic)
    assert victim not in _shape(restored_topic)
    assert _shape(restored_topic) == _shape(topic)

    # Releasing the curation partition forgets its decisions, not the engine.
    restored.release("curation", 0)
    assert restored.decisions[0] == {} and 0 in restored.engines


def test_a_rejected_sample_leaves_the_set_training_datasets_are_built_from(tmp_path: Path) -> None:
    """The density engine's outputs fed to engine 3 as the golden topic: after the rejection's tombstone
    the sample is no longer among the samples every dataset is exported from."""
    from processors.training import TrainingProcessor
    from stream.contract.config import Settings, TrainingSettings

    training = TrainingProcessor(
        Settings(state_dir=tmp_path / "state", training=TrainingSettings(trainer="none")), restore_from_topic=False,
        clock=lambda: 0.0,
    )
    training.load_state("golden", 0, None)
    offset = 0

    def to_training(outputs: list[Output]) -> None:
        nonlocal offset
        recs = []
        for o in outputs:
            recs.append(Record("golden", 0, offset, o.key, None if o.value is None else decode("golden", o.value), o.value))
            offset += 1
        assert not training.process(recs).rejected

    clock = Clock()
    proc = _new(clock)
    topic: dict[bytes, bytes | None] = {}
    items = _logs()
    for i in range(0, len(items), 25):
        result = proc.process([Record("executions", 0, i + j, e.function_name.encode(), e, None) for j, e in enumerate(items[i:i + 25])])
        _apply(topic, result.outputs)
        to_training(result.outputs)
    to_training(_quiet(proc, clock, topic))
    before = {s.uuid for s in training.samples(FN)}
    assert before == set(_golden(topic))
    victim = sorted(before)[0]
    proc.process([_decision(victim, "reject", 0)])
    to_training(_quiet(proc, clock, topic))
    after = {s.uuid for s in training.samples(FN)}
    assert victim in before and victim not in after and after == set(_golden(topic))
