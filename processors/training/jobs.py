"""Job records: what the trigger knows about each job, and how updates and restores merge.

A job record is rebuilt from the same fields the ``vt.training`` events carry, so
state lost with a disk (or owned by another instance before a rebalance) can be
recovered from the topic: the latest event of a job *is* its record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec

from stream.events import ModelUpdated, TrainingEvent, TrainingMetrics

ACTIVE = frozenset({"queued", "validating", "running"})
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# Decisions that started no job: they still count for the cooldown.
NO_JOB = frozenset({"exported", "rejected_budget"})
# Statuses whose dataset counts as "trained on" (or handed over): later samples are new.
CONSUMED_DATA = ACTIVE | TERMINAL | {"exported"}


class JobRecord(msgspec.Struct, kw_only=True):
    """The current state of one job (or of one export / refusal)."""

    job_id: str
    function_name: str
    trainer: str
    base_model: str
    status: str
    created_at: datetime
    updated_at: datetime
    n_train: int = 0
    n_val: int = 0
    est_tokens: int = 0
    est_cost_usd: float = 0.0
    dataset_path: str | None = None
    trained_through: datetime | None = None
    provider_job_id: str | None = None
    fine_tuned_model: str | None = None
    error: str | None = None
    step: int | None = None
    train_loss: float | None = None
    valid_loss: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def final(self) -> bool:
        return self.status in TERMINAL or self.status in NO_JOB

    def event(self, at: datetime, *, with_metrics: bool = False) -> TrainingEvent:
        metrics = None
        if with_metrics and (self.step is not None or self.train_loss is not None or self.valid_loss is not None):
            metrics = TrainingMetrics(step=self.step, train_loss=self.train_loss, valid_loss=self.valid_loss)
        return TrainingEvent(
            job_id=self.job_id,
            function_name=self.function_name,
            trainer=self.trainer,
            base_model=self.base_model,
            status=self.status,  # type: ignore[arg-type]
            at=at,
            n_train=self.n_train,
            n_val=self.n_val,
            est_tokens=self.est_tokens,
            est_cost_usd=self.est_cost_usd,
            metrics=metrics,
            fine_tuned_model=self.fine_tuned_model,
            dataset_path=self.dataset_path,
            error=self.error,
            provider_job_id=self.provider_job_id,
            trained_through=self.trained_through,
        )

    def model_updated(self, at: datetime) -> ModelUpdated:
        assert self.fine_tuned_model is not None
        return ModelUpdated(
            function_name=self.function_name, model=self.fine_tuned_model, job_id=self.job_id, trained_on=self.n_train, at=at
        )


def record_from_event(ev: TrainingEvent, first_seen: datetime | None = None) -> JobRecord:
    m = ev.metrics
    return JobRecord(
        job_id=ev.job_id,
        function_name=ev.function_name,
        trainer=ev.trainer,
        base_model=ev.base_model,
        status=ev.status,
        created_at=first_seen or ev.at,
        updated_at=ev.at,
        n_train=ev.n_train,
        n_val=ev.n_val,
        est_tokens=ev.est_tokens,
        est_cost_usd=ev.est_cost_usd,
        dataset_path=ev.dataset_path,
        trained_through=ev.trained_through,
        provider_job_id=ev.provider_job_id,
        fine_tuned_model=ev.fine_tuned_model,
        error=ev.error,
        step=m.step if m else None,
        train_loss=m.train_loss if m else None,
        valid_loss=m.valid_loss if m else None,
    )


def records_from_events(events: list[TrainingEvent]) -> dict[str, JobRecord]:
    """One record per job from its events on ``vt.training`` (in topic order)."""
    out: dict[str, JobRecord] = {}
    for ev in events:
        prev = out.get(ev.job_id)
        rec = record_from_event(ev, prev.created_at if prev else None)
        out[ev.job_id] = rec if prev is None else merge(prev, rec)
    return out


def _rank(rec: JobRecord) -> int:
    return 1 if rec.final else 0


def merge(a: JobRecord, b: JobRecord) -> JobRecord:
    """Two views of one job: a final status wins over an active one, then the newer view.

    Fields only one view knows (the provider's job id, the last losses) are kept.
    """
    newer, older = (a, b) if (_rank(a), a.updated_at) >= (_rank(b), b.updated_at) else (b, a)
    return msgspec.structs.replace(
        newer,
        created_at=min(a.created_at, b.created_at),
        provider_job_id=newer.provider_job_id or older.provider_job_id,
        step=newer.step if newer.step is not None else older.step,
        train_loss=newer.train_loss if newer.train_loss is not None else older.train_loss,
        valid_loss=newer.valid_loss if newer.valid_loss is not None else older.valid_loss,
        dataset_path=newer.dataset_path or older.dataset_path,
        trained_through=newer.trained_through or older.trained_through,
    )


@dataclass(frozen=True, slots=True)
class StepMetrics:
    step: int
    train_loss: float | None = None
    valid_loss: float | None = None


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """What a trainer reports about a job; ``status`` None means unchanged / unknown."""

    status: str | None = None
    provider_job_id: str | None = None
    fine_tuned_model: str | None = None
    error: str | None = None
    steps: tuple[StepMetrics, ...] = ()
