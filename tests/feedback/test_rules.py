"""Engine 2, pure logic: word-level diff analysis and the one rule applier."""

from __future__ import annotations

import msgspec
import pytest

from processors.feedback.diff import FeedbackDiffAnalyzer, similarity, tokenize
from processors.feedback.ruleset import (
    AddPrefix,
    AddSuffix,
    DeletePhrase,
    FormatRule,
    MaxSentences,
    ReplacePhrase,
    StripPrefix,
    StripSuffix,
    apply_output,
    apply_prompt,
    conflicts,
    from_data,
    instructions,
    to_data,
)
from stream.contract.hooks import template as hook_template

GREETING = "Hello! Thanks for reaching out. "


# ----------------------------------------------------------------------------- diff analysis
def test_diff_is_word_level_with_exact_spans_and_positions() -> None:
    bad = GREETING + "The customer was double charged on the May pro plan invoice."
    fixed = "The client was double charged on the May pro plan invoice."
    analysis = FeedbackDiffAnalyzer().analyze(bad, fixed)
    assert [(e.op, e.old, e.new, e.at_start, e.at_end) for e in analysis.edits] == [
        ("delete", GREETING, "", True, False),
        ("replace", "customer", "client", False, False),
    ]
    replace = analysis.edits[1]
    assert (replace.before, replace.after) == ("The", "was")
    assert bad[slice(*replace.old_span)] == "customer" and fixed[slice(*replace.new_span)] == "client"
    # Whole words only: the seed's character fragments ("cu", "stomer") never appear.
    assert all(e.old.strip() in {GREETING.strip(), "customer"} for e in analysis.edits)
    assert 0 < analysis.token_distance < 1 and 0 < analysis.similarity < 1
    assert analysis.semantic_difference > 0


def test_case_only_change_next_to_an_edit_is_one_phrase() -> None:
    bad = "Hello Mr. Customer 김민수, thank you for your order."
    fixed = "Hello valued customer 김민수, thank you for your order."
    (edit,) = FeedbackDiffAnalyzer().analyze(bad, fixed).edits
    assert (edit.op, edit.old, edit.new) == ("replace", "Mr. Customer", "valued customer")
    assert edit.after == "김민수"


def test_removed_opening_with_capitalised_first_word() -> None:
    (edit,) = FeedbackDiffAnalyzer().analyze("Well, the order shipped.", "The order shipped.").edits
    assert (edit.op, edit.old, edit.at_start, edit.capitalized) == ("delete", "Well, ", True, True)


def test_changed_closing_is_an_end_edit() -> None:
    bad = "Refunds take 5 days. I hope this helps! Let me know if you have any other questions."
    fixed = "Refunds take 5 days. -- Support Team"
    (edit,) = FeedbackDiffAnalyzer().analyze(bad, fixed).edits
    assert edit.at_end and not edit.at_start
    assert edit.old == " I hope this helps! Let me know if you have any other questions."
    assert edit.new == " -- Support Team"


def test_distances_identical_and_embedder() -> None:
    same = FeedbackDiffAnalyzer().analyze("a b c", "a b c")
    assert same.unchanged and same.edits == () and same.token_distance == 0 and same.semantic_difference == 0
    jaccard = FeedbackDiffAnalyzer().analyze("red green blue", "red green yellow")
    assert jaccard.semantic_difference == pytest.approx(1 - 2 / 4)
    # With an embedder, the semantic difference is 1 - cosine of the embeddings.
    embed = {"cat sat": [1.0, 0.0], "dog sat": [0.6, 0.8]}
    analysis = FeedbackDiffAnalyzer(embedder=lambda s: embed[s]).analyze("cat sat", "dog sat")
    assert analysis.semantic_difference == pytest.approx(1 - 0.6)


def test_similarity_is_word_level() -> None:
    assert similarity("a b", "a b") == 1.0
    assert similarity("x", "") == 0.0
    # Swapping one wrong word for another is neutral, not "worse" by letters.
    assert similarity("sorry, valued customer", "sorry, truly customer") == similarity("sorry, Mr customer", "sorry, truly customer")
    assert [t.text for t in tokenize("customer's order, ok?!")] == ["customer", "'", "s", "order", ",", "ok", "?!"]


# ----------------------------------------------------------------------------- the applier
def test_replace_is_word_bounded_and_case_aware() -> None:
    rule = ReplacePhrase(old="customer", new="client")
    text = "Customer customers CUSTOMER customer's cUsToMeR customer."
    assert apply_output([rule], text) == "Client customers CLIENT client's cUsToMeR client."


def test_phrases_are_replaced_in_one_pass_without_chains() -> None:
    rules = [ReplacePhrase(old="customer", new="client"), ReplacePhrase(old="client", new="patron")]
    assert apply_output(rules, "customer and client") == "client and patron"


def test_delete_phrase_takes_one_space_with_it() -> None:
    rule = DeletePhrase(old="really")
    assert apply_output([rule], "It was really late.") == "It was late."
    assert apply_output([rule], "really late, really.") == "late,."
    assert apply_output([DeletePhrase(old=", basically")], "Fine, basically.") == "Fine."


