"""The contract between the runtime and the engines.

A :class:`Processor` is pure logic: it receives decoded records of its input topics
and returns what to emit (:class:`Output`) and what to dead-letter
(:class:`Rejection`).  It never talks to Kafka, so it is tested with plain calls.

The runtime calls every method of every processor from one worker thread, one call
at a time, so processors need no locks (and hnswlib indexes are never touched
from two threads).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .services import Service

# Where a stateful processor wants to resume a partition when it has no checkpoint.
FROM_BEGINNING = -2
FROM_COMMITTED = -1
# Returned by load_state when the checkpoint it was given cannot be used (e.g. it was built
# under settings that shaped the state differently): the runtime then replays from the beginning.
REBUILD = -3


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded input record."""

    topic: str  # logical topic name, e.g. "executions"
    partition: int
    offset: int
    key: bytes | None
    value: Any  # the decoded event (a msgspec Struct), or None for a tombstone
    raw: bytes | None
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce.  ``value=None`` is a tombstone (compacted topics only)."""

    topic: str  # logical topic name
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input record the processor refuses; the runtime dead-letters it."""

    record: Record
    error_type: str  # short, bounded vocabulary: it becomes a metric label
    error: str


@dataclass(slots=True)
class Result:
    outputs: list[Output] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def extend(self, other: Result) -> None:
        self.outputs.extend(other.outputs)
        self.rejected.extend(other.rejected)


class Processor(ABC):
    """A stream processor: a name, its input topics, and a ``process`` method.

    Stateful processors also implement ``save_state``/``load_state``/``release``;
    the runtime stores what they write together with the input offsets it reflects,
    so that after a restart or a rebalance the partition resumes exactly there.
    """

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    stateful: ClassVar[bool] = False

    @abstractmethod
    def process(self, records: list[Record]) -> Result:
        """Handle records of one topic-partition, in offset order.

        Bad input must be returned as a :class:`Rejection`, never raised.
        """

    def tick(self, now: float) -> Result:
        """Called at least once per poll interval; time-driven work (debounce, TTL)."""
        return Result()

    def save_state(self, topic: str, partition: int, directory: Path) -> None:
        """Write the state of one partition into the (empty, private) ``directory``."""

    def load_state(self, topic: str, partition: int, directory: Path | None) -> int:
        """Take ownership of a partition, from a checkpoint directory if there is one.

        Return where to resume when there is no checkpoint: :data:`FROM_COMMITTED`
        (the group's committed offset) or :data:`FROM_BEGINNING` (replay the topic to
        rebuild state).  With a checkpoint the runtime resumes at its stored offset,
        unless the processor returns :data:`REBUILD` (it could not use the checkpoint).
        """
        return FROM_COMMITTED

    def release(self, topic: str, partition: int) -> None:
        """Forget a partition that was revoked (its state was saved just before)."""

    def status(self) -> dict[str, Any]:
        """A small JSON-able summary for logs and the ready endpoint."""
        return {}

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        """Register the processor's own metrics in the runtime's registry (called once, before ``run``)."""

    def services(self) -> Sequence[Service]:
        """Background services this processor needs (slow async I/O); the runtime runs them."""
        return ()
