"""Background services: long-running async work next to the consumer loop.

Processors are pure and run on one worker thread; some work is slow I/O that must
not block it (a fine-tuning job polled for an hour).  A :class:`Service` is an
async task the runtime starts with the consumer loop and stops before the final
checkpoint.  It talks to the processors only through its :class:`ServiceContext`:

* :meth:`ServiceContext.call` runs a function on the processors' worker thread, so
  processor state is still touched by one thread only;
* :meth:`ServiceContext.apply` does the same for a function returning a
  :class:`~stream.processing.Result` and produces its outputs (acknowledged) before
  releasing the runtime's lock, so a checkpoint never saves state whose outputs
  are not on their topics yet.

A service that raises is logged, counted and restarted after a back-off; it
never takes the consumer loop down.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from prometheus_client import CollectorRegistry

from .config import Settings
from .processing import Output, Result
from .topics import TopicNames

log = logging.getLogger(__name__)

T = TypeVar("T")


class ServiceContext:
    """What a running service may use: settings, the worker thread, the producer, a stop signal."""

    def __init__(
        self,
        *,
        settings: Settings,
        names: TopicNames,
        registry: CollectorRegistry,
        stopping: asyncio.Event,
        call: Callable[[Callable[[], Any]], Awaitable[Any]],
        apply: Callable[[Callable[[], Result]], Awaitable[Result]],
        emit: Callable[[list[Output]], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.names = names
        self.registry = registry
        self.stopping = stopping
        self._call = call
        self._apply = apply
        self._emit = emit

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the processors' worker thread and return its value."""
        return await self._call(lambda: fn(*args))

    async def apply(self, fn: Callable[..., Result], *args: Any) -> Result:
        """Run ``fn(*args)`` on the worker thread and produce the outputs it returns, atomically
        with respect to checkpoints and rebalances."""
        return await self._apply(lambda: fn(*args))

    async def emit(self, outputs: list[Output]) -> None:
        """Produce outputs and wait until the broker acknowledges them."""
        await self._emit(outputs)

    async def read_topic(self, logical: str, idle_timeout: float = 1.0) -> list[Any]:
        """Every record currently in a topic (all partitions, no consumer group): for rebuilding state."""
        from .topic_io import read_topic

        assert self.settings.bootstrap is not None
        return await read_topic(self.settings.bootstrap, self.names.physical(logical), idle_timeout=idle_timeout)

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


async def supervise(service: Service, ctx: ServiceContext, on_crash: Callable[[], None], backoff_s: float = 1.0) -> None:
    """Run ``service`` until the runtime stops, restarting it (with back-off) when it raises."""
    delay = backoff_s
    while not ctx.stopping.is_set():
        try:
            await service.run(ctx)
            if not ctx.stopping.is_set():
                log.warning("service %s returned before the runtime stopped; restarting it", service.name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("service %s crashed; restarting it in %.1fs", service.name, delay)
            on_crash()
        if await ctx.sleep(delay):
            return
        delay = min(delay * 2, 60.0)
