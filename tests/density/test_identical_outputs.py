"""The performance work on the density engine changes no output: golden tables and densities of fixed
inputs are byte-equal to those recorded from the code before it (digests below).

The inputs cross the exact -> HNSW switch mid-way, carry identical vectors (shared HNSW elements)
and ERROR logs, and the processor run evicts (per-function cap) in HNSW mode.  Each runs with the
graph built in the call that crosses the threshold and built off the worker (then the index answers
in exact mode until the graph has caught up, whenever that is).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

import processors.density.processor as processor_module

from processors.density import DensityProcessor
from processors.density.extract import extract
from stream.contract.config import DensitySettings
from tests.support.density import golden_inputs, records, write_jsonl

N = 3000
# Recorded from the code before the exact->HNSW switch became incremental (main at 31e5879).
EXTRACT_GOLDEN_SHA256 = "b5d5fae8b601d1290d88e2b36f4d348220051a51c4498a8ec3e5959e97dca559"
EXTRACT_DENSITIES_SHA256 = "938a7d051bfc78fbb06fd75908e019f7003caabf96463682ecf5a78e03573146"
PROCESSOR_GOLDEN_SHA256 = "6876b74943577d5dd71f3ca6826c9b41daa4bba0be7d12603cad8eea50644c4b"
PROCESSOR_DENSITIES_SHA256 = "9d3aea6ee6da7c6dbdbb691297a4f8dc79d9b27afdd9aad7e1fc20dd2039b7f8"


def _densities_digest(engine) -> str:  # type: ignore[no-untyped-def]
    h = hashlib.sha256()
    for name in sorted(engine.functions):
        index = engine.functions[name].index
        live = index.live_slots()
        order = np.argsort(index.cols.uid[live], kind="stable")
        h.update(name.encode())
        h.update(np.ascontiguousarray(index.cols.uid[live][order]).tobytes())
        h.update(np.ascontiguousarray(index.cols.density[live][order]).tobytes())
        h.update(np.ascontiguousarray(index.cols.count[live][order]).tobytes())
    return h.hexdigest()


def run_extract(tmp_path: Path) -> tuple[str, str]:
    write_jsonl(tmp_path / "logs.jsonl", golden_inputs(N, duplicates=150))
    settings = DensitySettings(exact_threshold=1000, anomaly_min_logs=50)
    captured = {}
    import processors.density.extract as module

    original = module.PartitionEngine

    class Spy(original):  # type: ignore[misc, valid-type]
        def evaluate(self, *, idle: bool = False):  # type: ignore[no-untyped-def]
            result = super().evaluate(idle=idle)
            captured["engine"] = self
            return result

    module.PartitionEngine = Spy  # type: ignore[misc]
    try:
        extract(tmp_path / "logs.jsonl", tmp_path / "golden.jsonl", settings)
    finally:
        module.PartitionEngine = original  # type: ignore[misc]
    golden = hashlib.sha256((tmp_path / "golden.jsonl").read_bytes()).hexdigest()
    return golden, _densities_digest(captured["engine"])


def run_processor() -> tuple[str, str]:
    events = golden_inputs(N, duplicates=150, seed=12)
    settings = DensitySettings(exact_threshold=1000, anomaly_min_logs=50, max_per_function=2400, select_interval_s=20)
    proc = DensityProcessor(settings)
    table: dict[bytes, bytes | None] = {}
    recs = records(events)
    for i in range(0, len(recs), 250):
        for out in proc.process(recs[i : i + 250]).outputs:
            table[out.key] = out.value
    engine = proc.engines[0]
    for out in engine.evaluate()[0]:
        table[out.key] = out.value
    h = hashlib.sha256()
    for key in sorted(table):
        if table[key] is not None:  # the compacted topic: tombstoned keys are gone
            h.update(key + b"\0" + table[key] + b"\n")  # type: ignore[operator]
    return h.hexdigest(), _densities_digest(engine)


@pytest.fixture(params=["foreground", "background"])
def build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "background":
        original = processor_module.engine_config

        def background(*args, **kwargs):  # type: ignore[no-untyped-def]
            config = original(*args, **kwargs)
            return dataclasses.replace(config, index=dataclasses.replace(config.index, foreground_build_max=0))

        monkeypatch.setattr(processor_module, "engine_config", background)
    return request.param


def test_extract_outputs_are_unchanged(tmp_path: Path, build: str) -> None:
    assert run_extract(tmp_path) == (EXTRACT_GOLDEN_SHA256, EXTRACT_DENSITIES_SHA256)


def test_processor_golden_table_is_unchanged(build: str) -> None:
    assert run_processor() == (PROCESSOR_GOLDEN_SHA256, PROCESSOR_DENSITIES_SHA256)
