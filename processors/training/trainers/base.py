"""The trainer strategy: one interface for every place a model can be fine-tuned.

The job runner drives a trainer through ``prepare`` (upload / check the data),
``start`` (create the job, get the provider's id), ``poll`` (status, mapped to
our vocabulary), ``metrics`` (losses per step) and ``cancel``.  ``find`` makes
starting idempotent: after a crash between creating a job and recording its id,
the runner finds the job instead of creating a second one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..jobs import JobUpdate, StepMetrics


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything a trainer needs to run one job."""

    job_id: str
    function_name: str
    base_model: str
    epochs: int
    train_path: Path
    valid_path: Path | None
    n_train: int
    n_val: int


class TrainerError(Exception):
    """A trainer failure that will not go away by retrying (bad request, bad key, missing model)."""


class BaseTrainer(ABC):
    """Strategy interface of the fine-tuning backends (``OpenAITrainer``, ``LocalTrainer``)."""

    kind: ClassVar[str]

    @abstractmethod
    async def prepare(self, spec: JobSpec) -> dict[str, Any]:
        """Make the dataset available to the backend (upload it); return what ``start`` needs."""

    @abstractmethod
    async def start(self, spec: JobSpec, prepared: dict[str, Any]) -> str:
        """Create the job; return the backend's job id."""

    @abstractmethod
    async def poll(self, provider_job_id: str) -> JobUpdate:
        """The job's current status (in TrainingEvent's vocabulary), model name or error."""

    @abstractmethod
    async def metrics(self, provider_job_id: str, after_step: int | None) -> list[StepMetrics]:
        """Losses of the steps after ``after_step``, oldest first."""

    @abstractmethod
    async def cancel(self, provider_job_id: str) -> None:
        """Ask the backend to stop the job (the next ``poll`` shows ``cancelled``)."""

    async def find(self, spec: JobSpec) -> str | None:
        """The id of a job already started for ``spec.job_id``, if the backend can tell."""
        return None

    def is_transient(self, exc: BaseException) -> bool:
        """Whether retrying later may succeed (network trouble, rate limits, 5xx)."""
        return isinstance(exc, (ConnectionError, TimeoutError))

    async def aclose(self) -> None:
        """Release clients and threads."""
