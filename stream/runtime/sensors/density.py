"""The density engine's sensor as Prometheus metrics.

Function names come from producers, so the ``function`` label goes through
:class:`stream.runtime.metrics.BoundedLabels` (shared by every engine of a registry):
past ``density.metric_functions`` distinct names, the rest share ``_other``.

The density distribution is a *gauge histogram* (``vt_density_distribution_bucket
{function,le}``: logs in the index now whose density is <= le): densities of
indexed logs change as neighbours arrive and leave, so a cumulative histogram of
observations would describe nothing; this one is what Grafana's heatmap shows.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeHistogramMetricFamily
from prometheus_client.registry import Collector

from stream.contract.sensors import DensitySensor
from stream.runtime.metrics import LATENCY_BUCKETS, BoundedLabels, function_labels

QUANTILES = ("0.01", "0.1", "0.5", "0.9", "0.99")
STRATEGIES = ("steady", "anomaly")
# D(i) is a sum of similarities in (1 - epsilon, 1]: about the number of neighbours.
DENSITY_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, float("inf"))


class _DensityDistribution(Collector):
    """``vt_density_distribution`` (gauge histogram), filled by :meth:`PrometheusDensitySensor.on_index`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_function: dict[str, tuple[list[int], float]] = {}

    def set(self, function: str, densities: np.ndarray) -> None:
        ordered = np.sort(densities)
        counts = np.searchsorted(ordered, np.asarray(DENSITY_BUCKETS), side="right").tolist()
        with self._lock:
            self._by_function[function] = (counts, float(ordered.sum()))

    def remove(self, function: str) -> None:
        with self._lock:
            self._by_function.pop(function, None)

    def collect(self) -> Iterator[GaugeHistogramMetricFamily]:
        family = GaugeHistogramMetricFamily(
            "vt_density_distribution",
            "Logs in a function's index by density D(i) (gauge histogram: logs whose density is <= le, now)",
            labels=["function"],
        )
        with self._lock:
            items = sorted(self._by_function.items())
        for fn, (counts, total) in items:
            buckets = [("+Inf" if b == float("inf") else repr(b), float(n)) for b, n in zip(DENSITY_BUCKETS, counts, strict=True)]
            family.add_metric([fn], buckets, total)
        yield family


class PrometheusDensitySensor(DensitySensor):
    """Index size, density distribution, golden set, range-cap hits, evictions, insert latency."""

    def __init__(self, registry: CollectorRegistry | None = None, labels: BoundedLabels | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.function = labels if labels is not None else function_labels(self.registry)
        self._seen: set[str] = set()
        r = self.registry
        self.index_size = Gauge("vt_density_index_logs", "Logs in a function's density index (after evictions)", ["function"], registry=r)
        self.density = Gauge(
            "vt_density_quantile", "Quantiles of D(i) = sum of cosine similarities within epsilon, over a function's indexed logs",
            ["function", "quantile"], registry=r,
        )
        self.golden = Gauge("vt_golden_samples", "Samples in a function's golden set", ["function", "strategy"], registry=r)
        self.golden_changes = Counter(
            "vt_golden_changes_total", "Samples entering (GoldenSample) or leaving (tombstone) the golden set",
            ["function", "strategy", "change"], registry=r,
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
        self.waiting = Gauge(
            "vt_density_unevaluated_age_seconds",
            "How long a function's oldest indexed-but-not-evaluated log has waited for evaluation (0: all evaluated)",
            ["function"], registry=r,
        )
        self.evaluation_wait = Histogram(
            "vt_density_evaluation_wait_seconds",
            "At each evaluation of a function: how long its oldest log had waited since it was indexed (wall clock)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0), registry=r,
        )
        self.distribution = _DensityDistribution()
        r.register(self.distribution)

    def label(self, function: str) -> str:
        """The bounded label of ``function``; its counters start at 0 the first time it is seen."""
        fn = self.function(function)
        if fn not in self._seen:
            self._seen.add(fn)
            self.cap_hits.labels(fn)
            self.brute_rows.labels(fn)
            self.indexed.labels(fn)
            for reason in ("cache_hit", "duplicate"):
                self.skipped.labels(fn, reason)
            for reason in ("ttl", "cap"):
                self.evictions.labels(fn, reason)
            for strategy in STRATEGIES:
                for change in ("enter", "leave"):
                    self.golden_changes.labels(fn, strategy, change)
        return fn

    # ------------------------------------------------------------------ the sensor
    def on_skipped(self, function: str, reason: str) -> None:
        self.skipped.labels(self.label(function), reason).inc()

    def on_indexed(self, function: str, count: int, seconds: float, cap_hits: int, brute_force_queries: int) -> None:
        label = self.label(function)
        self.indexed.labels(label).inc(count)
        self.insert_seconds.observe(seconds)
        if cap_hits:
            self.cap_hits.labels(label).inc(cap_hits)
        if brute_force_queries:
            self.brute_rows.labels(label).inc(brute_force_queries)

    def on_evicted(self, function: str, reason: str, count: int) -> None:
        self.evictions.labels(self.label(function), reason).inc(count)

    def on_golden_change(self, function: str, strategy: str, change: str) -> None:
        self.golden_changes.labels(self.label(function), strategy, change).inc()

    def on_golden_set(self, function: str, counts: Mapping[str, int]) -> None:
        fn = self.label(function)
        for strategy in STRATEGIES:
            self.golden.labels(fn, strategy).set(counts.get(strategy, 0))

    def on_index(self, function: str, densities: Collection[float]) -> None:
        fn = self.label(function)
        values = np.asarray(densities, dtype=np.float64)
        self.index_size.labels(fn).set(len(values))
        self.distribution.set(fn, values)
        if len(values):
            quantiles = np.quantile(values, [float(q) for q in QUANTILES])
            for q, v in zip(QUANTILES, quantiles, strict=True):
                self.density.labels(fn, q).set(float(v))

    def on_selection(self, function: str, seconds: float) -> None:
        self.selection_seconds.observe(seconds)

    def on_evaluation_wait(self, function: str, seconds: float) -> None:
        self.evaluation_wait.observe(seconds)

    def on_waiting(self, waiting: Mapping[str, float]) -> None:
        """Set the unevaluated age of each function (functions sharing ``_other`` show the oldest)."""
        by_label: dict[str, float] = {}
        for function, seconds in waiting.items():
            fn = self.label(function)
            by_label[fn] = max(by_label.get(fn, 0.0), seconds)
        for fn, seconds in by_label.items():
            self.waiting.labels(fn).set(round(seconds, 3))

    def on_released(self, function: str) -> None:
        """Drop a function's gauges (its partition moved to another instance)."""
        fn = self.label(function)
        if fn == BoundedLabels.OTHER:
            return
        self.distribution.remove(fn)
        for gauge, labelsets in (
            (self.index_size, [(fn,)]),
            (self.density, [(fn, q) for q in QUANTILES]),
            (self.golden, [(fn, s) for s in STRATEGIES]),
            (self.waiting, [(fn,)]),
        ):
            for labels in labelsets:
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
