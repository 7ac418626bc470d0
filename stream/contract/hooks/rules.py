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
# Token classes a ``rewrite_token`` rule matches with the hook template's own fixed scanners.
TokenClass = Literal["number", "code", "email", "date"]
Language = Literal["en", "de", "fr", "es"]
Count = Annotated[int, Meta(ge=0, le=1_000_000)]
# Placeholders an output template may use: {text} for every class, the date's parts for dates.
PLACEHOLDERS = {
    "number": ("text",),
    "code": ("text",),
    "email": ("text",),
    "date": ("text", "year", "mm", "dd", "m", "d", "month"),
}


class When(Struct, kw_only=True, omit_defaults=True, frozen=True):
    """A rule's condition, on the answer as it arrives (before any rule): every field set must hold."""

    sentences_gt: Count | None = None  # more than n sentences
    sentences_lt: Count | None = None  # fewer than n sentences
    chars_gt: Count | None = None
    chars_lt: Count | None = None
    contains: Phrase | None = None  # a word-bounded phrase, any case
    language: Language | None = None  # by stop-word counts (the template's own small lists)


class _Rule(Struct, tag_field="kind", kw_only=True, omit_defaults=True, frozen=True):
    """Common fields: how many feedback pairs it improved and made worse on its own when synthesised
    (its confidence is support / (support + against)), who proposed it, and an optional condition
    (absent: the rule always applies, and its JSON is what it was before)."""

    support: Support = 0
    against: Support = 0
    origin: Origin = "diff"
    when: When | None = None


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


class RewriteToken(_Rule, tag="rewrite_token"):
    """Rewrite every token of a class (optionally only right after the word ``after``) as ``out``.

    ``out`` is a template whose only placeholders are those of :data:`PLACEHOLDERS`
    (``#{text}``, ``{year}-{mm}-{dd}``, ``[email]``); the matching is the hook
    template's fixed, linear-time scanners, never a pattern taken from feedback.
    """

    token: TokenClass
    out: Annotated[str, Meta(max_length=MAX_PHRASE_CHARS)]
    after: Phrase | None = None


class FixCase(_Rule, tag="fix_case"):
    """Write ``word`` in exactly this casing wherever it appears (word-bounded, any casing matched)."""

    word: Phrase


Rule = (
    ReplacePhrase | DeletePhrase | StripPrefix | AddPrefix | StripSuffix | AddSuffix | MaxSentences | FormatRule
    | RewriteToken | FixCase
)

RULE_TYPES: tuple[type[_Rule], ...] = (
    ReplacePhrase, DeletePhrase, StripPrefix, AddPrefix, StripSuffix, AddSuffix, MaxSentences, FormatRule,
    RewriteToken, FixCase,
)
# Kinds the first hook template (version 1) can apply; a release rendered with it may hold no other.
V1_KINDS = frozenset({
    "replace_phrase", "delete_phrase", "strip_prefix", "add_prefix", "strip_suffix", "add_suffix", "max_sentences", "format",
})


def kind_of(rule: Rule) -> str:
    """A rule's ``kind`` tag."""
    return type(rule).__struct_config__.tag  # type: ignore[return-value]


def to_data(rules: list[Rule]) -> list[dict[str, Any]]:
    """Rules as JSON-able dicts (what the hook module and the topic carry)."""
    return msgspec.to_builtins(rules)  # type: ignore[no-any-return]


def from_data(data: Any) -> list[Rule]:
    """Typed rules from dicts, strictly; raises ``msgspec.ValidationError`` naming the bad field."""
    return msgspec.convert(data, list[Rule])
