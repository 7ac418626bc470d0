"""Prometheus metrics of engine 3 (``vt_training_*``); the function label is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.metrics import BoundedLabels


class _SinceLastModel(Collector):
    """``vt_training_seconds_since_last_model{function}``, computed at scrape time."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self._lock = threading.Lock()

    def set(self, function: str, at: float) -> None:
        with self._lock:
            self.last[function] = max(at, self.last.get(function, 0.0))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "vt_training_seconds_since_last_model", "Seconds since the function's newest fine-tuned model", labels=["function"]
        )
        now = time.time()
        with self._lock:
            for fn, at in sorted(self.last.items()):
                family.add_metric([fn], max(0.0, now - at))
        yield family


class TrainingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, label_limit: int = 200) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.fn = BoundedLabels(label_limit)
        self.jobs = Counter(
            "vt_training_jobs_total",
            "Training status changes by status (queued ... succeeded; exported and rejected_budget are decisions)",
            ["function", "status"],
            registry=r,
        )
        self.cost = Gauge(
            "vt_training_estimated_cost_usd", "Estimated cost of the function's latest job or export", ["function"], registry=r
        )
        self.spent = Counter(
            "vt_training_started_cost_usd_total", "Estimated cost of the jobs started (sent to a trainer)", ["function"], registry=r
        )
        self.tokens = Gauge(
            "vt_training_estimated_tokens", "Billed training tokens (x epochs) of the latest job or export", ["function"], registry=r
        )
        self.loss = Gauge("vt_training_loss", "Latest loss reported by the trainer", ["function", "split"], registry=r)
        self.golden = Gauge("vt_training_golden_samples", "Current golden samples per function (owned partitions)", ["function"], registry=r)
        self.new_samples = Gauge(
            "vt_training_new_samples", "Golden samples selected since the function's last job", ["function"], registry=r
        )
        self.in_flight = Gauge("vt_training_jobs_in_flight", "Jobs queued, validating or running", registry=r)
        self.last_model = Gauge(
            "vt_training_last_model_timestamp_seconds", "Unix time of the function's newest fine-tuned model", ["function"], registry=r
        )
        self.since_last_model = _SinceLastModel()
        r.register(self.since_last_model)

    def model_ready(self, function: str, at: float) -> None:
        label = self.fn(function)
        self.last_model.labels(label).set(at)
        self.since_last_model.set(label, at)
