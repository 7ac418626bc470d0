"""The wire format of vectors: bytes and decode time of 384-d execution logs with JSON floats
(the default contract) against ``vector_b64`` (base64 of little-endian float32), in one process."""

from __future__ import annotations

import time
from typing import Any

from stream.contract import events
from stream.tools.traffic import TrafficGenerator


def _values(encoding: str, n: int) -> list[bytes]:
    gen = TrafficGenerator(seed=3, feedback_ratio=0.0, dim_override=384, vector_encoding=encoding)
    out: list[bytes] = []
    while len(out) < n:
        item = gen.execution()
        if item.event is not None and item.event.vector is not None and item.value is not None:
            out.append(item.value)
    return out


def _decode_s(values: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for raw in values:
            events.decode("executions", raw)
        best = min(best, time.perf_counter() - started)
    return best


def run(ctx: Any) -> dict[str, Any]:
    n = 500 if ctx.quick else 3000
    as_json, as_b64 = _values("json", n), _values("b64", n)
    decoded_json = [events.decode("executions", v) for v in as_json]
    decoded_b64 = [events.decode("executions", v) for v in as_b64]
    identical = all(a.vector == b.vector for a, b in zip(decoded_json, decoded_b64, strict=True))
    rounds = 3 if ctx.quick else 5
    json_s, b64_s = _decode_s(as_json, rounds), _decode_s(as_b64, rounds)
    json_bytes, b64_bytes = sum(map(len, as_json)) / n, sum(map(len, as_b64)) / n
    return {
        "vector_dim": 384,
        "logs": n,
        "vectors_identical": identical,
        "bytes_per_log_json": round(json_bytes),
        "bytes_per_log_b64": round(b64_bytes),
        "bytes_b64_over_json": round(b64_bytes / json_bytes, 3),
        "decode_us_per_log_json": round(json_s / n * 1e6, 1),
        "decode_us_per_log_b64": round(b64_s / n * 1e6, 1),
        "decode_speedup_b64_over_json": round(json_s / b64_s, 2),
    }
