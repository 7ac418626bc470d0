"""Conditions learnt from pairs: a candidate that helps some pairs and hurts others gets the
condition that separates them, if one of ours does.

Measured on the answer as it arrives (what the hook template's ``holds`` sees): its sentence
count, its length in characters, its language (stop-word counts) and the words it contains.
A condition is accepted only if it keeps none of the pairs the rule made worse and at least
``min_support`` and ``min_share`` (0.9, the synthesiser passes its ``min_confidence``) of those it improved; among those, the one keeping most improved pairs wins,
ties in the order language, sentences, phrase, characters (the coarser property generalises
better than an exact length).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stream.contract.hooks import template as hook_template
from stream.contract.hooks.rules import MAX_PHRASE_CHARS, When

_WORD = re.compile(r"[^\W\d_]{3,40}")
MAX_WORDS = 2000  # distinct words considered for a phrase condition


def _sentences(text: str) -> int:
    return len(hook_template.sentence_ends(text)) if text.strip() else 0


def learn(improved: Sequence[str], worse: Sequence[str], min_support: int, min_share: float = 0.9) -> When | None:
    """The condition that keeps the rule on ``improved`` answers and off ``worse`` ones (or None).

    It must keep at least ``min_share`` of the improved answers: a condition that only fits a
    handful of them (a word three noisy pairs happen to share) is a coincidence, not a property.
    """
    if not worse or len(improved) < min_support:
        return None
    options: list[tuple[int, int, When]] = []  # (kept improved, preference, condition)

    def consider(when: When, rank: int) -> None:
        if any(hook_template.holds(_data(when), t) for t in worse):
            return
        kept = sum(hook_template.holds(_data(when), t) for t in improved)
        if kept >= max(min_support, min_share * len(improved)):
            options.append((kept, -rank, when))

    langs = {hook_template.language(t) for t in improved}
    for lang in sorted(x for x in langs if x):
        consider(When(language=lang), 4)  # type: ignore[arg-type]
    for measure, gt, lt, rank in ((_sentences, "sentences_gt", "sentences_lt", 3), (lambda t: len(t.strip()), "chars_gt", "chars_lt", 1)):
        good = sorted(measure(t) for t in improved)
        bad = sorted(measure(t) for t in worse)
        if bad[-1] < good[-1]:  # the rule helps the longer answers: cut above the longest it hurt
            consider(When(**{gt: (bad[-1] + min(g for g in good if g > bad[-1])) // 2}), rank)
        if bad[0] > good[0]:
            consider(When(**{lt: -(-(bad[0] + max(g for g in good if g < bad[0])) // 2)}), rank)
    in_worse = {w.casefold() for t in worse for w in _WORD.findall(t)}
    counts: dict[str, int] = {}
    for text in improved:
        for word in {w.casefold() for w in _WORD.findall(text)} - in_worse:
            counts[word] = counts.get(word, 0) + 1
    frequent = sorted(counts, key=lambda w: (-counts[w], w))[:MAX_WORDS]
    for word in frequent:
        if counts[word] >= min_support and len(word) <= MAX_PHRASE_CHARS:
            consider(When(contains=word), 2)
    if not options:
        return None
    options.sort(key=lambda o: (-o[0], o[1], repr(o[2])))
    return options[0][2]


def _data(when: When) -> dict[str, object]:
    return {k: v for k, v in (("sentences_gt", when.sentences_gt), ("sentences_lt", when.sentences_lt),
                              ("chars_gt", when.chars_gt), ("chars_lt", when.chars_lt),
                              ("contains", when.contains), ("language", when.language)) if v is not None}
