"""Feedback pairs for the engine-2 tests, from the deterministic traffic generator or built by hand."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from processors.feedback.pairs import Pair, is_heldout
from stream.contract.events import Feedback
from stream.tools.traffic import TrafficGenerator


def traffic_feedback(seed: int = 7, events: int = 6000) -> dict[str, list[Feedback]]:
    """Feedback events per function, as the demo's traffic produces them."""
    gen = TrafficGenerator(seed=seed, feedback_ratio=0.08)
    out: dict[str, list[Feedback]] = {}
    for item in gen.take(events):
        if item.topic == "feedback" and isinstance(item.event, Feedback):
            out.setdefault(item.event.function_name, []).append(item.event)
    return out


def traffic_pairs(seed: int = 7, events: int = 6000) -> dict[str, list[Pair]]:
    return {fn: [Pair.of(f) for f in fbs] for fn, fbs in traffic_feedback(seed, events).items()}


def uuids(n: int, *, heldout: bool | None = None, fraction: float = 0.2, tag: str = "p") -> list[str]:
    """``n`` pair ids, optionally only ones that the split puts in (or out of) the held-out part."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        u = f"{tag}-{i}"
        i += 1
        if heldout is None or is_heldout(u, fraction) == heldout:
            out.append(u)
    return out


_SUBJECTS = ("invoice", "parcel", "password", "refund", "account", "order", "upgrade", "export", "login", "plan")
_VERBS = ("was updated", "is delayed", "was reset", "is on its way", "needs a check", "was approved", "is ready")
_EXTRA = (
    "We are constantly improving our services.",
    "Our team works around the clock for you.",
    "Thank you for choosing our products today.",
    "Feel free to browse our help centre for more.",
    "Have a wonderful and productive day ahead.",
)


def shortened_pairs(n: int, seed: int = 1) -> list[Pair]:
    """Answers users always cut to their first sentence (what is cut varies from pair to pair)."""
    rng = random.Random(seed)
    pairs = []
    for i, u in enumerate(uuids(n, tag=f"short{seed}")):
        first = f"Your {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} (case {i})."
        tail = " ".join(rng.sample(_EXTRA, rng.randint(1, 3)))
        pairs.append(Pair(u, f"{first} {tail}", first))
    return pairs


def feedback_event(fn: str, bad: str, fixed: str, uuid: str, minute: int = 0) -> Feedback:
    return Feedback(
        uuid=uuid, function_name=fn, bad_output=bad, fixed_output=fixed,
        timestamp_utc=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minute),
    )
