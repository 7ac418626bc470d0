"""The compact vector encoding: ``vector_b64`` (base64 of little-endian float32) decodes to exactly
the floats JSON would carry, is refused with a reason when malformed, and gives the density engine
the very same golden set as JSON floats."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from processors.density import DensityProcessor
from stream.contract import events
from stream.contract.config import DensitySettings
from stream.contract.deadletter import INVALID_VECTOR, DecodeFailure, decode_input
from stream.contract.processing import Record
from stream.tools.traffic import TrafficGenerator

BASE = {
    "uuid": "u1", "function_name": "fn", "timestamp_utc": "2026-11-01T10:00:00Z", "status": "SUCCESS",
    "inputs": {"q": "hi"}, "return_value": "hello",
}


def test_b64_decodes_to_the_floats_json_carries() -> None:
    values = [0.1, -2.5, 1e-30, 3.4e38, 0.0, -0.0, 1 / 3]
    as_f32 = list(struct.unpack("<7f", struct.pack("<7f", *values)))  # what a float32 producer has
    via_json = events.decode("executions", json.dumps({**BASE, "vector": as_f32}).encode())
    via_b64 = events.decode("executions", json.dumps({**BASE, "vector_b64": events.vector_b64(values)}).encode())
    assert isinstance(via_b64, events.ExecutionLog) and via_b64.vector == via_json.vector == as_f32
    assert via_b64.vector_b64 is None  # one representation in memory
    raw = base64.b64decode(events.vector_b64(values))
    assert raw == struct.pack("<7f", *values), "little-endian float32, whatever the machine"


def _refused(raw: bytes, why: str, max_vector_dim: int = 8192) -> None:
    failure = decode_input("executions", raw, max_bytes=1 << 20, max_vector_dim=max_vector_dim)
    assert isinstance(failure, DecodeFailure), failure
    assert failure.error_type == INVALID_VECTOR and why in failure.error and "`$.vector" in failure.error


@pytest.mark.parametrize(("value", "why"), [
    ("not base64!", "not valid base64"),
    (base64.b64encode(b"\x00\x00\x80").decode(), "not whole float32 values"),
    (base64.b64encode(struct.pack("<2f", 1.0, float("nan"))).decode(), "non-finite"),
    (base64.b64encode(struct.pack("<f", float("inf"))).decode(), "non-finite"),
    ("", "must not be empty"),
])
def test_malformed_b64_is_a_bad_vector_with_a_reason(value: str, why: str) -> None:
    _refused(json.dumps({**BASE, "vector_b64": value}).encode(), why)


def test_both_encodings_at_once_are_refused() -> None:
    _refused(json.dumps({**BASE, "vector": [1.0], "vector_b64": events.vector_b64([1.0])}).encode(), "not both")


def test_the_dimension_limit_holds_for_b64_too() -> None:
    _refused(json.dumps({**BASE, "vector_b64": events.vector_b64([0.5] * 9)}).encode(), "the limit is 8", max_vector_dim=8)


def test_the_engine_selects_the_same_golden_set_from_either_encoding() -> None:
    def golden(encoding: str) -> tuple[dict[str, dict[str, str]], int]:
        gen = TrafficGenerator(seed=31, feedback_ratio=0.0, vector_encoding=encoding, dim_override=384)
        items = [gen.execution() for _ in range(900)]
        wire_bytes = sum(len(it.value or b"") for it in items)
        records = [
            Record(topic="executions", partition=0, offset=i, key=it.key, value=events.decode("executions", it.value), raw=it.value)
            for i, it in enumerate(items)
        ]
        proc = DensityProcessor(DensitySettings(exact_threshold=128, anomaly_min_logs=50, select_interval_s=1.0))
        for start in range(0, len(records), 100):
            proc.process(records[start:start + 100])
        out = proc.process([])
        assert not out.rejected
        return proc.golden(), wire_bytes

    (json_golden, json_bytes), (b64_golden, b64_bytes) = golden("json"), golden("b64")
    assert json_golden and json_golden == b64_golden
    assert b64_bytes < json_bytes / 2, (b64_bytes, json_bytes)
