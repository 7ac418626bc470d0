"""Running the runtime in a test: wait for a condition, run processors in the background, read a metric."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from stream.contract.config import Settings
from stream.contract.processing import Processor
from stream.runtime.loop import Runtime


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.asynccontextmanager
async def running(settings: Settings, processors: list[Processor], **kwargs: Any) -> AsyncIterator[Runtime]:
    """Run a Runtime in the background; stop it gracefully on exit."""
    runtime = Runtime(settings, processors, **kwargs)
    task = asyncio.create_task(runtime.run())
    try:
        await wait_for(lambda: runtime.ready or task.done(), timeout=60, what="the runtime to join its group")
        if task.done():
            task.result()
        yield runtime
    finally:
        runtime.stop()
        await asyncio.wait_for(task, timeout=60)


def metric(runtime: Runtime, name: str, **labels: str) -> float:
    """Sum of a metric's samples matching ``labels``, read from the runtime's registry."""
    total = 0.0
    for family in runtime.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def count_requests(client: Any, kind: str) -> list[float]:
    """Wrap an aiokafka client's ``send`` so that every request of ``kind`` (e.g. "FetchRequest",
    "ProduceRequest", any version) it sends is noted, at the loop's time, in the returned list."""
    sent: list[float] = []
    send = client.send

    async def counting_send(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        if type(request).__name__.startswith(kind):
            sent.append(asyncio.get_running_loop().time())
        return await send(node_id, request, *args, **kwargs)

    client.send = counting_send
    return sent
