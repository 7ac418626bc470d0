"""Reading a /metrics endpoint back into numbers (demo progress, ``top``, tests)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    """One scrape of a metrics endpoint."""

    def __init__(self, text: str) -> None:
        self.samples: list[Sample] = [
            Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    @classmethod
    def fetch(cls, url: str, timeout: float = 2.0) -> Scrape:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own loopback endpoint
            return cls(resp.read().decode("utf-8"))

    def select(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.select(name, **labels))

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.select(name, **labels):
            key = s.labels.get(label, "")
            out[key] = out.get(key, 0.0) + s.value
        return out
