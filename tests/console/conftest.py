"""The console's tests share one running loop (processor + console) per session: building it takes a minute."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream.runtime.broker import EmbeddedBroker

from tests.support.console import Stack, build


@pytest.fixture(scope="session")
def stack(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = build(broker.bootstrap, tmp_path_factory.mktemp("console-stack"))
    try:
        yield s
    finally:
        s.stop()
