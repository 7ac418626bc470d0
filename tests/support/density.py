"""Clustered test data and the exact O(n²) reference density for the density engine's tests and benchmark."""

from __future__ import annotations

import uuid as uuid_mod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from processors.density.vectors import normalise
from stream.contract.events import ExecutionLog
from stream.contract.processing import Record


@dataclass(frozen=True)
class Clustered:
    vectors: np.ndarray  # float32 unit rows, as the index stores them
    labels: np.ndarray  # cluster id, or -1 for an isolated point


def clustered(
    n: int, dim: int, clusters: int, *, spread: float = 0.5, isolated: int = 0, seed: int = 0
) -> Clustered:
    """``clusters`` Gaussian blobs on the sphere (spread ~ noise norm) plus ``isolated`` random points.

    Spreads vary ±50 % per cluster so that within-cluster distances straddle epsilon.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    label = rng.integers(0, clusters, n - isolated)
    spreads = rng.uniform(spread * 0.5, spread * 1.5, clusters)[label][:, None]
    x = centres[label] + rng.standard_normal((n - isolated, dim)) * (spreads / np.sqrt(dim))
    if isolated:
        x = np.vstack([x, rng.standard_normal((isolated, dim))])
        label = np.concatenate([label, np.full(isolated, -1)])
    order = rng.permutation(n)
    unit, ok = normalise(x[order])
    assert ok.all()
    return Clustered(unit, label[order])


def exact_densities(vectors: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The seed's formula, exactly: D(i) = Σ_{j≠i, 1-cos(i,j) <= eps} cos(i,j), in float64; and neighbour counts."""
    v = vectors.astype(np.float64)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    inside = sims >= 1.0 - epsilon
    return np.where(inside, sims, 0.0).sum(axis=1), inside.sum(axis=1)


def logs(
    vectors: np.ndarray,
    *,
    function: str = "fn",
    statuses: list[str] | None = None,
    start: datetime | None = None,
    step_ms: int = 50,
    seed: int = 0,
) -> list[ExecutionLog]:
    """One execution log per vector, with deterministic uuids, inputs and timestamps."""
    rng = np.random.default_rng(seed)
    t0 = start or datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i, v in enumerate(vectors):
        out.append(
            ExecutionLog(
                uuid=str(uuid_mod.UUID(int=int(rng.integers(0, 2**62)) << 64 | i, version=4)),
                function_name=function,
                timestamp_utc=t0 + timedelta(milliseconds=step_ms * i),
                status=statuses[i] if statuses else "SUCCESS",  # type: ignore[arg-type]
                inputs={"q": f"question {i}"},
                return_value=f"answer {i}",
                vector=[float(x) for x in v],
            )
        )
    return out


def records(events: list[ExecutionLog], partition: int = 0, start_offset: int = 0) -> list[Record]:
    return [
        Record("executions", partition, start_offset + i, e.function_name.encode(), e, None)
        for i, e in enumerate(events)
    ]


def write_jsonl(path, events: list[ExecutionLog]) -> None:  # type: ignore[no-untyped-def]
    """Execution logs as ``extract`` reads them: one JSON object per line."""
    import msgspec

    enc = msgspec.json.Encoder()
    with open(path, "wb") as fh:
        for e in events:
            fh.write(enc.encode(e) + b"\n")


def _golden_vectors(n: int, dim: int, seed: int, duplicates: int) -> tuple[np.ndarray, list[str]]:
    data = clustered(n, dim, max(4, n // 500), spread=0.5, isolated=n // 100, seed=seed)
    vectors = data.vectors.copy()
    rng = np.random.default_rng(seed + 1)
    if duplicates:
        dst = rng.choice(np.arange(n // 4, n), size=duplicates, replace=False)
        vectors[dst] = vectors[rng.integers(0, n // 4, size=duplicates)]
    statuses = ["ERROR" if x < 0.1 else "SUCCESS" for x in rng.random(n)]
    return vectors, statuses


def golden_inputs(n: int, dim: int = 384, *, seed: int = 11, duplicates: int = 0) -> list[ExecutionLog]:
    """One function's clustered logs (the benchmarks' shape), some ERROR, ``duplicates`` copies of earlier vectors."""
    vectors, statuses = _golden_vectors(n, dim, seed, duplicates)
    return logs(vectors, function="fn", statuses=statuses, seed=seed)


def golden_lines_b64(n: int, dim: int = 384, *, seed: int = 11, chunk: int = 5000):  # type: ignore[no-untyped-def]
    """The same logs as :func:`golden_inputs`, as JSON lines with ``vector_b64``, made a chunk at a time."""
    import msgspec

    from stream.contract.events import vector_b64

    vectors, statuses = _golden_vectors(n, dim, seed, 0)
    for start in range(0, n, chunk):
        part = logs(vectors[start : start + chunk], function="fn", statuses=statuses[start : start + chunk], seed=seed + start)
        for e in part:
            d = msgspec.to_builtins(e)
            d["vector_b64"] = vector_b64(d.pop("vector"))
            yield msgspec.json.encode(d)
