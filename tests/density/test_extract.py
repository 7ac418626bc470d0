"""``vector-trainer extract``: the seed's offline extractor over a JSONL file of execution logs."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from processors.density import DensityProcessor
from processors.density.extract import extract
from stream.contract.config import ConfigError, DensitySettings, Settings
from stream.contract.events import GoldenSample
from stream.tools.traffic import TrafficGenerator
from tests.support.cli import vt
from tests.support.density import records

SETTINGS = DensitySettings(exact_threshold=128, anomaly_min_logs=50)


def _write_logs(path: Path, n: int = 1500) -> list:
    gen = TrafficGenerator(seed=31, feedback_ratio=0.0)
    items = [gen.execution() for _ in range(n)]
    with open(path, "wb") as fh:
        for i, it in enumerate(items):
            fh.write(it.value + b"\n")
            if i == 10:
                fh.write(b'{"uuid": "x", "broken json\n')
            if i == 20:
                fh.write(b"\n")  # blank lines are skipped
    return items


def test_extract_writes_the_golden_set_the_stream_processor_selects(tmp_path: Path) -> None:
    items = _write_logs(tmp_path / "logs.jsonl")
    seen: list[tuple[int, int]] = []
    report = extract(
        tmp_path / "logs.jsonl", tmp_path / "golden.jsonl", SETTINGS, rejects_path=tmp_path / "rejects.jsonl",
        progress=lambda done, lines: seen.append((done, lines)),
    )
    assert report.lines == len(items) + 1 and report.rejected == {"malformed_json": 1}
    # Progress after every batch of 500 logs (the broken line is read, not indexed) and at the end,
    # in bytes of the file read so far.
    assert [lines for _, lines in seen] == [501, 1001, 1501, 1501] and seen == sorted(seen)
    assert seen[-1] == ((tmp_path / "logs.jsonl").stat().st_size, report.lines)
    samples = [msgspec.json.decode(line, type=GoldenSample) for line in (tmp_path / "golden.jsonl").read_bytes().splitlines()]
    assert samples and {s.strategy for s in samples} == {"steady", "anomaly"}
    assert json.loads((tmp_path / "rejects.jsonl").read_text())["line"] == 12

    # The stream processor over the same logs, evaluated at the end, publishes the same set.
    proc = DensityProcessor(SETTINGS)
    proc.process(records([it.event for it in items]))
    engine = proc.engines[0]
    engine.evaluate()
    assert {(s.function_name, s.uuid, s.strategy) for s in samples} == {
        (fn, u, st) for fn, sel in proc.golden().items() for u, st in sel.items()
    }


def test_extract_cli_chatml_only(tmp_path: Path) -> None:
    _write_logs(tmp_path / "logs.jsonl", 600)
    res = vt("extract", "--input", str(tmp_path / "logs.jsonl"), "--out", str(tmp_path / "out.jsonl"), "--chatml-only",
             "-c", "density.exact_threshold=100", "-c", "density.anomaly_min_logs=50")
    assert res.returncode == 0, res.stderr
    assert "summarize_ticket" in res.stdout and "1 refused (malformed_json=1)" in res.stdout
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines and all(list(d) == ["messages"] and [m["role"] for m in d["messages"]] == ["system", "user", "assistant"] for d in lines)
    missing = vt("extract", "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x.jsonl"))
    assert missing.returncode == 2 and "is not a file" in missing.stderr


def test_density_settings_from_the_environment_and_their_checks() -> None:
    s = Settings.load(environ={"VT_DENSITY_EPSILON": "0.25", "VT_DENSITY_MASK_KEYS": "password,ssn", "VT_DENSITY_TTL_S": "0"})
    assert s.density.epsilon == 0.25 and s.density.mask_keys == ("password", "ssn") and s.density.ttl_s == 0
    for env, message in (
        ({"VT_DENSITY_EPSILON": "1.5"}, "density.epsilon"),
        ({"VT_DENSITY_EMBEDDER": "word2vec"}, "density.embedder"),
        ({"VT_DENSITY_EMBEDDER": "sentence-transformers"}, "density.embed_model_path"),
        ({"VT_DENSITY_INITIAL_K": "9000"}, "density.initial_k"),
    ):
        with pytest.raises(ConfigError, match=message):
            Settings.load(environ=env)
