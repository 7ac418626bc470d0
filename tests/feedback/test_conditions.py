"""Conditional rules: conditions applied by the hook template, learnt from pairs that disagree."""

from __future__ import annotations

import pytest

from processors.feedback.conditions import learn
from processors.feedback.pairs import Pair
from processors.feedback.ruleset import AddSuffix, MaxSentences, When, apply_output, conflicts, instructions
from processors.feedback.synthesizer import RuleSetSynthesizer
from stream.contract.hooks import template

EN = "Your parcel is on its way (case {i}). We will send the details today."
DE = "Ihre Bestellung ist unterwegs (Fall {i}). Wir melden uns bald bei Ihnen."
FR = "Votre colis est en route (dossier {i}). Nous vous envoyons les détails pour vous."
ES = "Su pedido está en camino (caso {i}). Usted recibirá los detalles por correo con su número."


@pytest.mark.parametrize(("text", "lang"), [(EN, "en"), (DE, "de"), (FR, "fr"), (ES, "es"), ("12345 ok.", None)])
def test_language_by_stop_words(text: str, lang: str | None) -> None:
    assert template.language(text.format(i=1)) == lang


def test_conditions_gate_rules_on_the_incoming_answer() -> None:
    rule = MaxSentences(n=1, when=When(sentences_gt=2))
    assert apply_output([rule], "One. Two.") == "One. Two."
    assert apply_output([rule], "One. Two. Three.") == "One."  # measured before the cut
    signed = AddSuffix(text=" — Kundendienst", when=When(language="de", contains="Bestellung"))
    assert apply_output([signed], DE.format(i=1)).endswith("— Kundendienst")
    assert apply_output([signed], EN.format(i=1)) == EN.format(i=1)
    assert apply_output([AddSuffix(text=" x", when=When(chars_lt=5))], "abcdef") == "abcdef"
    assert apply_output([AddSuffix(text=" x", when=When(chars_gt=5))], "abcdef") == "abcdef x"
    assert instructions([signed]) == ['When the answer mentions "Bestellung" and is in German: End the answer with "— Kundendienst".']
    with pytest.raises(ValueError, match="unknown condition"):
        template.parse_rules([{"kind": "max_sentences", "n": 1, "when": {"eval": 1}}])


def test_rules_with_exclusive_conditions_do_not_conflict() -> None:
    a = AddSuffix(text=" — Support", when=When(language="en"))
    b = AddSuffix(text=" — Kundendienst", when=When(language="de"))
    assert not conflicts(a, b)
    assert conflicts(a, AddSuffix(text=" — Kundendienst"))
    assert not conflicts(MaxSentences(n=2, when=When(sentences_gt=3)), MaxSentences(n=1, when=When(sentences_lt=4)))


def test_learn_separates_helped_from_hurt() -> None:
    long = ["One. Two. Three. Four.", "One. Two. Three. Four. Five.", "Uno. Dos. Tres. Cuatro. Cinco. Seis.", "Aa. Bb. Cc. Dd. Ee."]
    short = ["One. Two. Three.", "Un. Deux. Trois, quatre, cinq, six, sept, huit."]
    assert learn(long, short, 3) == When(sentences_gt=3)
    assert learn([DE.format(i=i) for i in range(4)], [EN.format(i=i) for i in range(4)], 3) == When(language="de")
    assert learn(["a refund soon x"] * 4, ["nothing here x"] * 4, 3) == When(contains="refund")
    assert learn(["same"] * 4, ["same"] * 4, 3) is None  # nothing separates them
    assert learn(["One. Two. Three. Four."] * 2, ["One."], 3) is None  # too little support


def test_synthesis_learns_a_sign_off_per_language() -> None:
    pairs = []
    for i in range(24):
        if i % 2:
            bad = EN.format(i=i)
            pairs.append(Pair(f"p{i}", bad, bad + "\n— Acme Support"))
        else:
            bad = DE.format(i=i)
            pairs.append(Pair(f"p{i}", bad, bad + "\n— Acme Kundendienst"))
    rules = RuleSetSynthesizer().synthesize(pairs).rules
    assert {(r.text, r.when.language if r.when else None) for r in rules} == {
        ("\n— Acme Support", "en"), ("\n— Acme Kundendienst", "de"),
    }
    assert apply_output(rules, EN.format(i=99)) == EN.format(i=99) + "\n— Acme Support"
    assert apply_output(rules, DE.format(i=99)) == DE.format(i=99) + "\n— Acme Kundendienst"
    assert apply_output(rules, "12345") == "12345"  # neither language: no sign-off


def test_synthesis_learns_a_length_condition_and_makes_no_pair_worse() -> None:
    pairs = []
    for i in range(30):
        notes = ["Keep this mail.", "Reply at any time.", "All is well."]
        sentences = [f"Case {i} moved.", "We will call.", *notes[: i % 4]]
        bad = " ".join(sentences)
        fixed = " ".join(sentences[:2]) if len(sentences) > 3 else bad
        pairs.append(Pair(f"p{i}", bad, fixed))
    rules = RuleSetSynthesizer().synthesize(pairs).rules
    assert rules == [MaxSentences(n=2, when=When(sentences_gt=3), support=rules[0].support)]
    assert all(apply_output(rules, p.bad) == p.fixed for p in pairs)
