"""Parameterised candidates: an edit that rewrites a token of a known class becomes a rule for the class.

"Ticket 2300" → "Ticket #2300" in one pair is an insertion of "#"; widened to the number it
touches it reads 2300 → #2300, whose output is the template ``#{text}``.  Proposed twice, with
the word before the token (``after="Ticket"``) and without; support across pairs decides.
Dates also yield their parts ("March 14, 2026" → "2026-03-14" is ``{year}-{mm}-{dd}``), and an
edit that only changes a word's casing ("vectorwave" → "VectorWave") proposes ``fix_case``.

The token classes are the hook template's own scanners (:func:`template.token_matches`): nothing
here turns feedback text into a pattern, it only fills in a class name, a preceding word and an
output template whose placeholders the template checks.
"""

from __future__ import annotations

import itertools
import re

from stream.contract.hooks import template as hook_template
from stream.contract.hooks.rules import MAX_PHRASE_CHARS, FixCase, RewriteToken, Rule

from .diff import DiffAnalysis

MAX_TEMPLATES = 8  # output templates proposed per token rewrite (ambiguous date parts)
_RUN = re.compile(r"[A-Za-z0-9]+")
_WORD_BEFORE = re.compile(r"(?<!\w)(\w{1,40})[ \t]$")


def propose(analysis: DiffAnalysis) -> list[Rule]:
    """Token-class and casing candidates one pair suggests."""
    out: list[Rule] = []
    bad, fixed, edits = analysis.bad, analysis.fixed, analysis.edits
    if not edits:
        return out
    for token in hook_template.TOKEN_CLASSES:
        for match in hook_template.token_matches(token, bad):
            s, e = match.span()
            near, outside = [], []
            for ed in edits:
                a0, a1 = ed.old_span
                point = a0 == a1
                # An insertion right after the token sits, for difflib, at the next word (after the space).
                if (a0 < e and a1 > s) or (point and s <= a0 and not bad[e:a0].strip()):
                    near.append(ed)
                else:
                    outside.append(ed)
            if not near or any(ed.old_span[0] < s or ed.old_span[1] > e for ed in near if ed.old_span[0] != ed.old_span[1]):
                continue  # untouched, or the edit reaches beyond the token
            if any(ed.at_start or ed.at_end for ed in near):
                continue
            delta = [(ed.new_span[1] - ed.new_span[0]) - (ed.old_span[1] - ed.old_span[0]) for ed in outside]
            before = sum(d for ed, d in zip(outside, delta, strict=True) if ed.old_span[1] <= s)
            after = sum(d for ed, d in zip(outside, delta, strict=True) if ed.old_span[0] >= e)
            new = fixed[s + before : len(fixed) - (len(bad) - e) - after]
            if not new or new != new.strip():
                continue
            fields = hook_template.token_fields(token, match)
            if fields is None or new == match.group(0) or len(new) > MAX_PHRASE_CHARS:
                continue
            word = _WORD_BEFORE.search(bad, 0, s)
            for template in _templates(new, fields, token):
                out.append(RewriteToken(token=token, out=template))
                if word:
                    out.append(RewriteToken(token=token, out=template, after=word.group(1)))
    for edit in edits:
        old, new = edit.old.strip(), edit.new.strip()
        if old != new and old.casefold() == new.casefold() and " " not in new and any(c.isalpha() for c in new):
            out.append(FixCase(word=new))
    return out


def _templates(new: str, fields: dict[str, str], token: str) -> list[str]:
    """Output templates that write ``new`` from the token's fields: every alphanumeric run of
    ``new`` equal to a field becomes that placeholder (each way, when several fields fit)."""
    names = hook_template.PLACEHOLDERS[token]
    runs = list(_RUN.finditer(new))
    choices: list[list[str | None]] = []
    for run in runs:
        fits = [name for name in names if fields.get(name) == run.group(0)]
        choices.append(list(fits) or [None])
    if "{" in new or "}" in new:
        return []  # braces of the text itself would read as placeholders
    found: list[str] = []
    whole = new.find(fields["text"])
    if whole >= 0:  # the token as a whole, kept inside the new text ("#2300", "<2300>")
        found.append(new[:whole] + "{text}" + new[whole + len(fields["text"]) :])
    for combo in itertools.islice(itertools.product(*choices), MAX_TEMPLATES):
        parts, pos = [], 0
        for run, name in zip(runs, combo, strict=True):
            parts.append(new[pos : run.start()])
            parts.append("{" + name + "}" if name else run.group(0))
            pos = run.end()
        parts.append(new[pos:])
        text = "".join(parts)
        if text not in found:
            found.append(text)
    return [t for t in found if len(t) <= MAX_PHRASE_CHARS][:MAX_TEMPLATES]
