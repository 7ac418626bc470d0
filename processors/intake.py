"""Counts and validates the input topics per function.

This is the processor ``vector-trainer run`` uses for topics whose engine is not
enabled: it does not select, synthesise or train anything.  It keeps per-function
counts (checkpointed per partition) and dead-letters vectors whose dimension
differs from the function's first one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from stream.deadletter import WRONG_DIMENSION
from stream.events import ExecutionLog
from stream.processing import FROM_COMMITTED, Processor, Record, Rejection, Result

from .dimensions import DimensionGuard


class _PartitionState(msgspec.Struct):
    counts: dict[str, dict[str, int]] = {}
    dims: dict[str, int] = {}


class IntakeCounter(Processor):
    """Per-function, per-status counts of valid input events; nothing is emitted."""

    name: ClassVar[str] = "intake"
    stateful: ClassVar[bool] = True

    def __init__(self, inputs: tuple[str, ...] = ("executions", "feedback"), vector_dim: int | None = None) -> None:
        self.inputs = inputs  # type: ignore[misc]
        self._vector_dim = vector_dim
        self._counts: dict[tuple[str, int], dict[str, Counter[str]]] = {}
        self._guards: dict[tuple[str, int], DimensionGuard] = {}

    def process(self, records: list[Record]) -> Result:
        result = Result()
        for record in records:
            key = (record.topic, record.partition)
            event = record.value
            if isinstance(event, ExecutionLog) and event.vector is not None:
                guard = self._guards.setdefault(key, DimensionGuard(self._vector_dim))
                reason = guard.check(event.function_name, len(event.vector))
                if reason is not None:
                    result.rejected.append(Rejection(record, WRONG_DIMENSION, reason))
                    continue
            status = getattr(event, "status", "FEEDBACK")
            self._counts.setdefault(key, {}).setdefault(event.function_name, Counter())[status] += 1
        return result

    def counts(self) -> dict[str, dict[str, int]]:
        """Totals over owned partitions: {function: {status: n}}."""
        out: dict[str, Counter[str]] = {}
        for per_fn in self._counts.values():
            for fn, c in per_fn.items():
                out.setdefault(fn, Counter()).update(c)
        return {fn: dict(c) for fn, c in sorted(out.items())}

    def save_state(self, topic: str, partition: int, directory: Path) -> None:
        key = (topic, partition)
        state = _PartitionState(
            counts={fn: dict(c) for fn, c in self._counts.get(key, {}).items()},
            dims=dict(self._guards[key].dims) if key in self._guards else {},
        )
        (directory / "intake.json").write_bytes(msgspec.json.encode(state))

    def load_state(self, topic: str, partition: int, directory: Path | None) -> int:
        key = (topic, partition)
        if directory is not None:
            state = msgspec.json.decode((directory / "intake.json").read_bytes(), type=_PartitionState)
            self._counts[key] = {fn: Counter(c) for fn, c in state.counts.items()}
            self._guards[key] = DimensionGuard(self._vector_dim, dict(state.dims))
        else:
            self._counts[key] = {}
            self._guards[key] = DimensionGuard(self._vector_dim)
        return FROM_COMMITTED

    def release(self, topic: str, partition: int) -> None:
        self._counts.pop((topic, partition), None)
        self._guards.pop((topic, partition), None)

    def status(self) -> dict[str, Any]:
        return {"functions": self.counts()}
