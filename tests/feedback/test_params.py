"""Parameterised rules: token classes and casing, applied by the hook template, learnt from pairs."""

from __future__ import annotations

import re
import time

import msgspec
import pytest

from processors.feedback.diff import FeedbackDiffAnalyzer
from processors.feedback.pairs import Pair
from processors.feedback.params import propose
from processors.feedback.ruleset import FixCase, ReplacePhrase, RewriteToken, apply_output, to_data
from processors.feedback.synthesizer import RuleSetSynthesizer
from stream.contract.hooks import template
from stream.contract.hooks.rules import from_data


def test_token_classes_match_only_what_they_say() -> None:
    rules = [RewriteToken(token="number", out="#{text}", after="Ticket")]
    assert apply_output(rules, "Ticket 2300 is open, ticket 12 too.") == "Ticket #2300 is open, ticket #12 too."
    # Not a number after another word, not inside a word, a decimal, a range or an already hashed one.
    assert apply_output(rules, "Ticket #2300, Tickets 5, case 2300, Ticket 3.5, Ticket 5-7") == (
        "Ticket #2300, Tickets 5, case 2300, Ticket 3.5, Ticket 5-7"
    )
    codes = [RewriteToken(token="code", out="[order]")]
    assert apply_output(codes, "Order AB-1234 and ORD-998877, not ab-12 nor AB-1234-5.") == (
        "Order [order] and [order], not ab-12 nor AB-1234-5."
    )
    mails = [RewriteToken(token="email", out="[email]")]
    assert apply_output(mails, "Write to alice.b+x@mail.example.com. Or @bob, or a@b.") == "Write to [email]. Or @bob, or a@b."


def test_dates_in_three_forms_to_one() -> None:
    rules = [RewriteToken(token="date", out="{year}-{mm}-{dd}")]
    text = "On March 5, 2026, 05/03/2026 and 2026-3-5; not 13/13/2026, 2026-03-05-1 or Mar 5, 2026."
    assert apply_output(rules, text) == "On 2026-03-05, 2026-03-05 and 2026-03-05; not 13/13/2026, 2026-03-05-1 or Mar 5, 2026."
    long_form = [RewriteToken(token="date", out="{month} {d}, {year}")]
    assert apply_output(long_form, "due 2026-03-05.") == "due March 5, 2026."


def test_fix_case_is_word_bounded_and_any_casing() -> None:
    rules = [FixCase(word="VectorWave")]
    assert apply_output(rules, "vectorwave, VECTORWAVE and vectorWave; not vectorwaves.") == (
        "VectorWave, VectorWave and VectorWave; not vectorwaves."
    )


def test_output_templates_are_checked_data() -> None:
    with pytest.raises(ValueError, match="not a placeholder"):
        template.parse_rules([{"kind": "rewrite_token", "token": "number", "out": "{year}"}])
    with pytest.raises(ValueError, match="token must be"):
        template.parse_rules([{"kind": "rewrite_token", "token": "regex", "out": "x"}])
    # Format-string tricks are plain text to the filler: only {name} of the class is replaced.
    rules = [RewriteToken(token="number", out="{text.__class__}{0}#{text}")]
    assert apply_output(rules, "n 7") == "n {text.__class__}{0}#7"
    with pytest.raises(msgspec.ValidationError):
        from_data([{"kind": "rewrite_token", "token": "date", "out": "x" * 501}])


def test_candidates_from_a_pair() -> None:
    analyzer = FeedbackDiffAnalyzer()
    got = propose(analyzer.analyze("Ticket 2300 was moved.", "Ticket #2300 was moved."))
    assert RewriteToken(token="number", out="#{text}", after="Ticket") in got
    assert RewriteToken(token="number", out="#{text}") in got
    got = propose(analyzer.analyze("Ready on March 14, 2026 for you.", "Ready on 2026-03-14 for you."))
    assert RewriteToken(token="date", out="{year}-{mm}-{dd}", after="on") in got
    got = propose(analyzer.analyze("Your vectorwave space.", "Your VectorWave space."))
    assert FixCase(word="VectorWave") in got
    assert propose(analyzer.analyze("Same text.", "Same text.")) == []


