"""Small processors used to test the runtime itself."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

from stream.contract.deadletter import WRONG_DIMENSION
from stream.contract.events import ExecutionLog
from stream.contract.processing import FROM_COMMITTED, Output, Processor, Record, Rejection, Result


class Echo(Processor):
    """Emits one record on ``golden`` per execution log (key function/uuid) and remembers what it saw."""

    name: ClassVar[str] = "echo"
    inputs: ClassVar[tuple[str, ...]] = ("executions",)

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def process(self, records: list[Record]) -> Result:
        out = Result()
        for r in records:
            self.seen.append((r.partition, r.offset))
            key = f"{r.value.function_name}/{r.value.uuid}".encode()
            out.outputs.append(Output("golden", key, json.dumps({"offset": r.offset, "partition": r.partition}).encode()))
        return out


class Tally(Processor):
    """Stateful: counts records per partition and checkpoints the count."""

    name: ClassVar[str] = "tally"
    inputs: ClassVar[tuple[str, ...]] = ("executions",)
    stateful: ClassVar[bool] = True

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.loaded_from: dict[int, Path | None] = {}

    def process(self, records: list[Record]) -> Result:
        for r in records:
            self.counts[r.partition] = self.counts.get(r.partition, 0) + 1
        return Result()

    def save_state(self, topic: str, partition: int, directory: Path) -> None:
        (directory / "count").write_text(str(self.counts.get(partition, 0)))

    def load_state(self, topic: str, partition: int, directory: Path | None) -> int:
        self.loaded_from[partition] = directory
        self.counts[partition] = int((directory / "count").read_text()) if directory else 0
        return FROM_COMMITTED

    def release(self, topic: str, partition: int) -> None:
        self.counts.pop(partition, None)


class Explodes(Processor):
    """Raises on records whose function name is 'boom' (a processor bug, not bad input)."""

    name: ClassVar[str] = "explodes"
    inputs: ClassVar[tuple[str, ...]] = ("executions",)

    def __init__(self) -> None:
        self.ok = 0

    def process(self, records: list[Record]) -> Result:
        for r in records:
            if r.value.function_name == "boom":
                raise RuntimeError("kaboom")
        self.ok += len(records)
        return Result()


class TickBomb(Processor):
    """Its tick() always raises: the loop must keep consuming."""

    name: ClassVar[str] = "tickbomb"
    inputs: ClassVar[tuple[str, ...]] = ("executions",)

    def __init__(self) -> None:
        self.seen = 0

    def process(self, records: list[Record]) -> Result:
        self.seen += len(records)
        return Result()

    def tick(self, now: float) -> Result:
        raise RuntimeError("tick bug")


class SlowTick(Processor):
    """Its tick() takes ``tick_s`` seconds every time (several syntheses due at once) and notes when it ran."""

    name: ClassVar[str] = "slowtick"
    inputs: ClassVar[tuple[str, ...]] = ("executions",)

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self.ticks: list[tuple[float, float]] = []

    def process(self, records: list[Record]) -> Result:
        return Result()

    def tick(self, now: float) -> Result:
        started = time.monotonic()
        time.sleep(self.tick_s)
        self.ticks.append((started, time.monotonic()))
        return Result()


class DimensionCheck(Processor):
    """Dead-letters execution logs whose vector dimension differs from their function's first one; emits nothing."""

    name: ClassVar[str] = "dimension-check"
    inputs: ClassVar[tuple[str, ...]] = ("executions",)

    def __init__(self) -> None:
        self.dims: dict[str, int] = {}

    def process(self, records: list[Record]) -> Result:
        out = Result()
        for r in records:
            log = r.value
            if isinstance(log, ExecutionLog) and log.vector is not None:
                expected = self.dims.setdefault(log.function_name, len(log.vector))
                if len(log.vector) != expected:
                    error = f"vector has {len(log.vector)} dimensions but {log.function_name!r} uses {expected} - at `$.vector`"
                    out.rejected.append(Rejection(r, WRONG_DIMENSION, error))
        return out
