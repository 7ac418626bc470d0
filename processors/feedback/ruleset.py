"""Rule sets as the feedback engine sees them: what a rule does, conflicts, order, descriptions.

The rule structs are defined in :mod:`stream.contract.hooks.rules` (they are part of
the ``HookRelease`` event).  Applying them always goes through the fixed code of
:mod:`stream.contract.hooks.template`, the same code every generated hook module
carries, so what validation measured is what users run.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stream.contract.hooks import template as applier
from stream.contract.hooks.rules import (
    AddPrefix,
    AddSuffix,
    DeletePhrase,
    FixCase,
    FormatRule,
    MaxSentences,
    ReplacePhrase,
    RewriteToken,
    Rule,
    StripPrefix,
    StripSuffix,
    When,
    from_data,
    to_data,
)

__all__ = [
    "AddPrefix", "AddSuffix", "DeletePhrase", "FixCase", "FormatRule", "RewriteToken", "When", "MaxSentences", "ReplacePhrase", "Rule",
    "StripPrefix", "StripSuffix", "apply_output", "apply_prompt", "behaviour", "conflicts", "from_data",
    "confidence", "instructions", "rule_key", "to_data", "with_support",
]

# Kinds in a stable order, used to break ties deterministically (precise text rules first).
KIND_RANK = {
    "strip_prefix": 0, "strip_suffix": 1, "replace_phrase": 2, "delete_phrase": 3,
    "add_prefix": 4, "add_suffix": 5, "max_sentences": 6, "format": 7, "rewrite_token": 8, "fix_case": 9,
}


def kind(rule: Rule) -> str:
    return type(rule).__struct_config__.tag  # type: ignore[return-value]


def rule_key(rule: Rule) -> tuple[Any, ...]:
    """What a rule does, without its support, against or origin: two rules with one key behave the same."""
    data = msgspec.to_builtins(rule)
    data.pop("support", None)
    data.pop("against", None)
    data.pop("origin", None)
    if "when" in data:
        data["when"] = tuple(sorted(data["when"].items()))
    return tuple(sorted((k, v) for k, v in data.items()))


def behaviour(rules: list[Rule]) -> tuple[tuple[Any, ...], ...]:
    """The behaviour of a rule set, order-free (the applier orders rules itself)."""
    return tuple(sorted(rule_key(r) for r in rules))


def with_support(rule: Rule, support: int, against: int = 0) -> Rule:
    return msgspec.structs.replace(rule, support=support, against=against)


def confidence(rule: Rule) -> float | None:
    """Share of the training pairs a rule changed on its own that it improved (None: never measured)."""
    measured = rule.support + rule.against
    return rule.support / measured if measured else None


def sort_key(rule: Rule) -> tuple[Any, ...]:
    """Deterministic order: by support (high first), then precise kinds first, then content."""
    return (-rule.support, KIND_RANK[kind(rule)], repr(rule_key(rule)))


def _triggers(rule: Rule) -> set[tuple[str, str]]:
    """What a rule competes for: rules sharing a trigger conflict."""
    k = kind(rule)
    if isinstance(rule, (ReplacePhrase, DeletePhrase)):
        return {("phrase", rule.old.lower())}
    if isinstance(rule, (StripPrefix, AddPrefix)):
        return {("prefix", rule.text.strip()), *({("add_prefix", "")} if k == "add_prefix" else set())}
    if isinstance(rule, (StripSuffix, AddSuffix)):
        return {("suffix", rule.text.strip()), *({("add_suffix", "")} if k == "add_suffix" else set())}
    if isinstance(rule, MaxSentences):
        return {("max_sentences", "")}
    if isinstance(rule, RewriteToken):
        return {("token", rule.token)}
    if isinstance(rule, FixCase):
        return {("phrase", rule.word.lower())}
    return set()


def exclusive(a: When | None, b: When | None) -> bool:
    """True when no answer can meet both conditions (two languages, disjoint length ranges)."""
    if a is None or b is None:
        return False
    if a.language and b.language and a.language != b.language:
        return True
    for gt, lt in (("sentences_gt", "sentences_lt"), ("chars_gt", "chars_lt")):
        for x, y in ((a, b), (b, a)):
            low, high = getattr(x, gt), getattr(y, lt)
            if low is not None and high is not None and high <= low + 1:
                return True
    return False


def conflicts(a: Rule, b: Rule) -> bool:
    """True when two different rules pull the same text different ways.

    Same phrase replaced two ways, a replacement undone by another rule (A→B, B→A),
    a prefix/suffix both stripped and added, two different openings or sign-offs
    to add, two sentence limits.
    """
    if rule_key(a) == rule_key(b) or exclusive(a.when, b.when):
        return False
    ta, tb = _triggers(a), _triggers(b)
    if ta & tb:
        return True
    # A replacement whose output is another rule's trigger: a cycle (A→B, B→A) or a chain.
    return bool(_output(a) & tb or _output(b) & ta)


def _output(rule: Rule) -> set[tuple[str, str]]:
    return {("phrase", rule.new.lower())} if isinstance(rule, ReplacePhrase) else set()


def apply_output(rules: list[Rule], text: str) -> str:
    """Post-process ``text`` with ``rules`` through the hook template's applier."""
    return applier.apply_rules_to_output(to_data(rules), text)  # type: ignore[no-any-return]


def apply_prompt(rules: list[Rule], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return applier.apply_rules_to_prompt(to_data(rules), messages)  # type: ignore[no-any-return]


def instructions(rules: list[Rule]) -> list[str]:
    return applier.instructions(to_data(rules))


def describe(rule: Rule) -> str:
    """One line for humans (CLI, logs): the rule's instruction plus its support."""
    share = confidence(rule)
    measured = f", confidence {share:.2f}" if share is not None else ""
    return f"{kind(rule)}: {applier.instruction(to_data([rule])[0])} (support {rule.support}{measured}, {rule.origin})"
