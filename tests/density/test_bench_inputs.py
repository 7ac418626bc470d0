"""The end-to-end benchmark's input gives the same golden table whatever the batch size (the runtime
fetches up to ``runtime.max_batch_records``), byte-equal to the one recorded from the code before the
end-to-end performance work; and a density checkpoint captured for writing off the worker is, file for
file, what ``save_state`` writes at that moment, however the state moves on before it is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

from processors.density import DensityProcessor
from stream.contract.config import DensitySettings, RuntimeSettings
from stream.contract.deadletter import DecodeFailure, decode_input
from stream.contract.processing import Record
from tests.bench.bench_e2e import PARTITIONS, _events

N = 6000  # the benchmark's quick size (384-d, 12 functions, 4 partitions, stamped as at 3000 events/s)
# Recorded from main at 2349e17 (before tick_interval_s, max_batch_records 5000 and background checkpoints).
BENCH_GOLDEN_SHA256 = "4bb89203bd03a29ba75feaa2cd7d6bbc295a8bf195388f9976dc9eed6869cc41"


def _partitioned() -> dict[int, list[Record]]:
    rt = RuntimeSettings()
    parts: dict[int, list[Record]] = {}
    for item in _events(N, seed=5, event_rate=3000.0):
        if item.topic != "executions":
            continue
        p = (murmur2(item.key) & 0x7FFFFFFF) % PARTITIONS
        recs = parts.setdefault(p, [])
        value = decode_input("executions", item.value, max_bytes=rt.max_message_bytes, max_vector_dim=rt.max_vector_dim)
        if not isinstance(value, DecodeFailure):
            recs.append(Record("executions", p, len(recs), item.key, value, item.value))
    return parts


def _golden_table(batch: int) -> str:
    proc = DensityProcessor(DensitySettings())
    table: dict[bytes, bytes | None] = {}
    for p, recs in sorted(_partitioned().items()):
        for i in range(0, len(recs), batch):
            for out in proc.process(recs[i : i + batch]).outputs:
                table[out.key] = out.value
    h = hashlib.sha256()
    for key in sorted(table):
        if table[key] is not None:
            h.update(key + b"\0" + table[key] + b"\n")  # type: ignore[operator]
    return h.hexdigest()


@pytest.mark.parametrize("batch", [500, 5000])
def test_bench_golden_table_is_unchanged(batch: int) -> None:
    assert _golden_table(batch) == BENCH_GOLDEN_SHA256


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_captured_checkpoint_is_what_save_writes(tmp_path: Path) -> None:
    proc = DensityProcessor(DensitySettings())
    recs = _partitioned()[0]
    half = len(recs) // 2
    proc.process(recs[:half])
    (tmp_path / "saved").mkdir()
    proc.save_state("executions", 0, tmp_path / "saved")
    write = proc.capture_state("executions", 0)
    assert write is not None
    proc.process(recs[half:])  # the state moves on before the copy is written
    (tmp_path / "captured").mkdir()
    write(tmp_path / "captured")
    assert _files(tmp_path / "captured") == _files(tmp_path / "saved")
    # and what is written now is the state now
    (tmp_path / "later").mkdir()
    proc.save_state("executions", 0, tmp_path / "later")
    (tmp_path / "later-captured").mkdir()
    later = proc.capture_state("executions", 0)
    assert later is not None
    later(tmp_path / "later-captured")
    assert _files(tmp_path / "later-captured") == _files(tmp_path / "later") != _files(tmp_path / "saved")
