"""The engines' sensors (:mod:`stream.contract.sensors`) as Prometheus metrics.

:class:`PrometheusSensors` gives each engine its sensor on one registry (the
runtime's), all sharing one bounded ``function`` label, so a function past the cap
is ``_other`` in every engine and dashboards can join engines by function.  A
sensor's metrics are registered when it is first asked for.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from stream.runtime.metrics import function_labels

from .density import PrometheusDensitySensor
from .feedback import PrometheusFeedbackSensor
from .training import PrometheusTrainingSensor

__all__ = ["PrometheusDensitySensor", "PrometheusFeedbackSensor", "PrometheusSensors", "PrometheusTrainingSensor"]


class PrometheusSensors:
    """One sensor per engine on ``registry``; at most ``label_limit`` distinct function labels among them."""

    def __init__(self, registry: CollectorRegistry, label_limit: int = 200) -> None:
        self.registry = registry
        self.labels = function_labels(registry, label_limit)
        self._density: PrometheusDensitySensor | None = None
        self._feedback: PrometheusFeedbackSensor | None = None
        self._training: PrometheusTrainingSensor | None = None

    @property
    def density(self) -> PrometheusDensitySensor:
        if self._density is None:
            self._density = PrometheusDensitySensor(self.registry, self.labels)
        return self._density

    @property
    def feedback(self) -> PrometheusFeedbackSensor:
        if self._feedback is None:
            self._feedback = PrometheusFeedbackSensor(self.registry, self.labels)
        return self._feedback

    @property
    def training(self) -> PrometheusTrainingSensor:
        if self._training is None:
            self._training = PrometheusTrainingSensor(self.registry, self.labels)
        return self._training
