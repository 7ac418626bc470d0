"""Engine 3's sensor as Prometheus metrics (``vt_training_*``); the function label is bounded.

The freshness of a function's model is exported as the Unix time it appeared
(``vt_training_last_model_timestamp_seconds``); its age is ``time() - that`` in
PromQL, as Prometheus recommends, not a "seconds since" gauge.
"""

from __future__ import annotations

import typing

from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.contract.events import TrainingStatus
from stream.contract.sensors import TrainingSensor
from stream.runtime.metrics import BoundedLabels, function_labels

# Every status and decision a job can report: their counters exist (at 0) once a function is seen.
STATUSES: tuple[str, ...] = typing.get_args(TrainingStatus)
SPLITS = ("train", "valid")


class PrometheusTrainingSensor(TrainingSensor):
    """Jobs by status, cost estimates and spend, losses, trigger inputs and model freshness per function."""

    def __init__(self, registry: CollectorRegistry | None = None, labels: BoundedLabels | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._labels = labels if labels is not None else function_labels(r)
        self._seen: set[str] = set()
        self._last_model: dict[str, float] = {}
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

    def fn(self, function: str) -> str:
        """The bounded label of ``function``; its job and spend counters start at 0 when first seen."""
        label = self._labels(function)
        if label not in self._seen:
            self._seen.add(label)
            for status in STATUSES:
                self.jobs.labels(label, status)
            self.spent.labels(label)
        return label

    # ----------------------------------------------------------------- the sensor
    def on_function(self, function: str) -> None:
        self.fn(function)

    def on_estimate(self, function: str, cost_usd: float, tokens: int) -> None:
        label = self.fn(function)
        self.cost.labels(label).set(cost_usd)
        self.tokens.labels(label).set(tokens)

    def on_spend(self, function: str, cost_usd: float) -> None:
        self.spent.labels(self.fn(function)).inc(cost_usd)

    def on_status(self, function: str, status: str) -> None:
        self.jobs.labels(self.fn(function), status).inc()

    def on_loss(self, function: str, split: str, value: float) -> None:
        self.loss.labels(self.fn(function), split).set(value)

    def on_model(self, function: str, at: float) -> None:
        label = self.fn(function)
        # A replayed older model never moves freshness back.
        self._last_model[label] = max(at, self._last_model.get(label, 0.0))
        self.last_model.labels(label).set(self._last_model[label])

    def on_samples(self, function: str, golden: int, new: int) -> None:
        label = self.fn(function)
        self.golden.labels(label).set(golden)
        self.new_samples.labels(label).set(new)

    def on_in_flight(self, count: int) -> None:
        self.in_flight.set(count)