def _pairs(n: int) -> list[Pair]:
    out = []
    for i in range(n):
        bad = f"Ticket {100 + 7 * i} was moved (case {1000 + i}). Reply to ann{i}@example.com soon."
        fixed = bad.replace(f"Ticket {100 + 7 * i}", f"Ticket #{100 + 7 * i}").replace(f"ann{i}@example.com", "[email]")
        out.append(Pair(f"p{i}", bad, fixed))
    return out


def test_synthesis_learns_parameterised_rules_and_never_a_per_pair_phrase() -> None:
    rules = RuleSetSynthesizer().synthesize(_pairs(12)).rules
    kinds = {(type(r).__name__, getattr(r, "token", None)) for r in rules}
    assert ("RewriteToken", "number") in kinds and ("RewriteToken", "email") in kinds
    assert not any(isinstance(r, ReplacePhrase) for r in rules)
    unseen = "Ticket 99999 was moved (case 5). Reply to zed@shop.example.net soon."
    assert apply_output(rules, unseen) == "Ticket #99999 was moved (case 5). Reply to [email] soon."
    # The case number (no "Ticket" before it) is left alone.
    assert "(case 5)" in apply_output(rules, unseen)


# ----------------------------------------------------------------------------- cost on hostile text
HOSTILE = {
    "digits": "1" * 100_000,
    "digit_words": "12 " * 33_000,
    "at_signs": "a@" * 50_000,
    "email_like": ("a" * 60 + "@" + "b." * 20) * 1200,
    "dots": "a." * 50_000,
    "codes": "AB-" * 33_000,
    "dates": "2026-03-" * 12_000,
    "slashes": "05/03/" * 16_000,
    "months": "March 5, March " * 6_600,
    "words": "the der le el " * 7_000,
    "sentences": "Mr. a. " * 14_000,
}
ALL_KINDS = [
    RewriteToken(token="number", out="#{text}", after="Ticket"),
    RewriteToken(token="number", out="#{text}"),
    RewriteToken(token="code", out="[order]"),
    RewriteToken(token="email", out="[email]"),
    RewriteToken(token="date", out="{year}-{mm}-{dd}"),
    FixCase(word="VectorWave"),
]


def _cost(rules: list[dict[str, object]], text: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        template.apply_rules_to_output(rules, text)
        best = min(best, time.perf_counter() - started)
    return best


def test_every_rule_kind_is_linear_on_hostile_text() -> None:
    """Ratios, not absolute times: each kind costs < 25x a plain phrase replace on the same text, and
    doubling the text costs < 3.5x (a quadratic scan would cost 4x)."""
    from processors.feedback.ruleset import When

    conditional = [
        ReplacePhrase(old="zzz", new="y", when=When(language="de")),
        ReplacePhrase(old="zzz", new="y", when=When(sentences_gt=3, contains="vector wave")),
        ReplacePhrase(old="zzz", new="y", when=When(chars_lt=10)),
    ]
    for name, text in HOSTILE.items():
        # The plain replace that costs most here: one that finds nothing, or one of the text's own
        # first word (as many rewrites as a token rule makes on it).
        first = re.match(r"\w+", text)
        plains = [ReplacePhrase(old="customer", new="client"), *([ReplacePhrase(old=first.group(0), new="x")] if first else [])]
        base = max(_cost(to_data([p]), text) for p in plains)
        for rule in [*ALL_KINDS, *conditional]:
            data = to_data([rule])
            one, two = _cost(data, text), _cost(data, text + text)
            assert one < 25 * max(base, 2e-4), (name, rule, one, base)
            assert two < 3.5 * max(one, 2e-4), (name, rule, one, two)
