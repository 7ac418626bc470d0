"""From analysed feedback pairs to a rule set (the seed's ``RuleSetSynthesizer``).

1. **Propose** candidate rules from each pair's edits (a removed opening, a replaced
   phrase, a changed closing, whole sentences cut) plus the fixed format clean-ups
   and any externally proposed rules (the optional LLM proposer).
2. **Measure** each candidate alone on every training pair: *support* is the number
   of pairs it brings closer to their fixed output, *against* the number it moves away.
   Candidates below ``min_support`` or ``min_confidence`` are dropped, so one-off edits
   never become rules and a rule that breaks other users' answers is not kept.
3. **Resolve conflicts** by support: of rules pulling the same text different ways
   (a phrase replaced two ways, A→B against B→A, a sign-off both added and removed),
   only one with strictly more evidence than all its rivals survives (pairs whose
   diff shows it, then pairs it improves); ties drop all.
4. **Combine greedily**, best first (most pairs improved, then precise kinds, then most
   pairs showing it):
   a rule joins only if, together with the rules already chosen, it improves the
   total and makes no training pair worse.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from processors.feedback.ruleset import (
    KIND_RANK,
    AddPrefix,
    AddSuffix,
    DeletePhrase,
    FormatRule,
    MaxSentences,
    ReplacePhrase,
    Rule,
    StripPrefix,
    StripSuffix,
    apply_output,
    conflicts,
    kind,
    rule_key,
    sort_key,
    with_support,
)
from stream.contract.hooks import template as hook_template
from stream.contract.hooks.rules import MAX_PHRASE_CHARS

from .diff import DiffAnalysis, FeedbackDiffAnalyzer, similarity_to, words
from .pairs import Pair

EPS = 1e-9


@dataclass(frozen=True, slots=True)
class CandidateStats:
    rule: Rule
    proposed_by: int  # pairs whose diff proposed it (0 for format and external candidates)
    support: int  # training pairs it improves on its own
    against: int  # training pairs it makes worse on its own
    verdict: str  # "kept" or why not


@dataclass(slots=True)
class Synthesis:
    """The chosen rules and, for explanation, what happened to every candidate."""

    rules: list[Rule]
    candidates: list[CandidateStats] = field(default_factory=list)
    train_pairs: int = 0


class RuleSetSynthesizer:
    """Synthesises a rule set from feedback pairs; deterministic for a given input."""

    def __init__(
        self,
        *,
        min_support: int = 3,
        min_confidence: float = 0.9,
        max_rules: int = 40,
        analyzer: FeedbackDiffAnalyzer | None = None,
    ) -> None:
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.max_rules = max_rules
        self.analyzer = analyzer or FeedbackDiffAnalyzer()

    # ----------------------------------------------------------------- proposing
    def propose(self, analysis: DiffAnalysis) -> list[Rule]:
        """Candidate rules one pair suggests (not yet rules: they still need support)."""
        out: list[Rule] = []
        for edit in analysis.edits:
            if edit.at_start and edit.at_end:
                continue  # a complete rewrite teaches nothing general
            if edit.at_start:
                if edit.old.strip():
                    out.append(StripPrefix(text=edit.old.strip(), capitalize=edit.capitalized))
                if edit.new.strip():
                    out.append(AddPrefix(text=edit.new if edit.new[-1:].isspace() else edit.new + " "))
            elif edit.at_end:
                if edit.old.strip():
                    out.append(StripSuffix(text=edit.old.strip()))
                    kept = analysis.bad[: edit.old_span[0]]
                    if kept.strip():
                        out.append(MaxSentences(n=len(hook_template.sentence_ends(kept))))
                if edit.new.strip():
                    out.append(AddSuffix(text=edit.new.rstrip()))
            elif edit.op == "replace" and edit.old.strip() and edit.new.strip():
                out.append(ReplacePhrase(old=edit.old, new=edit.new))
            elif edit.op == "delete" and edit.old.strip():
                out.append(DeletePhrase(old=edit.old))
            # A bare insertion in the middle has no phrase to anchor a rule on: it is left to the prompt.
        return [r for r in out if _fits(r)]

    # ----------------------------------------------------------------- synthesis
    def synthesize(
        self,
        pairs: Sequence[Pair],
        *,
        current: Iterable[Rule] = (),
        vetoed: Iterable[Rule] = (),
        extra: Iterable[Rule] = (),
    ) -> Synthesis:
        """Rules for ``pairs`` (the training part). ``current`` rules compete again; ``vetoed`` never return."""
        banned = {rule_key(r) for r in vetoed}
        proposed: dict[tuple[object, ...], tuple[Rule, set[str]]] = {}
        for pair in pairs:
            if pair.bad == pair.fixed:
                continue
            for rule in self.propose(self.analyzer.analyze(pair.bad, pair.fixed)):
                entry = proposed.setdefault(rule_key(rule), (rule, set()))
                entry[1].add(pair.uuid)
        pool: dict[tuple[object, ...], tuple[Rule, int]] = {}
        for key, (rule, by) in proposed.items():
            if len(by) >= self.min_support:
                pool[key] = (rule, len(by))
        for rule in [*(FormatRule(name=n) for n in hook_template.FORMATS), *current, *extra]:
            pool.setdefault(rule_key(rule), (rule, 0))

        targets = [words(p.fixed) for p in pairs]
        baseline = [similarity_to(p.bad, t) for p, t in zip(pairs, targets, strict=True)]
        stats: list[CandidateStats] = []
        viable: list[Rule] = []
        for key in sorted(pool, key=repr):
            rule, by = pool[key]
            if key in banned:
                stats.append(CandidateStats(rule, by, 0, 0, "vetoed by a rollback"))
                continue
            support = against = 0
            for pair, target, base in zip(pairs, targets, baseline, strict=True):
                out = apply_output([rule], pair.bad)
                if out == pair.bad:
                    continue
                score = similarity_to(out, target)
                if score > base + EPS:
                    support += 1
                elif score < base - EPS:
                    against += 1
            rule = with_support(rule, support)
            if support < self.min_support:
                verdict = f"support {support} < {self.min_support}"
            elif support / (support + against) < self.min_confidence:
                verdict = f"confidence {support}/{support + against} < {self.min_confidence}"
            else:
                verdict = "kept"
                viable.append(rule)
            stats.append(CandidateStats(rule, by, support, against, verdict))

        shown = {rule_key(r): pool[rule_key(r)][1] for r in viable}
        survivors = _resolve_conflicts(viable, shown)
        # Best first: most pairs improved, then the precise kinds (an exact closing before a sentence
        # limit), then most pairs whose diff shows the rule (so a greeting strip that 1500 pairs show
        # goes before a longer one, seen in 8 garbled pairs, that also "improves" them by removing the
        # greeting along with words users kept).
        ordered = sorted(survivors, key=lambda r: (-r.support, KIND_RANK[kind(r)], -shown[rule_key(r)], repr(rule_key(r))))
        chosen = self._combine(pairs, targets, baseline, ordered)
        verdicts = {rule_key(r): "kept" for r in chosen}
        final_stats = []
        for s in stats:
            if s.verdict == "kept":
                key = rule_key(s.rule)
                if key in verdicts:
                    verdict = "kept"
                elif any(rule_key(r) == key for r in survivors):
                    verdict = "adds nothing, or makes a pair worse, with the rules chosen before it"
                else:
                    verdict = "lost a conflict with a better-supported rule"
                s = CandidateStats(s.rule, s.proposed_by, s.support, s.against, verdict)
            final_stats.append(s)
        final_stats.sort(key=lambda s: sort_key(s.rule))
        return Synthesis(rules=sorted(chosen, key=sort_key), candidates=final_stats, train_pairs=len(pairs))

    def _combine(self, pairs: Sequence[Pair], targets: list[list[str]], baseline: list[float], ordered: list[Rule]) -> list[Rule]:
        chosen: list[Rule] = []
        scores = list(baseline)
        for rule in ordered:
            if len(chosen) >= self.max_rules:
                break
            trial = [*chosen, rule]
            new = [similarity_to(apply_output(trial, p.bad), t) for p, t in zip(pairs, targets, strict=True)]
            if any(n < s - EPS for n, s in zip(new, scores, strict=True)):
                continue
            if sum(new) <= sum(scores) + EPS:
                continue
            chosen, scores = trial, new
        return chosen


def _fits(rule: Rule) -> bool:
    for name in ("old", "new", "text"):
        value = getattr(rule, name, None)
        if value is not None and not 0 < len(value) <= MAX_PHRASE_CHARS:
            return False
    return True


def _resolve_conflicts(rules: list[Rule], shown: dict[tuple[object, ...], int]) -> list[Rule]:
    """Keep a rule only if it beats every rule it conflicts with (ties keep none).

    The evidence compared is first how many pairs *show* the rule in their diff (a
    sign-off most users add beats the variant a few users garbled), then how many
    pairs it improves.
    """

    def strength(rule: Rule) -> tuple[int, int]:
        return shown.get(rule_key(rule), 0), rule.support

    kept = []
    for rule in rules:
        rivals = [strength(other) for other in rules if other is not rule and conflicts(rule, other)]
        if not rivals or strength(rule) > max(rivals):
            kept.append(rule)
    return kept
