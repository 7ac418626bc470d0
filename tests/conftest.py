"""Shared fixtures: one real embedded broker per test session, isolated topics per test."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.broker import EmbeddedBroker
from stream.config import RuntimeSettings, Settings
from stream.processing import Processor
from stream.runtime import Runtime
from stream.topics import TopicNames, ensure_topics


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_file=log) as b:
        yield b


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker of the test module's own (fault tests), so that a fault never reaches the shared one."""
    with EmbeddedBroker(log_file=tmp_path_factory.mktemp("own-broker") / "broker.log") as b:
        yield b


@pytest.fixture
def make_settings(broker: EmbeddedBroker, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the session broker with a prefix and group of their own."""
    tag = uuid.uuid4().hex[:8]

    def make(**changes: Any) -> Settings:
        runtime = changes.pop("runtime", {})
        base = dict(
            bootstrap=broker.bootstrap,
            topic_prefix=f"t{tag}.",
            group_id=f"g{tag}",
            state_dir=tmp_path / "state",
            metrics_port=0,
            partitions=3,
            runtime=RuntimeSettings(**{"poll_timeout_ms": 100, "commit_interval_s": 0.2, "checkpoint_interval_s": 1.0, "session_timeout_ms": 3000, **runtime}),
        )
        base.update(changes)
        return Settings(**base)

    return make


@pytest.fixture
async def topics(make_settings: Callable[..., Settings]) -> TopicNames:
    s = make_settings()
    names = TopicNames(s.topic_prefix)
    await ensure_topics(s.bootstrap, names, s.partitions)
    return names


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
