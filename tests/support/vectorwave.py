"""The real ``vectorwave`` package in Lite mode, for the VectorWave bridge tests.

VectorWave is configured only through environment variables that it caches on
first use, so they are set here, before anything imports it; each test gets a
fresh LanceDB directory by clearing VectorWave's caches (the ``lite`` fixture of
``tests/vectorwave/conftest.py``).  No server, no network, no model: executions are
logged without a vectorizer (Lite stores zeros, which the bridge treats as "no
vector") or with vectors the test provides.

If ``vectorwave`` is not installed these tests fail (they never skip): ``make
venv`` installs it, so a missing package means a broken install.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.update(
    {
        "VECTORWAVE_MODE": "lite",
        "VECTORWAVE_QUIET": "1",  # no banner on stderr
        "VECTORIZER": "none",  # never load an embedding model
        "FLUSH_INTERVAL_SECONDS": "0.1",  # VectorWave's batch writer flushes every 0.1 s
        "VECTORWAVE_LITE_PATH": "/nonexistent-until-a-test-sets-it",
        "VECTORWAVE_RUN_DIR": tempfile.mkdtemp(prefix="vectorwave-run-"),  # its PID file, not in ~/.vectorwave
    }
)

try:
    import vectorwave  # noqa: F401  (the real package; failing here is the point)
    from vectorwave.batch import batch as vw_batch
    from vectorwave.models import db_config
    from vectorwave.store import factory as vw_store_factory
    from vectorwave.vectorizer import factory as vw_vectorizer_factory
    from vectorwave.vectorizer.base import BaseVectorizer
except ImportError as exc:  # pragma: no cover - a broken install must be loud
    raise ImportError(f"the VectorWave bridge tests need the real 'vectorwave' package (make venv installs it): {exc}") from exc


def reset_vectorwave() -> None:
    """Drop VectorWave's cached settings, store and batch writer so the next use re-reads the environment."""
    if vw_batch.get_batch_manager.cache_info().currsize:
        vw_batch.get_batch_manager().shutdown()
    vw_batch.get_batch_manager.cache_clear()
    vw_store_factory.get_vector_store.cache_clear()
    db_config.get_weaviate_settings.cache_clear()
    vw_vectorizer_factory.get_vectorizer.cache_clear()


@dataclass
class LiteStore:
    """A VectorWave Lite store of one test, read through VectorWave's own API."""

    path: Path

    @property
    def store(self) -> Any:
        return vw_store_factory.get_vector_store()

    @property
    def settings(self) -> Any:
        return db_config.get_weaviate_settings()

    def executions(self) -> list[Any]:
        return list(self.store.iterate(self.settings.EXECUTION_COLLECTION_NAME))

    def golden(self) -> list[Any]:
        return list(self.store.iterate(self.settings.GOLDEN_COLLECTION_NAME))

    def add_execution(self, uuid: str, properties: dict[str, Any], vector: list[float] | None = None) -> None:
        """Store an execution through VectorWave's own batch writer (as its tracer does)."""
        vw_batch.get_batch_manager().add_object(
            collection=self.settings.EXECUTION_COLLECTION_NAME, properties=properties, uuid=uuid, vector=vector
        )

    def wait_executions(self, n: int, timeout: float = 30.0) -> list[Any]:
        """VectorWave writes in the background: wait until ``n`` executions are stored."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.executions()
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


def hashing_vector(text: str, dim: int = 384) -> list[float]:
    """A deterministic feature-hashing embedding (no model): token counts in ``dim`` buckets, L2-normalised."""
    vec = [0.0] * dim
    for token in text.lower().split():
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
        vec[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


class HashingVectorizer(BaseVectorizer):
    """A VectorWave ``BaseVectorizer`` backed by :func:`hashing_vector`: vectors without downloading a model."""

    def embed(self, text: str) -> list[float]:
        return hashing_vector(text)

    def embed_batch(self, texts: list[str]) -> list[list[float]]:
        return [hashing_vector(t) for t in texts]
