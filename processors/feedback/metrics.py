"""Prometheus metrics of the feedback engine.

The function label is bounded by the registry's shared :class:`BoundedLabels`
(see :func:`stream.metrics.function_labels`); a function's counters, refusals by
every reason included, start at 0 the first time it is seen.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.events import HookRelease
from stream.metrics import LATENCY_BUCKETS, BoundedLabels, function_labels

from .validation import HELDOUT_DROP, NO_PAIRS, WORSE_PAIRS

REFUSAL_REASONS = (WORSE_PAIRS, HELDOUT_DROP, NO_PAIRS)


class FeedbackMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, labels: BoundedLabels | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._labels = labels or function_labels(self.registry)
        self._seen: set[str] = set()
        r = self.registry
        self.pairs = Counter("vt_feedback_pairs_total", "Feedback pairs accepted for synthesis", ["function"], registry=r)
        self.synth_runs = Counter(
            "vt_feedback_synthesis_runs_total", "Rule syntheses run (debounced, per function)", ["function"], registry=r
        )
        self.synth_errors = Counter(
            "vt_feedback_synthesis_errors_total", "Syntheses that raised (logged; retried on the next new pair)", ["function"], registry=r
        )
        self.synth_seconds = Histogram(
            "vt_feedback_synthesis_seconds", "Time to synthesise and validate one function's rules", buckets=LATENCY_BUCKETS, registry=r
        )
        self.rules = Gauge("vt_hook_rules", "Rules in the current hook release", ["function"], registry=r)
        self.version = Gauge("vt_hook_version", "Version of the current hook release", ["function"], registry=r)
        self.releases = Counter("vt_hook_releases_total", "Hook releases published by this instance", ["function"], registry=r)
        self.refused = Counter(
            "vt_hook_releases_refused_total",
            "Candidate hooks refused by validation (worse_pairs, heldout_drop, no_pairs)",
            ["function", "reason"],
            registry=r,
        )
        self.exact = Gauge(
            "vt_hook_validation_exact_match_ratio",
            "Exact-match rate to fixed_output of the current release's validation (stage before=no hook, after=hook)",
            ["function", "split", "stage"],
            registry=r,
        )
        self.similarity = Gauge(
            "vt_hook_validation_similarity_ratio",
            "Mean similarity to fixed_output of the current release's validation",
            ["function", "split", "stage"],
            registry=r,
        )
        self.llm_proposals = Counter(
            "vt_feedback_llm_proposals_total", "Rules proposed by the LLM proposer", ["function"], registry=r
        )

    def fn(self, function: str) -> str:
        """The bounded label of ``function``, creating its counters at 0 when first seen."""
        label = self._labels(function)
        if label not in self._seen:
            self._seen.add(label)
            for counter in (self.pairs, self.synth_runs, self.synth_errors, self.releases):
                counter.labels(label)
            for reason in REFUSAL_REASONS:
                self.refused.labels(label, reason)
        return label

    def current(self, release: HookRelease) -> None:
        """Gauges follow the newest release known for a function (own or read from the topic)."""
        fn = self.fn(release.function_name)
        v = release.validation
        self.version.labels(fn).set(release.version)
        self.rules.labels(fn).set(len(release.rules))
        for split, stage, exact, sim in (
            ("all", "before", v.exact_match_before, v.similarity_before),
            ("all", "after", v.exact_match_after, v.similarity_after),
            ("heldout", "before", v.heldout_exact_match_before, v.heldout_similarity_before),
            ("heldout", "after", v.heldout_exact_match_after, v.heldout_similarity_after),
        ):
            self.exact.labels(fn, split, stage).set(exact)
            self.similarity.labels(fn, split, stage).set(sim)
