"""The semantic gate: a correction that changed what the answer says proposes no rules.

A deterministic bag-of-words embedder stands in for MiniLM here (the real model runs in
``tests/system/test_models.py`` under ``make test-models``).
"""

from __future__ import annotations

import zlib

import numpy as np

from processors.feedback.diff import FeedbackDiffAnalyzer
from processors.feedback.pairs import Pair
from processors.feedback.ruleset import apply_output
from processors.feedback.synthesizer import RuleSetSynthesizer


def _bag(text: str) -> list[float]:
    v = np.zeros(64)
    for w in text.lower().split():
        v[zlib.crc32(w.strip(".,!").encode()) % 64] += 1.0
    return list(v)


ANALYZER = FeedbackDiffAnalyzer(_bag, embedder_name="bag")
ANSWERS = ["Refunds arrive within five days", "Passwords change under Settings", "Invoices export as PDF files",
           "Licenses are per person only", "Exports run every night"]


def _pairs() -> list[Pair]:
    polite = [Pair(f"p{i}", f"{a}. Thx!", f"{a}. Thank you.") for i, a in enumerate(ANSWERS)]
    # one reviewer replaced the whole body with their own canned reply, keeping the sign-off
    canned = [Pair(f"r{i}", f"Hello. {a} today.", "Hello. Call our office tomorrow morning please.") for i, a in enumerate(ANSWERS[:4])]
    return polite + canned


def _learnt_the_sign_off(rules: list) -> bool:
    """The systematic correction is learnt when a held-out answer comes out exactly right.

    (Which rules express it may change: "Thx!" -> "Thank you." or a cut plus an appended suffix.)"""
    return apply_output(rules, "Tickets close after a week. Thx!") == "Tickets close after a week. Thank you."


def test_rewrites_propose_nothing_but_corrections_still_teach() -> None:
    gated = RuleSetSynthesizer(analyzer=ANALYZER, rewrite_difference=0.5).synthesize(_pairs())
    assert sorted(gated.rewrites) == ["r0", "r1", "r2", "r3"]
    assert all(c.proposed_by <= 5 for c in gated.candidates), "only the five corrections proposed candidates"
    assert _learnt_the_sign_off(gated.rules), f"the systematic correction was lost: {gated.rules}"
    # Rewrites do not vote either: ungated, the canned replies made a one-sentence cut look supported (9 pairs),
    # which would truncate every answer to its first sentence; gated, no answer loses a sentence.
    assert apply_output(gated.rules, "Hello. Plans renew every year.").startswith("Hello. Plans renew every year."), gated.rules
    assert gated.train_pairs == len(_pairs())


def test_without_a_gate_or_an_embedder_every_pair_proposes() -> None:
    open_ = RuleSetSynthesizer(analyzer=ANALYZER, rewrite_difference=None).synthesize(_pairs())
    jaccard = RuleSetSynthesizer(rewrite_difference=0.5).synthesize(_pairs())  # token Jaccard never gates
    for synthesis in (open_, jaccard):
        assert synthesis.rewrites == []
        assert _learnt_the_sign_off(synthesis.rules), synthesis.rules
