"""The cost guard: count tokens offline, price them, refuse what the budgets do not allow.

Tokens are counted with toktok (BPE vocabularies compiled into the wheel, so no
network is needed, unlike tiktoken which downloads them).  The estimate follows
OpenAI's accounting for chat fine-tuning: every example's tokens (message contents
plus a few per message for the ChatML framing) × epochs are the billed training
tokens; validation tokens are not billed.  A model missing from the price table is
refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import toktok

from .dataset import Sample

# ChatML framing per OpenAI's cookbook: <|im_start|>{role}\n ... <|im_end|>\n, plus
# the assistant reply priming once per example.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_EXAMPLE = 3


def encoding_for(model: str, configured: str = "auto") -> str:
    """The BPE vocabulary to count with: o200k for the GPT-4o/4.1/5/o-series family, else cl100k."""
    if configured != "auto":
        return configured
    name = model.removeprefix("ft:")
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    return "cl100k_base"


def count_tokens(samples: Sequence[Sample], encoding: str) -> int:
    """Tokens of ``samples`` as the provider bills them for one epoch."""
    if not samples:
        return 0
    texts = [content for s in samples for _role, content in s.messages]
    counts = toktok.batch_count(texts, encoding)
    n_messages = len(texts)
    return sum(counts) + TOKENS_PER_MESSAGE * n_messages + TOKENS_PER_EXAMPLE * len(samples)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a job would cost; ``price_per_1m`` is None when the model has no price."""

    tokens_per_epoch: int
    epochs: int
    price_per_1m: float | None

    @property
    def tokens(self) -> int:
        """Billed training tokens (all epochs)."""
        return self.tokens_per_epoch * self.epochs

    @property
    def cost_usd(self) -> float:
        return 0.0 if self.price_per_1m is None else round(self.tokens * self.price_per_1m / 1_000_000, 6)


def estimate(train: Sequence[Sample], *, model: str, epochs: int, prices: Mapping[str, float], encoding: str = "auto") -> Estimate:
    return Estimate(count_tokens(train, encoding_for(model, encoding)), epochs, prices.get(model))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str | None = None


def check_budget(est: Estimate, *, model: str, max_job_usd: float, max_day_usd: float, spent_today_usd: float) -> Verdict:
    """Allow a billed job only for a priced model within the per-job and per-day budgets."""
    if est.price_per_1m is None:
        return Verdict(False, f"no price for model {model!r} in training.prices: refusing to guess what it costs")
    if est.cost_usd > max_job_usd:
        return Verdict(
            False, f"estimated ${est.cost_usd:.4f} ({est.tokens} training tokens) is over the per-job budget ${max_job_usd:.2f}"
        )
    if spent_today_usd + est.cost_usd > max_day_usd:
        return Verdict(
            False,
            f"estimated ${est.cost_usd:.4f} on top of ${spent_today_usd:.4f} already started today (UTC) "
            f"is over the per-day budget ${max_day_usd:.2f}",
        )
    return Verdict(True)
