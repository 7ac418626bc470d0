"""The trigger rule, as a pure function of a function's golden set and its job history.

A function gets a job when (1) none of its jobs is in flight, (2) its last decision
(job, export or refusal) is older than the cooldown, (3) at least ``threshold``
golden samples were selected after the newest sample of its last dataset, and
(4) the split leaves at least ``min_train_examples`` training examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .dataset import Sample, split
from .jobs import CONSUMED_DATA, JobRecord


@dataclass(frozen=True, slots=True)
class Decision:
    """Why a function fires or not; ``train``/``valid`` are set only when it fires."""

    fire: bool
    reason: str
    new_samples: int = 0
    train: tuple[Sample, ...] = ()
    valid: tuple[Sample, ...] = ()


def trained_through(jobs: Iterable[JobRecord]) -> datetime | None:
    """The newest sample time any earlier dataset of the function included."""
    times = [j.last.trained_through for j in jobs if j.status in CONSUMED_DATA and j.last.trained_through is not None]
    return max(times) if times else None


def new_since(samples: Iterable[Sample], cutoff: datetime | None) -> int:
    return sum(1 for s in samples if cutoff is None or s.selected_at > cutoff)


def decide(
    samples: Sequence[Sample],
    jobs: Sequence[JobRecord],
    *,
    now: float,
    threshold: int,
    cooldown_s: float,
    min_train_examples: int,
    validation_fraction: float,
) -> Decision:
    new = new_since(samples, trained_through(jobs))
    if any(j.active for j in jobs):
        return Decision(False, "a job is in flight", new)
    if jobs:
        last = max(jobs, key=lambda j: j.created_at)
        wait = cooldown_s - (now - last.created_at.timestamp())
        if wait > 0:
            return Decision(False, f"cooldown: {wait:.0f}s left", new)
    if new < threshold:
        return Decision(False, f"{new} new samples < threshold {threshold}", new)
    train, valid = split(samples, validation_fraction)
    if len(train) < min_train_examples:
        return Decision(False, f"{len(train)} training examples < minimum {min_train_examples}", new)
    return Decision(True, "threshold reached", new, tuple(train), tuple(valid))
