"""Feedback pairs and their deterministic train / held-out split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stream.contract.events import Feedback


@dataclass(frozen=True, slots=True)
class Pair:
    """One correction: what the LLM said and what the user wanted instead."""

    uuid: str
    bad: str
    fixed: str

    @classmethod
    def of(cls, feedback: Feedback) -> Pair:
        return cls(feedback.uuid, feedback.bad_output, feedback.fixed_output)


def is_heldout(uuid: str, fraction: float) -> bool:
    """Whether a pair is held out of synthesis: a hash of its uuid, so every replay agrees."""
    if fraction <= 0:
        return False
    bucket = int.from_bytes(hashlib.sha256(uuid.encode("utf-8")).digest()[:4], "big") / 2**32
    return bucket < fraction


def split(pairs: Iterable[Pair], fraction: float) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out) in the given order."""
    train: list[Pair] = []
    heldout: list[Pair] = []
    for pair in pairs:
        (heldout if is_heldout(pair.uuid, fraction) else train).append(pair)
    return train, heldout


def pair_uuid(bad: str, fixed: str, index: int) -> str:
    """A stable id for pairs that come without one (``synthesize --pairs`` files)."""
    digest = hashlib.sha256(f"{index}\x00{bad}\x00{fixed}".encode()).hexdigest()
    return f"pair-{digest[:24]}"


def texts(pairs: Sequence[Pair]) -> list[tuple[str, str]]:
    return [(p.bad, p.fixed) for p in pairs]
