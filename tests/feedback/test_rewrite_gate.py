"""The semantic gate: a correction that changed what the answer says proposes no rules.

A deterministic bag-of-words embedder stands in for MiniLM here (the real model runs in
``tests/system/test_models.py`` under ``make test-models``).
"""

from __future__ import annotations

import zlib

import numpy as np

from processors.feedback.diff import FeedbackDiffAnalyzer
from processors.feedback.pairs import Pair
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


def test_rewrites_propose_nothing_but_corrections_still_teach() -> None:
    gated = RuleSetSynthesizer(analyzer=ANALYZER, rewrite_difference=0.5).synthesize(_pairs())
    assert sorted(gated.rewrites) == ["r0", "r1", "r2", "r3"]
    assert all(c.proposed_by <= 5 for c in gated.candidates), "only the five corrections proposed candidates"
    assert any("Thx!" in repr(r) for r in gated.rules), "the systematic correction was lost"


def test_without_a_gate_or_an_embedder_every_pair_proposes() -> None:
    open_ = RuleSetSynthesizer(analyzer=ANALYZER, rewrite_difference=None).synthesize(_pairs())
    jaccard = RuleSetSynthesizer(rewrite_difference=0.5).synthesize(_pairs())  # token Jaccard never gates
    for synthesis in (open_, jaccard):
        assert synthesis.rewrites == []
        assert any("Thx!" in repr(r) for r in synthesis.rules)
