"""Prometheus metrics of the density engine.

Function names come from producers, so the ``function`` label goes through
:class:`stream.metrics.BoundedLabels`: past ``density.metric_functions`` distinct
names, the rest share ``_other``.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.metrics import LATENCY_BUCKETS, BoundedLabels

QUANTILES = ("0.01", "0.1", "0.5", "0.9", "0.99")
STRATEGIES = ("steady", "anomaly")


class DensityMetrics:
    """Index size, density distribution, golden set, range-cap hits, evictions, insert latency."""

    def __init__(self, registry: CollectorRegistry | None = None, label_limit: int = 200) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.function = BoundedLabels(label_limit)
        r = self.registry
        self.index_size = Gauge("vt_density_index_logs", "Logs in a function's density index (after evictions)", ["function"], registry=r)
        self.density = Gauge(
            "vt_density_quantile", "Quantiles of D(i) = sum of cosine similarities within epsilon, over a function's indexed logs",
            ["function", "quantile"], registry=r,
        )
        self.golden = Gauge("vt_golden_samples", "Samples in a function's golden set", ["function", "strategy"], registry=r)
        self.golden_changes = Counter(
            "vt_golden_changes_total", "Samples entering (GoldenSample) or leaving (tombstone) the golden set",
            ["strategy", "change"], registry=r,
        )
        self.indexed = Counter("vt_density_indexed_total", "Execution logs added to a density index", ["function"], registry=r)
        self.skipped = Counter(
            "vt_density_skipped_total", "Valid logs not indexed: cache_hit (already indexed as the original call) or duplicate (uuid already indexed)",
            ["function", "reason"], registry=r,
        )
        self.cap_hits = Counter(
            "vt_density_range_cap_hits_total", "Range queries stopped at density.max_k with neighbours left (density truncated)",
            ["function"], registry=r,
        )
        self.brute_rows = Counter(
            "vt_density_brute_force_queries_total", "Range queries in HNSW mode answered by exact brute force (k near the index size, or HNSW short of k)",
            ["function"], registry=r,
        )
        self.evictions = Counter("vt_density_evictions_total", "Logs evicted from a density index", ["function", "reason"], registry=r)
        self.insert_seconds = Histogram(
            "vt_density_batch_insert_seconds", "Time to add one batch of a function's logs and update densities",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.selection_seconds = Histogram(
            "vt_density_selection_seconds", "Time to evict and re-evaluate one function's golden set", buckets=LATENCY_BUCKETS, registry=r,
        )

    def label(self, function: str) -> str:
        return self.function(function)

    def observe_index(self, function: str, size: int, densities: np.ndarray) -> None:
        fn = self.label(function)
        self.index_size.labels(fn).set(size)
        if len(densities):
            values = np.quantile(densities, [float(q) for q in QUANTILES])
            for q, v in zip(QUANTILES, values, strict=True):
                self.density.labels(fn, q).set(float(v))

    def observe_golden(self, function: str, counts: dict[str, int]) -> None:
        fn = self.label(function)
        for strategy in STRATEGIES:
            self.golden.labels(fn, strategy).set(counts.get(strategy, 0))

    def forget(self, function: str) -> None:
        """Drop a function's gauges (its partition moved to another instance)."""
        fn = self.label(function)
        if fn == BoundedLabels.OTHER:
            return
        for gauge, labelsets in (
            (self.index_size, [(fn,)]),
            (self.density, [(fn, q) for q in QUANTILES]),
            (self.golden, [(fn, s) for s in STRATEGIES]),
        ):
            for labels in labelsets:
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
