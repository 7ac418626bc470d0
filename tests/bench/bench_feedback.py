"""Engine 2: held-out fix rate on the demo traffic's feedback, and synthesis time.

The rules are synthesised from the training part only (80 %, a hash of each pair's
uuid); the figures are for the held-out 20 %, which synthesis never saw: exact-match
rate and mean word-level similarity to ``fixed_output`` without the hook (before) and
with it (after).  ``fix_rate`` is the share of held-out pairs that were wrong before
and are exactly right after.
"""

from __future__ import annotations

import time

from processors.feedback.diff import similarity
from processors.feedback.pairs import Pair, split
from processors.feedback.ruleset import apply_output
from processors.feedback.synthesizer import RuleSetSynthesizer
from stream.contract.events import Feedback
from stream.tools.traffic import TrafficGenerator


def heldout_report(seed: int = 7, events: int = 9000, heldout_fraction: float = 0.2) -> dict[str, dict[str, float]]:
    """Per function: held-out pairs, exact match and similarity before → after, fix rate, synthesis ms."""
    gen = TrafficGenerator(seed=seed, feedback_ratio=0.08, bad_ratio=0.01)
    per_fn: dict[str, list[Pair]] = {}
    for item in gen.take(events):
        if item.topic == "feedback" and isinstance(item.event, Feedback):
            per_fn.setdefault(item.event.function_name, []).append(Pair.of(item.event))
    out: dict[str, dict[str, float]] = {}
    for fn, pairs in sorted(per_fn.items()):
        train, held = split(pairs, heldout_fraction)
        started = time.perf_counter()
        rules = RuleSetSynthesizer().synthesize(train).rules
        ms = (time.perf_counter() - started) * 1000
        after = [apply_output(rules, p.bad) for p in held]
        wrong_before = [p for p in held if p.bad != p.fixed]
        out[fn] = {
            "pairs": len(pairs),
            "heldout_pairs": len(held),
            "rules": len(rules),
            "heldout_exact_before": round(sum(p.bad == p.fixed for p in held) / len(held), 3),
            "heldout_exact_after": round(sum(a == p.fixed for a, p in zip(after, held, strict=True)) / len(held), 3),
            "heldout_similarity_before": round(sum(similarity(p.bad, p.fixed) for p in held) / len(held), 3),
            "heldout_similarity_after": round(sum(similarity(a, p.fixed) for a, p in zip(after, held, strict=True)) / len(held), 3),
            "fix_rate": round(
                sum(apply_output(rules, p.bad) == p.fixed for p in wrong_before) / max(1, len(wrong_before)), 3
            ),
            "synthesis_ms": round(ms, 1),
        }
    return out


def run(ctx) -> dict:  # type: ignore[no-untyped-def]
    return {"heldout": heldout_report(events=3000 if ctx.quick else 9000)}


if __name__ == "__main__":
    import json

    print(json.dumps(heldout_report(), indent=2))
