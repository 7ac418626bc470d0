"""The synthesizer's outcome cache: a warm re-synthesis decides exactly what a cold one does."""

from __future__ import annotations

from processors.feedback.pairs import Pair, split
from processors.feedback.synthesizer import OutcomeCache, RuleSetSynthesizer
from tests.support.feedback import traffic_feedback


def test_a_warm_synthesizer_decides_what_a_cold_one_does_as_pairs_grow() -> None:
    warm = RuleSetSynthesizer()
    for fn, fbs in sorted(traffic_feedback(seed=7, events=6000).items()):
        pairs = [Pair.of(f) for f in fbs]
        for k in (len(pairs) // 3, 2 * len(pairs) // 3, len(pairs)):
            train, _held = split(pairs[:k], 0.2)
            cold = RuleSetSynthesizer().synthesize(train)
            again = warm.synthesize(train)
            assert again.rules == cold.rules and again.candidates == cold.candidates, (fn, k)
    assert len(warm.outcomes) > 0


def test_two_generations_bound_the_cache_and_a_hit_survives_a_turn() -> None:
    cache = OutcomeCache(limit=3)
    value = (0.5, False, True)
    for i in range(4):  # the fourth turns the generations: {0, 1, 2} become the old one
        cache.put(("k", i), value)
    assert cache.get(("k", 0)) == value  # found in the old generation: copied into the new one
    cache.put(("k", 4), value)
    cache.put(("k", 5), value)  # turns again: {3, 0, 4} old, {5} new; 1 and 2 are gone
    assert cache.get(("k", 0)) == value
    assert cache.get(("k", 1)) is None and cache.get(("k", 2)) is None
    assert len(cache) <= 2 * cache.limit
