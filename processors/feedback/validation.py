"""Validation of a candidate rule set before it is released.

Every pair, held-out part included, is replayed through the candidate and through
the current release.  Scores are against ``fixed_output``: exact-match rate and
mean character similarity, *before* (the LLM's own output, no hook) and *after*
(the candidate).  The release is refused when any pair scores lower under the
candidate than under the current release, or when the held-out part's similarity
or exact-match rate would drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from processors.feedback.ruleset import Rule, apply_output
from stream.contract.events import HookValidation
from stream.contract.sensors import HELDOUT_DROP, NO_PAIRS, WORSE_PAIRS  # why a candidate is refused (a metric label)

from .diff import similarity
from .pairs import Pair, is_heldout

EPS = 1e-9



@dataclass(slots=True)
class ValidationReport:
    validation: HookValidation
    ok: bool
    reason: str | None = None  # one of the refusal reasons above when not ok
    worse: list[str] = field(default_factory=list)  # uuids of pairs the candidate makes worse than current

    def summary(self) -> str:
        v = self.validation
        return (
            f"{v.pairs} pairs ({v.heldout_pairs} held out): exact {v.exact_match_before:.3f}→{v.exact_match_after:.3f}, "
            f"similarity {v.similarity_before:.3f}→{v.similarity_after:.3f}; held-out exact "
            f"{v.heldout_exact_match_before:.3f}→{v.heldout_exact_match_after:.3f}, similarity "
            f"{v.heldout_similarity_before:.3f}→{v.heldout_similarity_after:.3f}; {v.worse_pairs} worse than current"
        )


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def validate(candidate: list[Rule], current: list[Rule], pairs: Sequence[Pair], heldout_fraction: float) -> ValidationReport:
    """Replay ``pairs`` through ``candidate`` and ``current``; decide whether the candidate may be released."""
    raw_sim: list[float] = []
    raw_exact: list[float] = []
    new_sim: list[float] = []
    new_exact: list[float] = []
    held: list[int] = []
    worse: list[str] = []
    cur_sim: list[float] = []
    cur_exact: list[float] = []
    for i, pair in enumerate(pairs):
        out = apply_output(candidate, pair.bad)
        base = apply_output(current, pair.bad) if current else pair.bad
        raw_sim.append(similarity(pair.bad, pair.fixed))
        raw_exact.append(float(pair.bad == pair.fixed))
        new_sim.append(similarity(out, pair.fixed))
        new_exact.append(float(out == pair.fixed))
        cur_sim.append(similarity(base, pair.fixed))
        cur_exact.append(float(base == pair.fixed))
        if new_sim[-1] < cur_sim[-1] - EPS or new_exact[-1] < cur_exact[-1]:
            worse.append(pair.uuid)
        if is_heldout(pair.uuid, heldout_fraction):
            held.append(i)

    def pick(xs: list[float]) -> list[float]:
        return [xs[i] for i in held]

    validation = HookValidation(
        pairs=len(pairs),
        heldout_pairs=len(held),
        exact_match_before=_mean(raw_exact),
        exact_match_after=_mean(new_exact),
        similarity_before=_mean(raw_sim),
        similarity_after=_mean(new_sim),
        heldout_exact_match_before=_mean(pick(raw_exact)),
        heldout_exact_match_after=_mean(pick(new_exact)),
        heldout_similarity_before=_mean(pick(raw_sim)),
        heldout_similarity_after=_mean(pick(new_sim)),
        worse_pairs=len(worse),
    )
    if not pairs:
        return ValidationReport(validation, ok=False, reason=NO_PAIRS)
    if worse:
        return ValidationReport(validation, ok=False, reason=WORSE_PAIRS, worse=worse)
    if held and (
        _mean(pick(new_sim)) < _mean(pick(cur_sim)) - EPS or _mean(pick(new_exact)) < _mean(pick(cur_exact)) - EPS
    ):
        return ValidationReport(validation, ok=False, reason=HELDOUT_DROP)
    return ValidationReport(validation, ok=True)
