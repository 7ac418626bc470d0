"""The seed's offline use: a file of execution logs in, the golden set (ChatML JSONL) out.

``vector-trainer extract --input logs.jsonl --out golden.jsonl`` runs the same
engine as the stream processor over the lines of a file (one ExecutionLog JSON
per line, strictly decoded like the ``executions`` topic), then evaluates the
golden set once at the end.  The result equals what the stream processor
publishes for the same logs at its last evaluation point.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec

from stream.contract.config import DensitySettings
from stream.contract.deadletter import DecodeFailure, decode_input
from stream.contract.events import ExecutionLog, GoldenSample

from .embedder import Embedder
from .engine import EngineConfig, PartitionEngine
from .processor import DensityProcessor

# Logs decoded and indexed at a time.  A batch's temporaries (decoded vectors, neighbour pairs,
# gathered links) scale with it: 500 kept the peak of 100k 384-d logs of one function 40-75 MB
# lower than 2000 did, for ~8 % more time (issue 20).
_BATCH = 500


@dataclass(slots=True)
class ExtractReport:
    lines: int = 0
    in_index: int = 0  # logs in the index at the end (after TTL and cap)
    rejected: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    golden: dict[str, Counter[str]] = field(default_factory=dict)  # function -> strategy -> n


def _lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(fh, start=1):
        line = line.strip()
        if line:
            yield number, line


def extract(
    input_path: Path,
    out_path: Path,
    settings: DensitySettings | None = None,
    *,
    chatml_only: bool = False,
    rejects_path: Path | None = None,
    max_bytes: int = 1_048_576,
    max_vector_dim: int = 8192,
    embedder: Embedder | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExtractReport:
    """Index every valid log of ``input_path``, select, and write the golden set to ``out_path``.

    ``progress(bytes_read, lines)`` is called after each batch is indexed (the caller shows it).
    """
    processor = DensityProcessor(settings, embedder=embedder)
    engine = PartitionEngine(processor.config, processor.embedder, processor.sensor)
    # One evaluation, at the end: intermediate golden sets would only be overwritten.
    engine.config = _single_window(engine.config)
    report = ExtractReport()
    rejects = open(rejects_path, "wb") if rejects_path is not None else None  # noqa: SIM115 - closed below
    enc = msgspec.json.Encoder()

    def reject(number: int, error_type: str, error: str) -> None:
        report.rejected[error_type] += 1
        if len(report.first_errors) < 5:
            report.first_errors.append(f"line {number}: {error_type}: {error}")
        if rejects is not None:
            rejects.write(enc.encode({"line": number, "error_type": error_type, "error": error}) + b"\n")

    try:
        with open(input_path, "rb") as fh:
            batch = 0
            for number, line in _lines(fh):
                report.lines += 1
                decoded = decode_input("executions", line, max_bytes=max_bytes, max_vector_dim=max_vector_dim)
                if isinstance(decoded, DecodeFailure):
                    reject(number, decoded.error_type, decoded.error)
                    continue
                assert isinstance(decoded, ExecutionLog)
                _outputs, refused = engine.offer(decoded, number)
                for r in refused:
                    reject(r.ref, r.error_type, r.error)
                batch += 1
                if batch >= _BATCH:
                    for r in engine.flush():
                        reject(r.ref, r.error_type, r.error)
                    batch = 0
                    if progress is not None:
                        progress(fh.tell(), report.lines)
            for r in engine.flush():
                reject(r.ref, r.error_type, r.error)
            if progress is not None:
                progress(fh.tell(), report.lines)
        engine.evaluate()
    finally:
        for fn in engine.functions.values():
            if fn.index is not None:
                fn.index.close()  # a graph still being built (exact -> HNSW) would not be used any more
        if rejects is not None:
            rejects.close()
    samples = engine.samples()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as out:
        for sample in samples:
            out.write(_line(sample, chatml_only, enc))
            report.golden.setdefault(sample.function_name, Counter())[sample.strategy] += 1
    report.in_index = sum(fn.index.live_count for fn in engine.functions.values() if fn.index is not None)
    return report


def _line(sample: GoldenSample, chatml_only: bool, enc: msgspec.json.Encoder) -> bytes:
    if chatml_only:
        return enc.encode({"messages": sample.messages}) + b"\n"
    return enc.encode(sample) + b"\n"


def _single_window(config: EngineConfig) -> EngineConfig:
    return dataclasses.replace(config, interval_ms=1 << 62)
