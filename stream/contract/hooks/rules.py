"""Rules of a prompt hook, as typed data (the ``rules`` of a ``HookRelease``).

A rule is a small struct with a ``kind`` tag; nothing in it is ever executed.
The fixed code that applies rules lives in :mod:`stream.contract.hooks.template`
(it is also the body of every generated ``generated_prompt_hook.py``), so the
feedback engine's validation, the generated module and the runtime hook client all
run the same applier.  Strings are bounded so that a flood of feedback cannot turn
into an unbounded system prompt.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

# Longest phrase a rule may hold; the hook template enforces the same bound.
MAX_PHRASE_CHARS = 500

Phrase = Annotated[str, Meta(min_length=1, max_length=MAX_PHRASE_CHARS)]
Support = Annotated[int, Meta(ge=0)]
Origin = Literal["diff", "llm"]
FormatName = Literal["collapse_whitespace", "strip_markdown", "strip_wrapping_quotes", "single_line"]


class _Rule(Struct, tag_field="kind", kw_only=True, omit_defaults=True, frozen=True):
    """Common fields: how many feedback pairs it fixed when synthesised, and who proposed it."""

    support: Support = 0
    origin: Origin = "diff"


class ReplacePhrase(_Rule, tag="replace_phrase"):
    """Replace a word-bounded phrase; the case of each match carries over (customer/Customer/CUSTOMER)."""

    old: Phrase
    new: Phrase


class DeletePhrase(_Rule, tag="delete_phrase"):
    """Delete a word-bounded phrase (and one adjacent space)."""

    old: Phrase


class StripPrefix(_Rule, tag="strip_prefix"):
    """Remove an opening such as a greeting; ``capitalize`` upper-cases what then comes first."""

    text: Phrase
    capitalize: bool = False


class AddPrefix(_Rule, tag="add_prefix"):
    """Start the answer with ``text`` (its separator included) unless it already does."""

    text: Phrase


class StripSuffix(_Rule, tag="strip_suffix"):
    """Remove a closing such as filler or a disclaimer."""

    text: Phrase


class AddSuffix(_Rule, tag="add_suffix"):
    """End the answer with ``text`` (its separator included), e.g. a sign-off."""

    text: Phrase


class MaxSentences(_Rule, tag="max_sentences"):
    """Keep at most ``n`` sentences."""

    n: Annotated[int, Meta(ge=1, le=50)]


class FormatRule(_Rule, tag="format"):
    """One of a fixed set of format clean-ups."""

    name: FormatName


Rule = ReplacePhrase | DeletePhrase | StripPrefix | AddPrefix | StripSuffix | AddSuffix | MaxSentences | FormatRule

RULE_TYPES: tuple[type[_Rule], ...] = (
    ReplacePhrase, DeletePhrase, StripPrefix, AddPrefix, StripSuffix, AddSuffix, MaxSentences, FormatRule,
)


def to_data(rules: list[Rule]) -> list[dict[str, Any]]:
    """Rules as JSON-able dicts (what the hook module and the topic carry)."""
    return msgspec.to_builtins(rules)  # type: ignore[no-any-return]


def from_data(data: Any) -> list[Rule]:
    """Typed rules from dicts, strictly; raises ``msgspec.ValidationError`` naming the bad field."""
    return msgspec.convert(data, list[Rule])
