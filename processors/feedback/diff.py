"""Word-level diff of a feedback pair ``bad_output → fixed_output``.

The seed split outputs into character fragments; here both texts are split into
word and punctuation tokens (whitespace kept only as spans between them), aligned
with difflib's opcodes on case-folded tokens, and every change becomes an
:class:`Edit` that knows its exact text in both outputs, its context and whether
it sits at the start or the end.  Distances come from rapidfuzz.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from rapidfuzz.distance import Indel, Levenshtein

_TOKEN = re.compile(r"\w+|[^\w\s]+")

Embedder = Callable[[str], Sequence[float]]

# A changed region of m old and n new words has about (m + 1) * (n + 1) ways to be cut in two;
# above this many, it is cut only after punctuation (between sentences or clauses).
MAX_SPLIT_GRID = 30


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Words (any script) and runs of punctuation, with their character spans."""
    return [Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


@dataclass(frozen=True, slots=True)
class Edit:
    """One change between the outputs, in tokens ``bad[i1:i2] → fixed[j1:j2]``."""

    op: str  # "replace" | "delete" | "insert"
    old: str  # exact text of the changed tokens in bad_output ("" for an insert)
    new: str  # exact text in fixed_output ("" for a delete)
    at_start: bool  # the change begins both outputs
    at_end: bool  # the change ends both outputs
    before: str  # the token before the change in bad_output ("" at the start)
    after: str  # the token after the change in bad_output ("" at the end)
    old_span: tuple[int, int]  # character span in bad_output
    new_span: tuple[int, int]  # character span in fixed_output
    capitalized: bool = False  # a start deletion that also capitalised the next word


@dataclass(frozen=True, slots=True)
class DiffAnalysis:
    """Everything the synthesiser needs to know about one pair."""

    bad: str
    fixed: str
    edits: tuple[Edit, ...]
    token_distance: float  # normalised Levenshtein distance over tokens, 0 = same words
    similarity: float  # word-level similarity (see :func:`similarity`), 1 = same words
    semantic_difference: float  # 1 - cosine of embeddings, or 1 - token Jaccard without an embedder
    semantic_method: str = "token-jaccard"  # which of the two measured semantic_difference
    # Every way of cutting each edit in two (see :func:`FeedbackDiffAnalyzer.splits`): touching
    # corrections the alignment merged into one edit ("Thx!" → "Thank you. — Acme Support") show
    # up here as their parts ("Thx!" → "Thank you." then an appended " — Acme Support").
    # ``splits[k]`` holds the cuts of ``edits[k]``.
    splits: tuple[tuple[tuple[Edit, Edit], ...], ...] = ()

    @property
    def unchanged(self) -> bool:
        return self.bad == self.fixed


def similarity(a: str, b: str) -> float:
    """Word-level similarity in [0, 1]: normalised Indel over word and punctuation tokens.

    This is the score validation uses.  At word level, a rule that swaps one wrong
    word for another wrong word is neutral, never "worse" by a letter's accident.
    """
    return float(Indel.normalized_similarity(words(a), words(b)))


def words(text: str) -> list[str]:
    """The token texts :func:`similarity` compares (cache them for a text scored many times)."""
    return _TOKEN.findall(text)


def similarity_to(a: str, b_words: list[str]) -> float:
    """:func:`similarity` against a text already split with :func:`words`."""
    return float(Indel.normalized_similarity(_TOKEN.findall(a), b_words))


class FeedbackDiffAnalyzer:
    """Analyses ``bad_output → fixed_output`` pairs at word level (the seed's name, not its method)."""

    def __init__(self, embedder: Embedder | None = None, *, embedder_name: str = "embedding") -> None:
        self.embedder = embedder
        self.semantic_method = f"cosine:{embedder_name}" if embedder is not None else "token-jaccard"

    def analyze(self, bad: str, fixed: str) -> DiffAnalysis:
        a, b = tokenize(bad), tokenize(fixed)
        regions = self._regions(a, b)
        edits = tuple(self._edit(bad, fixed, a, b, *r) for r in regions)
        return DiffAnalysis(
            bad=bad,
            fixed=fixed,
            edits=edits,
            splits=tuple(self._splits(bad, fixed, a, b, regions)),
            token_distance=Levenshtein.normalized_distance([t.text for t in a], [t.text for t in b]),
            similarity=similarity(bad, fixed),
            semantic_difference=self._semantic_difference(bad, fixed, a, b),
            semantic_method=self.semantic_method,
        )

    def _semantic_difference(self, bad: str, fixed: str, a: list[Token], b: list[Token]) -> float:
        if self.embedder is not None:
            u = np.asarray(self.embedder(bad), dtype=np.float64)
            v = np.asarray(self.embedder(fixed), dtype=np.float64)
            nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
            if nu == 0 or nv == 0:
                return 0.0 if nu == nv else 1.0
            return 1.0 - float(u @ v) / (nu * nv)
        sa = {t.text.casefold() for t in a if t.text[0].isalnum() or t.text[0] == "_"}
        sb = {t.text.casefold() for t in b if t.text[0].isalnum() or t.text[0] == "_"}
        if not sa and not sb:
            return 0.0
        return 1.0 - len(sa & sb) / len(sa | sb)

    @staticmethod
    def _regions(a: list[Token], b: list[Token]) -> list[tuple[int, int, int, int]]:
        """Changed token regions ``(i1, i2, j1, j2)``, neighbouring changes merged into one edit:
        "Mr. Customer" → "valued customer" is one phrase."""
        merged: list[list[int]] = []
        for tag, i1, i2, j1, j2 in _token_ops(a, b):
            if tag == "equal":
                continue
            if merged and merged[-1][1] == i1 and merged[-1][3] == j1:
                merged[-1][1], merged[-1][3] = i2, j2
            else:
                merged.append([i1, i2, j1, j2])
        return [(i1, i2, j1, j2) for i1, i2, j1, j2 in merged]

    def _splits(
        self, bad: str, fixed: str, a: list[Token], b: list[Token], regions: list[tuple[int, int, int, int]]
    ) -> list[tuple[tuple[Edit, Edit], ...]]:
        """Each region cut in two at every pair of word boundaries ``(k, l)`` (both parts non-empty).

        Small regions are cut at every space; pure insertions and deletions, and regions
        with more than :data:`MAX_SPLIT_GRID` cuts, only after punctuation, so long
        rewrites do not flood the synthesiser with fragments.
        """
        out: list[tuple[tuple[Edit, Edit], ...]] = []
        for i1, i2, j1, j2 in regions:
            cuts: list[tuple[Edit, Edit]] = []
            # Cut only where whitespace separates tokens: "Thx!" is one unit, never "Thx" and "!".
            # A pure deletion or insertion is cut only after punctuation: two deleted sentences
            # are two candidates, but not every run of words inside them.
            # So is a region with more than MAX_SPLIT_GRID cuts (a padding replaced by a signature).
            pure = i1 == i2 or j1 == j2
            ks = [k for k in range(i1, i2 + 1) if k in (i1, i2) or _cut(a, k, pure)]
            ls = [l for l in range(j1, j2 + 1) if l in (j1, j2) or _cut(b, l, pure)]
            if len(ks) * len(ls) > MAX_SPLIT_GRID:
                ks = [k for k in ks if k in (i1, i2) or _cut(a, k, True)]
                ls = [l for l in ls if l in (j1, j2) or _cut(b, l, True)]
            for k in ks:
                for l in ls:
                    # Not the two ends, nor the cuts that only turn a replacement into a deletion
                    # beside an insertion (the edit itself already says that).
                    if (k, l) in ((i1, j1), (i2, j2), (i1, j2), (i2, j1)):
                        continue
                    cuts.append((self._edit(bad, fixed, a, b, i1, k, j1, l), self._edit(bad, fixed, a, b, k, i2, l, j2)))
            out.append(tuple(cuts))
        return out

    @staticmethod
    def _edit(bad: str, fixed: str, a: list[Token], b: list[Token], i1: int, i2: int, j1: int, j2: int) -> Edit:
        at_start = i1 == 0 and j1 == 0
        at_end = i2 == len(a) and j2 == len(b)
        capitalized = False
        if at_start and not at_end and j2 == j1 + 1 and i2 > i1 + 1:
            # "Hello, the customer…" → "The customer…": a deleted opening plus a capitalised first word.
            last, first = a[i2 - 1].text, b[j1].text
            if last != first and last.casefold() == first.casefold() and first[:1].isupper():
                i2, j2, capitalized = i2 - 1, j1, True
        if at_start:
            old_span = (0, a[i2].start if i2 < len(a) else len(bad))
            new_span = (0, b[j2].start if j2 < len(b) else len(fixed))
        elif at_end:
            old_span = (a[i1 - 1].end if i1 > 0 else 0, len(bad))
            new_span = (b[j1 - 1].end if j1 > 0 else 0, len(fixed))
        else:
            old_span = (a[i1].start, a[i2 - 1].end) if i2 > i1 else _point(a, i1, len(bad))
            new_span = (b[j1].start, b[j2 - 1].end) if j2 > j1 else _point(b, j1, len(fixed))
        op = "replace" if i2 > i1 and j2 > j1 else ("delete" if i2 > i1 else "insert")
        return Edit(
            op=op,
            old=bad[old_span[0] : old_span[1]],
            new=fixed[new_span[0] : new_span[1]],
            at_start=at_start,
            at_end=at_end,
            before=a[i1 - 1].text if i1 > 0 else "",
            after=a[i2].text if i2 < len(a) else "",
            old_span=old_span,
            new_span=new_span,
            capitalized=capitalized,
        )


def _cut(tokens: list[Token], k: int, after_punctuation: bool) -> bool:
    """Whether an edit may be cut before token ``k``: whitespace before it (and punctuation, if asked)."""
    if tokens[k - 1].end >= tokens[k].start:
        return False
    return not after_punctuation or not (tokens[k - 1].text[-1:].isalnum() or tokens[k - 1].text[-1:] == "_")


def _point(tokens: list[Token], i: int, end: int) -> tuple[int, int]:
    """The empty span where token ``i`` starts (the text's end past the last token)."""
    at = tokens[i].start if i < len(tokens) else end
    return at, at


def _token_ops(a: list[Token], b: list[Token]) -> list[tuple[str, int, int, int, int]]:
    """difflib opcodes on case-folded tokens, with case-only changes split out as one-token replaces."""
    matcher = difflib.SequenceMatcher(None, [t.text.casefold() for t in a], [t.text.casefold() for t in b], autojunk=False)
    ops: list[tuple[str, int, int, int, int]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            ops.append((tag, i1, i2, j1, j2))
            continue
        run = i1
        for k in range(i2 - i1):
            if a[i1 + k].text != b[j1 + k].text:
                if run < i1 + k:
                    ops.append(("equal", run, i1 + k, j1 + run - i1, j1 + k))
                ops.append(("replace", i1 + k, i1 + k + 1, j1 + k, j1 + k + 1))
                run = i1 + k + 1
        if run < i2:
            ops.append(("equal", run, i2, j1 + run - i1, j2))
    return ops



class _TextEmbedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> Any: ...


# Texts whose embeddings an analyzer keeps: synthesis re-analyses a function's whole window of
# pairs (up to feedback.max_pairs_per_function, two texts each) every time it runs, and only the
# new pairs' texts should cost a forward pass.  384 float32 = 1.5 KB a text, 6 MB in all.
EMBEDDING_CACHE = 4096


def semantic_analyzer(embedder: _TextEmbedder | None, *, cache: int = EMBEDDING_CACHE) -> FeedbackDiffAnalyzer:
    """An analyzer measuring semantic difference with ``embedder`` (e.g. the density engine's
    all-MiniLM-L6-v2), or token Jaccard without one; ``DiffAnalysis.semantic_method`` says which.
    Embeddings are remembered per text (least recently used out first)."""
    if embedder is None:
        return FeedbackDiffAnalyzer()

    @functools.lru_cache(maxsize=cache)
    def embed(text: str) -> Any:
        vector = np.asarray(embedder.embed([text])[0], dtype=np.float32)
        vector.setflags(write=False)
        return vector

    return FeedbackDiffAnalyzer(embed, embedder_name=embedder.name)