def test_prefix_and_suffix_rules_are_idempotent() -> None:
    rules = [
        StripPrefix(text=GREETING.strip()),
        StripSuffix(text="I hope this helps!"),
        AddSuffix(text=" -- Support Team"),
        AddPrefix(text="Summary: "),
    ]
    text = GREETING + "The order shipped. I hope this helps!"
    once = apply_output(rules, text)
    assert once == "Summary: The order shipped. -- Support Team"
    assert apply_output(rules, once) == once
    # A prefix that is only the start of a longer word is not stripped.
    assert apply_output([StripPrefix(text="Hell")], "Hello there") == "Hello there"
    assert apply_output([StripPrefix(text="Well,", capitalize=True)], "Well, the order.") == "The order."


def test_max_sentences_knows_abbreviations() -> None:
    rule = MaxSentences(n=1)
    assert apply_output([rule], "We are sorry, Mr. Kim, it is late. We will call you. Bye!") == "We are sorry, Mr. Kim, it is late."
    assert apply_output([rule], "Only one sentence here") == "Only one sentence here"
    assert apply_output([MaxSentences(n=2)], "One. Two? Three.") == "One. Two?"
    assert apply_output([rule], "Ask J. Smith. Then wait.") == "Ask J. Smith."  # an initial


def test_format_rules() -> None:
    assert apply_output([FormatRule(name="strip_markdown")], "# Title\n**bold** and `code`") == "Title\nbold and code"
    assert apply_output([FormatRule(name="strip_wrapping_quotes")], '"quoted answer"') == "quoted answer"
    assert apply_output([FormatRule(name="collapse_whitespace")], "a  b   c ") == "a b c"
    assert apply_output([FormatRule(name="single_line")], "a\n  b\nc") == "a b c"


def test_non_text_outputs_pass_through() -> None:
    assert apply_output([ReplacePhrase(old="a", new="b")], None) is None  # type: ignore[arg-type]
    assert hook_template.apply_rules_to_output(to_data([AddSuffix(text=" x")]), {"k": 1}) == {"k": 1}


def test_prompt_instructions_go_into_a_copy_of_the_system_message() -> None:
    rules = [ReplacePhrase(old="customer", new="client"), AddSuffix(text=" -- Support Team"), MaxSentences(n=2)]
    assert instructions(rules) == [
        'Write "client" instead of "customer".',
        'End the answer with "-- Support Team".',
        "Answer in at most 2 sentences.",
    ]
    messages = [{"role": "system", "content": "You summarise tickets."}, {"role": "user", "content": "hi"}]
    patched = apply_prompt(rules, messages)
    assert messages[0]["content"] == "You summarise tickets."  # not mutated
    assert patched[0]["content"].startswith("You summarise tickets.\n\nFollow these rules")
    assert '- Write "client" instead of "customer".' in patched[0]["content"]
    bare = apply_prompt(rules, [{"role": "user", "content": "hi"}])
    assert bare[0]["role"] == "system" and bare[1] == {"role": "user", "content": "hi"}
    assert apply_prompt([], messages) is messages


def test_conflicts() -> None:
    a_b = ReplacePhrase(old="customer", new="client")
    assert conflicts(a_b, ReplacePhrase(old="client", new="customer"))  # a cycle
    assert conflicts(a_b, ReplacePhrase(old="Customer", new="patron"))  # same phrase, two ways
    assert conflicts(a_b, DeletePhrase(old="customer"))
    assert not conflicts(a_b, ReplacePhrase(old="buyer", new="client"))  # two phrases to one word is fine
    assert conflicts(AddSuffix(text=" -- Team"), StripSuffix(text="-- Team"))
    assert conflicts(AddSuffix(text=" -- Team"), AddSuffix(text=" Bye"))
    assert conflicts(MaxSentences(n=1), MaxSentences(n=2))
    assert not conflicts(StripPrefix(text="Hi!"), StripPrefix(text="Hello!"))
    assert not conflicts(a_b, ReplacePhrase(old="customer", new="client", support=9))


def test_rules_round_trip_as_data_and_bad_rules_are_refused() -> None:
    rules = [ReplacePhrase(old="a", new="b", support=3), StripPrefix(text="Hi", capitalize=True), FormatRule(name="single_line")]
    assert from_data(to_data(rules)) == rules
    assert to_data(rules)[0] == {"kind": "replace_phrase", "old": "a", "new": "b", "support": 3}
    with pytest.raises(msgspec.ValidationError):
        from_data([{"kind": "exec", "code": "print(1)"}])
    with pytest.raises(msgspec.ValidationError):
        from_data([{"kind": "replace_phrase", "old": "", "new": "x"}])
    for bad in ({"kind": "exec"}, {"kind": "max_sentences", "n": 0}, {"kind": "format", "name": "eval"}, "x",
                {"kind": "add_suffix", "text": "x" * 501}):
        with pytest.raises(ValueError):
            hook_template.parse_rules([bad])
