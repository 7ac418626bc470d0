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
   Before that, a candidate that lost its confidence on some pairs, or that pairs showing a
   rival correction contradict, is offered again under the condition that separates the pairs
   (:mod:`.conditions`); token-class and casing candidates come from :mod:`.params`.
4. **Combine greedily**, best first (most pairs improved, then precise kinds, then most
   pairs showing it):
   a rule joins only if, together with the rules already chosen, it improves the
   total and makes no training pair worse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

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

from . import conditions, params
from .diff import DiffAnalysis, Edit, FeedbackDiffAnalyzer, similarity_to, words
from .pairs import Pair

EPS = 1e-9
SEARCH_PAIRS = 400  # the rule-set search ranks on at most this many training pairs (then checks all)
MAX_SWAP_ROUNDS = 4  # improving swaps of alternative explanations tried after the greedy
MAX_ALTERNATIVES = 3  # alternatives tried per chosen rule (the best supported)
MAX_SWAP_TRIES = 8  # rebuilds the swaps may cost in all (bounds synthesis time)


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
    # Training pairs whose meaning the correction changed (see ``rewrite_difference``): they
    # proposed no rules and were not scored (the held-out validation still counts them).
    rewrites: list[str] = field(default_factory=list)


class OutcomeCache:
    """What a rule set makes of a pair: (similarity to the fixed answer, exact, changed), kept
    across syntheses.

    Under steady feedback a function is re-synthesised every ``max_delay_s`` with mostly the
    same pairs and candidates, and applying rule sets to answers is most of a synthesis's
    time (it runs on the worker, between batches). Values depend only on the key, so a hit
    returns exactly what applying would; two generations of ``limit`` entries bound memory.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._new: dict[tuple[Any, ...], tuple[float, bool, bool]] = {}
        self._old: dict[tuple[Any, ...], tuple[float, bool, bool]] = {}

    def get(self, key: tuple[Any, ...]) -> tuple[float, bool, bool] | None:
        hit = self._new.get(key)
        if hit is None:
            hit = self._old.get(key)
            if hit is not None:
                self.put(key, hit)
        return hit

    def put(self, key: tuple[Any, ...], value: tuple[float, bool, bool]) -> None:
        if len(self._new) >= self.limit:
            self._old, self._new = self._new, {}
        self._new[key] = value

    def outcome(self, rules: list[Rule], keys: frozenset[Any], pair: Pair, target: list[str]) -> tuple[float, bool, bool]:
        """(similarity of ``rules``' output to ``target``, output == fixed, output != bad); ``keys``
        are the rules' :func:`rule_key` s."""
        key = (keys, pair.bad, pair.fixed)
        hit = self.get(key)
        if hit is None:
            out = apply_output(rules, pair.bad) if rules else pair.bad
            hit = (similarity_to(out, target), out == pair.fixed, out != pair.bad)
            self.put(key, hit)
        return hit

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


class RuleSetSynthesizer:
    """Synthesises a rule set from feedback pairs; deterministic for a given input."""

    def __init__(
        self,
        *,
        min_support: int = 3,
        min_confidence: float = 0.9,
        max_rules: int = 40,
        analyzer: FeedbackDiffAnalyzer | None = None,
        rewrite_difference: float | None = None,
    ) -> None:
        """``rewrite_difference``: a pair whose semantic difference (1 - cosine of the analyzer's
        embeddings) is above it rewrote the answer's meaning rather than correcting its form, so
        it proposes no candidates; None, or an analyzer without an embedder, keeps every pair
        (token Jaccard is too blunt for this: short answers with a swapped sign-off score as rewrites)."""
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.max_rules = max_rules
        self.analyzer = analyzer or FeedbackDiffAnalyzer()
        self.rewrite_difference = rewrite_difference
        self.outcomes = OutcomeCache()

    def is_rewrite(self, analysis: DiffAnalysis) -> bool:
        """Whether a pair changed what the answer says (by the embedder), not only how."""
        return (
            self.rewrite_difference is not None
            and self.analyzer.embedder is not None
            and analysis.semantic_difference > self.rewrite_difference
        )

    # ----------------------------------------------------------------- proposing
    def propose(self, analysis: DiffAnalysis) -> list[Rule]:
        """Candidate rules one pair suggests (not yet rules: they still need support).

        Each edit proposes its rules, and so does each part of every way of cutting an
        edit in two, so corrections the alignment merged (a replaced closing right
        before an appended signature) are also proposed one by one.
        """
        seen: set[tuple[object, ...]] = set()
        unique = []
        for group in self.propose_by_edit(analysis):
            for rule in group:
                key = rule_key(rule)
                if key not in seen:
                    seen.add(key)
                    unique.append(rule)
        return unique

    def propose_by_edit(self, analysis: DiffAnalysis) -> list[list[Rule]]:
        """:meth:`propose`, one list per edit (the rules of the edit and of all its cuts), then one
        list of the pair's token-class and casing candidates (:mod:`.params`), if any."""
        groups = []
        for k, edit in enumerate(analysis.edits):
            out = self._from_edit(analysis, edit)
            for first, second in analysis.splits[k] if k < len(analysis.splits) else ():
                out.extend(self._from_edit(analysis, first))
                out.extend(self._from_edit(analysis, second))
            groups.append([r for r in out if _fits(r)])
        tokens = [r for r in params.propose(analysis) if _fits(r)]  # token classes and casing (params.py)
        if tokens:
            groups.append(tokens)
        return groups

    @staticmethod
    def _from_edit(analysis: DiffAnalysis, edit: Edit) -> list[Rule]:
        out: list[Rule] = []
        if edit.at_start and edit.at_end:
            return out  # a complete rewrite teaches nothing general
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
        return out

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
        partners: dict[tuple[object, ...], set[tuple[object, ...]]] = {}  # rules proposed by one same edit
        whole: dict[tuple[object, ...], int] = {}  # pairs proposing a rule from a whole (uncut) edit
        rewrites: list[str] = []
        for pair in pairs:
            if pair.bad == pair.fixed:
                continue
            analysis = self.analyzer.analyze(pair.bad, pair.fixed)
            if self.is_rewrite(analysis):
                rewrites.append(pair.uuid)
                continue
            for edit in analysis.edits:
                for rule in self._from_edit(analysis, edit):
                    if not isinstance(rule, MaxSentences):  # a limit is inferred from the edit, not its text
                        whole[rule_key(rule)] = whole.get(rule_key(rule), 0) + 1
            for group in self.propose_by_edit(analysis):
                keys = set()
                for rule in group:
                    key = rule_key(rule)
                    keys.add(key)
                    entry = proposed.setdefault(key, (rule, set()))
                    entry[1].add(pair.uuid)
                for key in keys:
                    partners.setdefault(key, set()).update(keys)
        trained = len(pairs)
        if rewrites:  # a rewrite is no evidence either way: it neither proposes nor votes on a rule
            gone = set(rewrites)
            pairs = [p for p in pairs if p.uuid not in gone]
        pool: dict[tuple[object, ...], tuple[Rule, int]] = {}
        for key, (rule, by) in proposed.items():
            if len(by) >= self.min_support:
                pool[key] = (rule, len(by))
        for rule in [*(FormatRule(name=n) for n in hook_template.FORMATS), *current, *extra]:
            pool.setdefault(rule_key(rule), (rule, 0))
        shown_by = {key: by for key, (_rule, by) in proposed.items() if key in pool}

        targets = [words(p.fixed) for p in pairs]
        folded = [p.bad.casefold() for p in pairs]
        baseline = [similarity_to(p.bad, t) for p, t in zip(pairs, targets, strict=True)]
        stats: list[CandidateStats] = []
        viable: list[Rule] = []
        touch: dict[tuple[object, ...], list[int]] = {}  # training pairs a candidate alone changes
        gain: dict[tuple[object, ...], float] = {}  # its summed similarity gain alone
        def measure(rule: Rule) -> tuple[list[int], list[int], list[int], float]:
            """Training pairs the rule alone touches, improves and makes worse; its summed gain."""
            touched: list[int] = []
            improved: list[int] = []
            worse: list[int] = []
            total = 0.0
            may_touch = _quick_filter(rule)
            keys = frozenset((rule_key(rule),))
            for i, (pair, target, base) in enumerate(zip(pairs, targets, baseline, strict=True)):
                if may_touch is not None and not may_touch(pair.bad, folded[i]):
                    continue
                score, _exact, changed = self.outcomes.outcome([rule], keys, pair, target)
                if not changed:
                    continue
                touched.append(i)
                total += score - base
                if score > base + EPS:
                    improved.append(i)
                elif score < base - EPS:
                    worse.append(i)
            return touched, improved, worse, total

        queue = sorted(pool, key=repr)
        while queue:
            key = queue.pop(0)
            rule, by = pool[key]
            if key in banned:
                stats.append(CandidateStats(rule, by, 0, 0, "vetoed by a rollback"))
                continue
            touched, improved, worse, total = measure(rule)
            support, against = len(improved), len(worse)
            superseded = False
            if rule.when is None and support >= self.min_support:
                # Helps some answers and hurts others, or touches answers whose own diffs show a rival
                # (another sign-off where this one is added): the condition that separates them
                # (conditions.py) makes a new candidate, measured like the others, which replaces this one.
                mine = shown_by.get(key, set())
                rivals: set[str] = set()
                if mine:
                    for okey in list(pool):
                        theirs = shown_by.get(okey, set())
                        # Only a rival other pairs show (not an alternative cut of the same edits).
                        if okey != key and theirs and 2 * len(theirs & mine) < min(len(theirs), len(mine)) and conflicts(rule, pool[okey][0]):
                            rivals |= theirs - mine
                # Rivals count only when they are no small minority (a garbled variant of a sign-off is).
                if len(rivals) < (1 - self.min_confidence) * len(mine):
                    rivals = set()
                contested = [i for i in touched if pairs[i].uuid in rivals]
                # Worse pairs count only when they cost the rule its confidence (otherwise it stays as it is).
                hurt = worse if support < self.min_confidence * (support + against) else []
                harmed = sorted(set(hurt) | set(contested))
                helped = [i for i in improved if i not in contested and (not mine or pairs[i].uuid in mine)]
                when = conditions.learn([pairs[i].bad for i in helped], [pairs[i].bad for i in harmed], self.min_support, self.min_confidence) if harmed else None
                if when is not None:
                    superseded = True
                    guarded = msgspec.structs.replace(rule, when=when)
                    gkey = rule_key(guarded)
                    if gkey not in pool and gkey not in banned:
                        pool[gkey] = (guarded, by)
                        if key in shown_by:
                            shown_by[gkey] = shown_by[key]
                        queue.append(gkey)
            touch[key] = touched
            gain[key] = total
            rule = with_support(rule, support, against)
            if superseded:
                verdict = "replaced by its conditional variant"
            elif support < self.min_support:
                verdict = f"support {support} < {self.min_support}"
            elif support / (support + against) < self.min_confidence:
                verdict = f"confidence {support}/{support + against} < {self.min_confidence}"
            else:
                verdict = "kept"
                viable.append(rule)
            stats.append(CandidateStats(rule, by, support, against, verdict))

        shown = {rule_key(r): pool[rule_key(r)][1] for r in viable}
        survivors = _resolve_conflicts(viable, shown, gain, shown_by)
        # Best first: most pairs improved, then the precise kinds (an exact closing before a sentence
        # limit), then most pairs whose diff shows the rule (so a greeting strip that 1500 pairs show
        # goes before a longer one, seen in 8 garbled pairs, that also "improves" them by removing the
        # greeting along with words users kept).
        # Between equals, a token rule without a preceding word goes first: it masks every e-mail
        # address, not only those after the word the training answers happened to use.
        ordered = sorted(
            survivors,
            key=lambda r: (-r.support, KIND_RANK[kind(r)], -shown[rule_key(r)], getattr(r, "after", None) is not None, repr(rule_key(r))),
        )
        chosen = self._select(pairs, targets, baseline, ordered, touch, shown_by, partners, whole)
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
        return Synthesis(rules=sorted(chosen, key=sort_key), candidates=final_stats, train_pairs=trained, rewrites=rewrites)

    def _select(
        self,
        pairs: Sequence[Pair],
        targets: list[list[str]],
        baseline: list[float],
        ordered: list[Rule],
        touch: dict[tuple[object, ...], list[int]],
        shown_by: dict[tuple[object, ...], set[str]],
        partners: dict[tuple[object, ...], set[tuple[object, ...]]],
        whole: dict[tuple[object, ...], int],
    ) -> list[Rule]:
        """Search for the rule set that maps the most training pairs exactly (then: the most similar).

        1. *Greedy, best improvement first*: every remaining candidate is tried with the
           rules chosen so far on the pairs it touches; the one that makes the most pairs
           exact (then gains the most similarity) joins, if it makes no pair worse than
           the rules before it did (nor an exact pair inexact).
        2. *Swaps*: a chosen rule is exchanged for an alternative explanation of the same
           edits (a conflicting candidate the same pairs show, e.g. an appended "Thank you.
           — Acme Support" for an appended "— Acme Support"), the greedy completes the set
           again, and the swap stays if more pairs come out exact.  This finds the
           decomposition a greedy cannot see: "Thx!" → "Thank you." only pays once the
           shorter signature is chosen.
        3. Steps 1-2 rank on at most :data:`SEARCH_PAIRS` pairs (evenly spread) and try at
           most :data:`MAX_SWAP_TRIES` swaps, so the cost is bounded; the result is then checked on every pair and rules are
           re-admitted one by one, in the search's order, only if no pair gets worse.
        4. Rules that add nothing any more are dropped.
        """
        n = len(pairs)
        step = max(1, -(-n // SEARCH_PAIRS))
        sample = list(range(0, n, step))
        search = _Search(pairs, targets, baseline, sample, touch, whole, self.min_confidence, self.outcomes)
        chosen = search.greedy([], ordered)
        best = search.objective(chosen)
        tries = 0
        for _round in range(MAX_SWAP_ROUNDS):
            improved = False
            for rule in list(chosen):
                key = rule_key(rule)
                by = shown_by.get(key, set())
                near_rule = partners.get(key, set())
                # Alternatives: other cuts of the same edits (partners) and rules the same pairs show
                # that compete for the same text; those shown by whole edits first.
                alternatives = sorted(
                    (
                        alt for alt in ordered
                        if all(alt is not c for c in chosen)
                        and (rule_key(alt) in near_rule or (conflicts(rule, alt) and by & shown_by.get(rule_key(alt), set())))
                    ),
                    key=lambda alt: -whole.get(rule_key(alt), 0),
                )[:MAX_ALTERNATIVES]
                for alt in alternatives:
                    if tries >= MAX_SWAP_TRIES:
                        break
                    tries += 1
                    # Rebuild around the alternative: the rules proposed by the same edits as ``rule`` or
                    # ``alt`` (which completed ``rule`` and may not complete ``alt``) compete again.
                    near = partners.get(rule_key(rule), set()) | partners.get(rule_key(alt), set())
                    start = [alt, *(r for r in chosen if r is not rule and rule_key(r) not in near)]
                    if any(conflicts(alt, r) for r in start[1:]):
                        continue
                    pool = [r for r in ordered if r is not rule and (rule_key(r) in near or any(r is c for c in chosen))]
                    trial = search.greedy(start, pool)
                    score = search.objective(trial)
                    if score > best:
                        chosen, best, improved = trial, score, True
                        break
                if improved:
                    break
            if not improved:
                break
        full = _Search(pairs, targets, baseline, list(range(n)), touch, whole, self.min_confidence, self.outcomes)
        chosen = full.greedy([], chosen, readmit=True) if step > 1 or not full.safe(chosen) else chosen
        return full.prune(chosen[: self.max_rules])


class _Search:
    """Rule sets scored on a subset of the training pairs (indices into ``pairs``)."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        targets: list[list[str]],
        baseline: list[float],
        sample: list[int],
        touch: dict[tuple[object, ...], list[int]],
        whole: dict[tuple[object, ...], int] | None = None,
        min_confidence: float = 0.9,
        outcomes: OutcomeCache | None = None,
    ) -> None:
        self.pairs, self.targets, self.baseline, self.sample = pairs, targets, baseline, sample
        self.outcomes = outcomes if outcomes is not None else OutcomeCache()
        self._sets: dict[frozenset[int], frozenset[Any]] = {}  # local set id -> the rules' keys
        self.min_confidence = min_confidence
        self.whole = whole or {}
        inside = set(sample)
        self.touch = {key: [i for i in idx if i in inside] for key, idx in touch.items()}
        self._ids: dict[tuple[object, ...], int] = {}
        # (rule set, pair) → (score, exact): the swaps' rebuilds try the same sets again.
        self._memo: dict[tuple[frozenset[int], int], tuple[float, bool]] = {}

    def _set_id(self, rules: list[Rule]) -> frozenset[int]:
        return frozenset(self._ids.setdefault(rule_key(r), len(self._ids)) for r in rules)

    def score(self, rules: list[Rule], i: int, set_id: frozenset[int] | None = None) -> tuple[float, bool]:
        key = (self._set_id(rules) if set_id is None else set_id, i)
        hit = self._memo.get(key)
        if hit is None:
            ids = key[0]
            keys = self._sets.get(ids)
            if keys is None:
                keys = self._sets[ids] = frozenset(rule_key(r) for r in rules)
            score, exact, _changed = self.outcomes.outcome(rules, keys, self.pairs[i], self.targets[i])
            hit = self._memo[key] = (score, exact)
        return hit

    def outputs(self, rules: list[Rule]) -> tuple[dict[int, float], dict[int, bool]]:
        scores: dict[int, float] = {}
        exact: dict[int, bool] = {}
        set_id = self._set_id(rules)
        for i in self.sample:
            scores[i], exact[i] = self.score(rules, i, set_id)
        return scores, exact

    def objective(self, rules: list[Rule]) -> tuple[int, float, int, int]:
        """Pairs exact, then summed similarity; between equally good explanations the one with
        fewer rules (one sentence limit rather than a deletion per cut sentence), then the one
        whose rules more pairs show as whole edits (a stripped padding plus an appended
        "-- Support Team" rather than the padding replaced by "-- Support" plus an appended "Team")."""
        scores, exact = self.outputs(rules)
        whole = sum(self.whole.get(rule_key(r), 0) for r in rules)
        return sum(exact.values()), round(sum(scores.values()), 6), -len(rules), whole

    def safe(self, rules: list[Rule]) -> bool:
        """No pair scores below its own bad output, none that was exact is not."""
        scores, exact = self.outputs(rules)
        return all(
            scores[i] >= self.baseline[i] - EPS and (exact[i] or self.pairs[i].bad != self.pairs[i].fixed) for i in self.sample
        )

    def admissible(self, scores: dict[int, float], exact: dict[int, bool], new: dict[int, float], now: dict[int, bool]) -> bool:
        """Whether a step from (scores, exact) to (new, now) may be taken.

        No pair may fall below its own bad output, no exact pair may become inexact, and
        of the pairs the step changes at least ``min_confidence`` must improve: a
        reviewer's one-off rewrite next to a systematic correction (a signature they
        re-worded) does not block the correction for everyone else.
        """
        better = worse = 0
        for i in self.sample:
            if new[i] < self.baseline[i] - EPS or (exact[i] and not now[i]):
                return False
            if new[i] > scores[i] + EPS or now[i] > exact[i]:
                better += 1
            elif new[i] < scores[i] - EPS:
                worse += 1
        return better > 0 and better >= self.min_confidence * (better + worse)

    def greedy(self, start: list[Rule], candidates: list[Rule], *, readmit: bool = False) -> list[Rule]:
        """Best improvement from ``start`` (or, with ``readmit``, first improvement in the given order)."""
        chosen = list(start)
        scores, exact = self.outputs(chosen)
        remaining = [r for r in candidates if all(r is not c for c in chosen)]
        while remaining:
            ranked: list[tuple[int, float, int, Rule]] = []
            for rank, rule in enumerate(remaining):
                if any(conflicts(rule, c) for c in chosen):
                    continue
                if readmit:
                    ranked.append((0, 0.0, rank, rule))
                    continue
                trial = [*chosen, rule]
                trial_id = self._set_id(trial)
                d_exact, d_sim, broken = 0, 0.0, False
                for i in self.touch.get(rule_key(rule), ()):
                    score, now = self.score(trial, i, trial_id)
                    if score < self.baseline[i] - EPS or (exact[i] and not now):
                        broken = True
                        break
                    d_exact += now - exact[i]
                    d_sim += score - scores[i]
                if not broken and (d_exact > 0 or d_sim > EPS):
                    ranked.append((-d_exact, -d_sim, rank, rule))
            ranked.sort(key=lambda t: t[:3])
            for _de, _ds, _rank, rule in ranked:
                trial = [*chosen, rule]
                new, now = self.outputs(trial)
                remaining.remove(rule)
                if not self.admissible(scores, exact, new, now):
                    continue
                if (sum(now.values()), sum(new.values())) <= (sum(exact.values()), sum(scores.values()) + EPS):
                    continue
                chosen, scores, exact = trial, new, now
                break
            else:
                break
        return chosen

    def prune(self, chosen: list[Rule]) -> list[Rule]:
        """Drop rules whose removal loses no exact pair and no similarity anywhere."""
        scores, exact = self.outputs(chosen)
        for rule in list(reversed(chosen)):
            trial = [r for r in chosen if r is not rule]
            new, now = self.outputs(trial)
            if all(new[i] >= scores[i] - EPS and now[i] >= exact[i] for i in self.sample):
                chosen, scores, exact = trial, new, now
        return chosen


def _quick_filter(rule: Rule) -> Callable[[str, str], bool] | None:
    """A cheap test that is false only where ``rule`` alone cannot change a text (None: always try)."""
    if isinstance(rule, (ReplacePhrase, DeletePhrase)):
        old = rule.old.casefold()
        return lambda _text, folded: old in folded
    if isinstance(rule, StripPrefix):
        return lambda text, _folded: text.lstrip().startswith(rule.text)
    if isinstance(rule, StripSuffix):
        return lambda text, _folded: text.rstrip().endswith(rule.text)
    return None


def _fits(rule: Rule) -> bool:
    for name in ("old", "new", "text"):
        value = getattr(rule, name, None)
        if value is not None and not 0 < len(value) <= MAX_PHRASE_CHARS:
            return False
    return True


def _resolve_conflicts(
    rules: list[Rule],
    shown: dict[tuple[object, ...], int],
    gain: dict[tuple[object, ...], float],
    shown_by: dict[tuple[object, ...], set[str]],
) -> list[Rule]:
    """Keep a rule only if it beats every rule it *contradicts* (ties keep none).

    Two conflicting rules contradict each other when different pairs show them:
    fewer than half of the pairs showing the rarer one also show the other (users
    writing "client" against users writing "patron").  Conflicting rules the same
    pairs show are alternative explanations of one correction (an appended
    "Thank you. — Acme Support", or "Thx!" → "Thank you." and an appended
    "— Acme Support"): they are all kept, and the search picks among them by what
    they explain together with the other rules.

    The evidence compared is first how many pairs *show* the rule in their diff (a
    sign-off most users add beats the variant a few users garbled), then how many
    pairs it improves, then by how much (of two cuts of the same edits, "Thx!" →
    "Thank you." explains more than "Thx!" → "Thank").
    """

    def strength(rule: Rule) -> tuple[int, int, float]:
        return shown.get(rule_key(rule), 0), rule.support, round(gain.get(rule_key(rule), 0.0), 6)

    def contradict(a: Rule, b: Rule) -> bool:
        pa, pb = shown_by.get(rule_key(a), set()), shown_by.get(rule_key(b), set())
        if not pa or not pb:
            return True  # a format, external or current rule against a shown one: evidence decides
        return 2 * len(pa & pb) < min(len(pa), len(pb))

    kept = []
    for rule in rules:
        rivals = [strength(other) for other in rules if other is not rule and conflicts(rule, other) and contradict(rule, other)]
        if not rivals or strength(rule) > max(rivals):
            kept.append(rule)
    return kept
