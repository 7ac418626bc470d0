"""Shared fixtures: one real embedded broker per test session, isolated topics per test.

Helpers that tests import live in :mod:`tests.support`, never here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.contract.config import RuntimeSettings, Settings
from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.kafka import ensure_topics


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
