"""Training datasets: ChatML JSONL from a function's golden set, split and written with a manifest.

The split is a pure function of each sample's uuid (a hash), so the same golden set
always gives the same files, on any instance, and a sample never moves from
validation to training when others join or leave the set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec


class Sample(msgspec.Struct, frozen=True):
    """One golden sample as training needs it (the GoldenSample's messages, plus what orders it)."""

    uuid: str
    selected_at: datetime
    messages: tuple[tuple[str, str], ...]  # (role, content)
    strategy: str = "steady"

    def chatml(self) -> dict[str, Any]:
        return {"messages": [{"role": role, "content": content} for role, content in self.messages]}


def invalid_messages(messages: Sequence[tuple[str, str]]) -> str | None:
    """Why a sample cannot be a fine-tuning example (OpenAI's chat format), or None."""
    if not messages:
        return "messages is empty"
    if messages[-1][0] != "assistant":
        return "the last message must be the assistant's answer (the target to learn)"
    if not messages[-1][1].strip():
        return "the assistant message is empty"
    if not any(role == "user" for role, _ in messages):
        return "there is no user message"
    return None


def in_validation(uuid: str, fraction: float) -> bool:
    """Deterministic split: the first 8 bytes of sha256(uuid) as a fraction of 2**64."""
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(uuid.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


def split(samples: Iterable[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    """(train, validation), each in a stable order (selection time, then uuid)."""
    ordered = sorted(samples, key=lambda s: (s.selected_at, s.uuid))
    train = [s for s in ordered if not in_validation(s.uuid, fraction)]
    val = [s for s in ordered if in_validation(s.uuid, fraction)]
    return train, val


def slug(function_name: str) -> str:
    """A directory name for a function: readable, safe on any filesystem, unique (hash suffix)."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", function_name)[:48].strip("_") or "fn"
    return f"{readable}-{hashlib.sha256(function_name.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True)
class Dataset:
    """A written dataset: where its files are and what is in them."""

    job_id: str
    function_name: str
    directory: Path
    train_path: Path
    valid_path: Path | None
    train: tuple[Sample, ...]
    valid: tuple[Sample, ...]
    trained_through: datetime

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_val(self) -> int:
        return len(self.valid)

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"


def _write_jsonl(path: Path, samples: Sequence[Sample]) -> str:
    body = "".join(json.dumps(s.chatml(), ensure_ascii=False) + "\n" for s in samples).encode()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    return hashlib.sha256(body).hexdigest()


def write_dataset(
    *,
    root: Path,
    job_id: str,
    function_name: str,
    train: Sequence[Sample],
    valid: Sequence[Sample],
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """Write ``train.jsonl``, ``valid.jsonl`` (when there is validation data) and ``manifest.json``.

    The manifest names every sample (uuid and split) and the files' sha256, so a
    model can be traced back to exactly the data it was trained on.
    """
    directory = root / slug(function_name) / job_id
    directory.mkdir(parents=True, exist_ok=True)
    train_path = directory / "train.jsonl"
    train_sha = _write_jsonl(train_path, train)
    valid_path: Path | None = None
    valid_sha = None
    if valid:
        valid_path = directory / "valid.jsonl"
        valid_sha = _write_jsonl(valid_path, valid)
    everything = [*train, *valid]
    trained_through = max(s.selected_at for s in everything)
    manifest = {
        "job_id": job_id,
        "function_name": function_name,
        "format": "chatml-jsonl",
        "n_train": len(train),
        "n_val": len(valid),
        "train_file": train_path.name,
        "train_sha256": train_sha,
        "valid_file": valid_path.name if valid_path else None,
        "valid_sha256": valid_sha,
        "trained_through": trained_through.isoformat(),
        "split": "sha256(uuid) < validation_fraction -> validation",
        "samples": [{"uuid": s.uuid, "split": "train", "strategy": s.strategy} for s in train]
        + [{"uuid": s.uuid, "split": "valid", "strategy": s.strategy} for s in valid],
        **(extra or {}),
    }
    tmp = directory / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, directory / "manifest.json")
    return Dataset(
        job_id=job_id,
        function_name=function_name,
        directory=directory,
        train_path=train_path,
        valid_path=valid_path,
        train=tuple(train),
        valid=tuple(valid),
        trained_through=trained_through,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
