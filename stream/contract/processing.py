"""The contract between the runtime and the engines: processors and their background services.

A :class:`Processor` is pure logic: it receives decoded records of its input topics
and returns what to emit (:class:`Output`) and what to dead-letter
(:class:`Rejection`).  It never talks to Kafka, so it is tested with plain calls.

The runtime calls every method of every processor from one worker thread, one call
at a time, so processors need no locks (and hnswlib indexes are never touched
from two threads).

Some work is slow I/O that must not block that thread (a fine-tuning job polled for
an hour).  A processor returns it as a :class:`Service`: an async task the runtime
starts with the consumer loop and stops before the final checkpoint.  A service
talks to the processors and to Kafka only through its :class:`ServiceContext`,
whose Kafka side the runtime injects:

* :meth:`ServiceContext.call` runs a function on the processors' worker thread, so
  processor state is still touched by one thread only;
* :meth:`ServiceContext.apply` does the same for a function returning a
  :class:`Result` and produces its outputs (acknowledged) before releasing the
  runtime's lock, so a checkpoint never saves state whose outputs are not on their
  topics yet;
* :meth:`ServiceContext.read_topic` reads a whole topic (to rebuild state).

A service that raises is logged, counted and restarted after a back-off; it
never takes the consumer loop down.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from .config import Settings
from .topics import TopicNames

T = TypeVar("T")

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


class TopicRecord(Protocol):
    """A record read back from a topic (what :meth:`ServiceContext.read_topic` returns)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


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
        """Time-driven work (debounce, TTL): called after a fetch once ``runtime.tick_interval_s`` has passed."""
        return Result()

    def save_state(self, topic: str, partition: int, directory: Path) -> None:
        """Write the state of one partition into the (empty, private) ``directory``."""

    def capture_state(self, topic: str, partition: int) -> Callable[[Path], None] | None:
        """Optional: take a copy of one partition's state now and return what writes it, as
        :meth:`save_state` would have, into a directory later.  The copy is taken on the worker
        thread; the writing runs on another thread while ``process`` goes on, so it must touch
        nothing ``process`` changes.  None (the default): the runtime calls :meth:`save_state` on
        the worker instead."""
        return None

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

    def services(self) -> Sequence[Service]:
        """Background services this processor needs (slow async I/O); the runtime runs them."""
        return ()


class ServiceContext:
    """What a running service may use: settings, the worker thread, the producer, topics, a stop signal.

    The runtime builds it with its own functions (``call``, ``apply``, ``emit``, ``read``), so
    a service, like its processor, never touches Kafka itself.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        names: TopicNames,
        stopping: asyncio.Event,
        call: Callable[[Callable[[], Any]], Awaitable[Any]],
        apply: Callable[[Callable[[], Result]], Awaitable[Result]],
        emit: Callable[[list[Output]], Awaitable[None]],
        read: Callable[[str, float], Awaitable[Sequence[TopicRecord]]],
    ) -> None:
        self.settings = settings
        self.names = names
        self.stopping = stopping
        self._call = call
        self._apply = apply
        self._emit = emit
        self._read = read

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the processors' worker thread and return its value."""
        return await self._call(lambda: fn(*args))  # type: ignore[no-any-return]

    async def apply(self, fn: Callable[..., Result], *args: Any) -> Result:
        """Run ``fn(*args)`` on the worker thread and produce the outputs it returns, atomically
        with respect to checkpoints and rebalances."""
        return await self._apply(lambda: fn(*args))

    async def emit(self, outputs: list[Output]) -> None:
        """Produce outputs and wait until the broker acknowledges them."""
        await self._emit(outputs)

    async def read_topic(self, logical: str, idle_timeout: float = 1.0) -> list[TopicRecord]:
        """Every record currently in a topic (all partitions, no consumer group): for rebuilding state."""
        return list(await self._read(self.names.physical(logical), idle_timeout))

    async def sleep(self, seconds: float) -> bool:
        """Sleep, waking early when the runtime stops; True if it is stopping."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return False
        return True


class Service(ABC):
    """An async task run beside the consumer loop (see the module docstring)."""

    name: ClassVar[str]

    @abstractmethod
    async def run(self, ctx: ServiceContext) -> None:
        """Work until ``ctx.stopping`` is set, then return promptly (the runtime waits a grace period)."""
