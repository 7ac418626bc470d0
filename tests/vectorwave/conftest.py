"""Fixtures of the VectorWave bridge tests: a fresh VectorWave Lite store per test.

The package itself, configured for Lite mode, and the helpers tests import are in
:mod:`tests.support.vectorwave`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.vectorwave import HashingVectorizer, LiteStore, hashing_vector, reset_vectorwave


@pytest.fixture
def lite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiteStore]:
    path = tmp_path / "vectorwave-lance"
    monkeypatch.setenv("VECTORWAVE_LITE_PATH", str(path))
    monkeypatch.setenv("VECTORWAVE_RUN_DIR", str(tmp_path / "vectorwave-run"))
    monkeypatch.chdir(tmp_path)  # VectorWave writes .vectorwave_functions_cache.json in the working directory
    reset_vectorwave()
    try:
        yield LiteStore(path)
    finally:
        reset_vectorwave()


@pytest.fixture
def hashing_vectorizer(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[float]]:
    """Make VectorWave embed with :class:`HashingVectorizer` (its tracer looks the vectorizer up by name)."""
    from vectorwave.monitoring import tracer

    vectorizer = HashingVectorizer()
    monkeypatch.setattr(tracer, "get_vectorizer", lambda: vectorizer)
    return hashing_vector
