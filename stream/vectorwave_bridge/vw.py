"""Lazy access to the installed ``vectorwave`` package (an optional extra).

Everything VectorWave-specific that the bridge touches goes through here, so the
rest of vector-trainer runs without it and a missing install fails with one clear
message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.contract import events
from stream.contract.deadletter import DecodeFailure, dead_letter
from stream.contract.processing import Output
from stream.contract.topics import DLQ

INSTALL_HINT = "the VectorWave bridge needs the 'vectorwave' package: pip install 'vector-trainer[vectorwave]'"

# VectorWave names every stored object by a canonical UUID; accept nothing else as an
# id we pass to it (its Lite store builds SQL filters from ids by string formatting).
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class VectorWaveMissing(RuntimeError):
    """``vectorwave`` is not importable."""


def configure(mode: str | None = None, lite_path: Path | None = None) -> None:
    """Point VectorWave at a store before it first reads its environment.

    VectorWave is configured only by environment variables (``VECTORWAVE_MODE``,
    ``VECTORWAVE_LITE_PATH``) that it caches on first use; values left unset here
    keep whatever the environment already says.
    """
    if mode:
        os.environ["VECTORWAVE_MODE"] = mode
    if lite_path is not None:
        os.environ["VECTORWAVE_LITE_PATH"] = str(lite_path)


def require() -> Any:
    """Import and return the ``vectorwave`` package, or raise :class:`VectorWaveMissing`."""
    try:
        import vectorwave
    except ImportError as exc:
        raise VectorWaveMissing(f"{INSTALL_HINT} ({exc})") from exc
    return vectorwave


def settings() -> Any:
    """VectorWave's own (cached) settings object: collection names, custom properties."""
    require()
    from vectorwave.models.db_config import get_weaviate_settings

    return get_weaviate_settings()


def store() -> Any:
    """VectorWave's configured ``VectorStore`` (LanceDB in Lite mode, Weaviate in Pro mode)."""
    require()
    from vectorwave.store import get_vector_store

    return get_vector_store()


def tag_keys() -> frozenset[str]:
    """Custom properties declared in VectorWave's ``.weaviate_properties``: call labels, not inputs."""
    custom = settings().custom_properties or {}
    return frozenset(custom)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from, for dead letters of records that never were on a Kafka topic."""

    name: str  # e.g. "vectorwave:VectorWaveExecutions"


def bridge_dead_letter(source: Source, key: bytes, raw: bytes, failure: DecodeFailure, max_value_bytes: int) -> Output:
    """A dead letter for a VectorWave record that cannot become a valid event (partition/offset -1: not from Kafka)."""
    letter = dead_letter(
        source_topic=source.name,
        partition=-1,
        offset=-1,
        raw=raw,
        error_type=failure.error_type,
        error=failure.error,
        max_value_bytes=max_value_bytes,
        processor="vectorwave-bridge",
    )
    return Output(DLQ, key, events.encode(letter))
