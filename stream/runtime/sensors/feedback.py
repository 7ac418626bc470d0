"""The feedback engine's sensor as Prometheus metrics.

The function label is bounded by the registry's shared :class:`BoundedLabels`
(see :func:`stream.runtime.metrics.function_labels`); a function's counters, refusals
by every reason included, start at 0 the first time it is seen.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.contract.events import HookRelease
from stream.contract.sensors import HOOK_REFUSALS, FeedbackSensor
from stream.runtime.metrics import LATENCY_BUCKETS, BoundedLabels, function_labels


class PrometheusFeedbackSensor(FeedbackSensor):
    """Pairs, syntheses, releases and refusals per function; the current release's version, rules and scores."""

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
            for reason in HOOK_REFUSALS:
                self.refused.labels(label, reason)
        return label

    # ----------------------------------------------------------------- the sensor
    def on_pair(self, function: str) -> None:
        self.pairs.labels(self.fn(function)).inc()

    def on_synthesis(self, function: str) -> None:
        self.synth_runs.labels(self.fn(function)).inc()

    def on_synthesis_error(self, function: str) -> None:
        self.synth_errors.labels(self.fn(function)).inc()

    def on_synthesis_seconds(self, seconds: float) -> None:
        self.synth_seconds.observe(seconds)

    def on_llm_proposals(self, function: str, count: int) -> None:
        self.llm_proposals.labels(self.fn(function)).inc(count)

    def on_refused(self, function: str, reason: str) -> None:
        self.refused.labels(self.fn(function), reason).inc()

    def on_release(self, function: str) -> None:
        self.releases.labels(self.fn(function)).inc()

    def on_current(self, release: HookRelease) -> None:
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
