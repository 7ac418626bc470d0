"""Idle evaluation in the density engine (no broker): whatever the wall clock does, the final
compacted golden table is the deterministic one.

A "topic" here is a dict key -> value with every output applied in order, as compaction
keeps it.  Run A evaluates only at event-time window changes and once at the end; the other
runs add idle evaluations at random places, restart from checkpoints and lose state as a
kill -9 would (state rolled back while the outputs stay on the topic).
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from processors.density import DensityProcessor
from processors.density.extract import extract
from prometheus_client import CollectorRegistry

from stream.contract.config import DensitySettings
from stream.contract.events import ExecutionLog
from stream.contract.processing import Output, Record

from stream.runtime.sensors import PrometheusSensors
from tests.support.density import clustered, logs

# Small windows, a TTL and a cap, so that idle evaluations land inside windows that get more
# logs afterwards, and evict logs, which is what the engine has to get right.
SETTINGS = DensitySettings(
    exact_threshold=64, anomaly_min_logs=30, select_interval_s=2.0, ttl_s=40.0, max_per_function=220, idle_evaluate_s=3.0,
    steady_k=10, anomaly_k=10,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def _logs(seed: int = 3) -> list[ExecutionLog]:
    out: list[ExecutionLog] = []
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    for k, fn in enumerate(("alpha", "beta", "gamma")):
        data = clustered(260, 16, 4, spread=0.6, isolated=12, seed=seed + k)
        statuses = ["SUCCESS" if i % 9 else "ERROR" for i in range(len(data.vectors))]
        out.extend(logs(data.vectors, function=fn, statuses=statuses, start=t0, step_ms=170 + 40 * k, seed=seed + k))
    # Interleave the functions by event time, with a few late (out-of-order) logs.
    out.sort(key=lambda e: e.timestamp_utc)
    rng = random.Random(seed)
    for _ in range(15):
        i, j = sorted(rng.sample(range(len(out)), 2))
        if j - i < 40:
            out[i], out[j] = out[j], out[i]
    return out


def _records(items: list[ExecutionLog]) -> list[Record]:
    return [Record("executions", 0, i, e.function_name.encode(), e, None) for i, e in enumerate(items)]


def _apply(topic: dict[bytes, bytes | None], outputs: list[Output]) -> None:
    for o in outputs:
        assert o.topic == "golden"
        topic[o.key] = o.value


def _table(topic: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    return {k: v for k, v in topic.items() if v is not None}


def _new(clock: Clock, state: Path | None = None) -> DensityProcessor:
    proc = DensityProcessor(SETTINGS, clock=clock, sensor=PrometheusSensors(CollectorRegistry()).density)
    proc.load_state("executions", 0, state)
    return proc


def _quiet(proc: DensityProcessor, clock: Clock, topic: dict[bytes, bytes | None]) -> int:
    """Let the wall clock pass idle_evaluate_s and tick; the number of outputs."""
    clock.t += SETTINGS.idle_evaluate_s + 0.5
    result = proc.tick(clock.t)
    _apply(topic, result.outputs)
    return len(result.outputs)


def _waiting(proc: DensityProcessor) -> float:
    return max(proc.sensor.registry.get_sample_value("vt_density_unevaluated_age_seconds", {"function": fn}) or 0.0 for fn in ("alpha", "beta", "gamma"))


def _reference(items: list[ExecutionLog]) -> tuple[dict[bytes, bytes], DensityProcessor]:
    clock = Clock()
    proc = _new(clock)
    topic: dict[bytes, bytes | None] = {}
    for rec in _records(items):
        _apply(topic, proc.process([rec]).outputs)
    _quiet(proc, clock, topic)
    return _table(topic), proc


def test_without_quiet_the_last_window_waits_and_with_quiet_it_is_evaluated() -> None:
    # One burst, stamped within one select window, then nothing: no event time ever closes it.
    data = clustered(150, 16, 3, spread=0.6, isolated=5, seed=9)
    items = logs(data.vectors, function="alpha", start=datetime(2026, 11, 1, tzinfo=UTC), step_ms=2)
    clock = Clock()
    proc = _new(clock)
    topic: dict[bytes, bytes | None] = {}
    _apply(topic, proc.process(_records(items)).outputs)
    assert not topic and proc.engines[0].unevaluated(), "the burst waits for an evaluation point"
    clock.t += SETTINGS.idle_evaluate_s - 0.5
    assert not proc.tick(clock.t).outputs, "not before idle_evaluate_s of quiet"
    assert _waiting(proc) >= SETTINGS.idle_evaluate_s - 0.5, "the freshness gauge shows how long the logs waited"
    assert _quiet(proc, clock, topic) > 0
    assert not proc.engines[0].unevaluated()
    assert _waiting(proc) == 0
    assert not proc.tick(clock.t + 100).outputs, "nothing left to evaluate"
    reference, _ = _reference(items)
    assert _table(topic) == reference


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_idle_evaluations_restarts_and_kills_leave_the_deterministic_table(seed: int, tmp_path: Path) -> None:
    items = _logs()
    reference, ref_proc = _reference(items)
    assert len(reference) > 20 and {v is not None for v in reference.values()} == {True}

    rng = random.Random(seed)
    clock = Clock()
    proc = _new(clock)
    topic: dict[bytes, bytes | None] = {}
    recs = _records(items)
    saved: tuple[Path, int] | None = None
    idle_outputs = kills = restarts = 0
    pos = 0
    while pos < len(recs):
        n = rng.randint(1, 60)
        batch = recs[pos : pos + n]
        clock.t += 0.01
        _apply(topic, proc.process(batch).outputs)
        pos += len(batch)
        roll = rng.random()
        produced = _quiet(proc, clock, topic) if roll < 0.35 else 0
        idle_outputs += produced
        if produced or roll < 0.15 or saved is None:
            # A checkpoint: the runtime saves state right after a tick's outputs are acknowledged, and on intervals.
            directory = tmp_path / f"ckpt-{pos}"
            directory.mkdir()
            proc.save_state("executions", 0, directory)
            saved = (directory, pos)
        elif roll > 0.93:
            # kill -9: the state rolls back to the last checkpoint; what was produced stays on the topic.
            kills += 1
            proc = _new(clock, saved[0])
            pos = saved[1]
        elif roll > 0.88:
            restarts += 1
            directory = tmp_path / f"stop-{pos}"
            directory.mkdir()
            proc.save_state("executions", 0, directory)
            proc = _new(clock, directory)
    _quiet(proc, clock, topic)
    assert idle_outputs > 0 and kills + restarts > 0, "the run did evaluate when idle and did restart"
    table = _table(topic)
    assert table == reference, "same keys, same bytes (densities, selected_at) as without idle evaluations"
    assert proc.golden() == ref_proc.golden()


def test_the_table_after_quiet_is_what_extract_computes(tmp_path: Path) -> None:
    items = _logs()
    reference, _ = _reference(items)
    path = tmp_path / "logs.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in items))
    extract(path, tmp_path / "golden.jsonl", SETTINGS)
    batch = {
        (d["function_name"], d["uuid"], d["strategy"])
        for d in map(msgspec.json.decode, (tmp_path / "golden.jsonl").read_bytes().splitlines())
    }
    stream = {(s["function_name"], s["uuid"], s["strategy"]) for s in map(msgspec.json.decode, reference.values())}
    assert stream == batch and len(batch) > 20


def test_idle_evaluation_can_be_switched_off() -> None:
    clock = Clock()
    proc = DensityProcessor(dataclasses.replace(SETTINGS, idle_evaluate_s=0.0), clock=clock)
    proc.load_state("executions", 0, None)
    proc.process(_records(_logs()[:100]))
    clock.t += 10_000
    assert not proc.tick(clock.t).outputs and proc.engines[0].unevaluated()
