"""Job records: what the trigger knows about each job, and how updates and restores merge.

A job record is the job's latest ``vt.training`` event plus when the job began, so
state lost with a disk (or owned by another instance before a rebalance) can be
recovered from the topic: the latest event of a job *is* its record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from stream.contract.events import ModelUpdated, TrainingEvent, TrainingMetrics

ACTIVE = frozenset({"queued", "validating", "running"})
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# Decisions that started no job: they still count for the cooldown.
NO_JOB = frozenset({"exported", "rejected_budget"})
# Statuses whose dataset counts as "trained on" (or handed over): later samples are new.
CONSUMED_DATA = ACTIVE | TERMINAL | {"exported"}


class JobRecord(msgspec.Struct, kw_only=True):
    """The current state of one job (or of one export / refusal): its latest event, and when it began.

    The latest ``vt.training`` event of a job *is* its record (``last.at`` is when it was
    last updated, ``last.metrics`` the newest step and losses), so a record is rebuilt
    from the topic exactly as it is kept here.
    """

    last: TrainingEvent
    created_at: datetime

    @property
    def job_id(self) -> str:
        return self.last.job_id

    @property
    def function_name(self) -> str:
        return self.last.function_name

    @property
    def status(self) -> str:
        return self.last.status

    @property
    def updated_at(self) -> datetime:
        return self.last.at

    @property
    def step(self) -> int | None:
        return self.last.metrics.step if self.last.metrics is not None else None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def final(self) -> bool:
        return self.status in TERMINAL or self.status in NO_JOB

    def update(self, **changes: Any) -> JobRecord:
        """The record with some fields of its event changed (``at`` = when)."""
        return JobRecord(last=msgspec.structs.replace(self.last, **changes), created_at=self.created_at)

    def event(self, at: datetime) -> TrainingEvent:
        """The job's state as a ``vt.training`` event stamped ``at``."""
        return msgspec.structs.replace(self.last, at=at)

    def model_updated(self, at: datetime) -> ModelUpdated:
        assert self.last.fine_tuned_model is not None
        return ModelUpdated(
            function_name=self.function_name, model=self.last.fine_tuned_model, job_id=self.job_id,
            trained_on=self.last.n_train, at=at,
        )


def step_metrics(step: int | None, train_loss: float | None, valid_loss: float | None) -> TrainingMetrics | None:
    """An event's metrics, or None when there is nothing to report."""
    if step is None and train_loss is None and valid_loss is None:
        return None
    return TrainingMetrics(step=step, train_loss=train_loss, valid_loss=valid_loss)


def record_from_event(ev: TrainingEvent, first_seen: datetime | None = None) -> JobRecord:
    m = ev.metrics
    last = msgspec.structs.replace(ev, metrics=step_metrics(m.step, m.train_loss, m.valid_loss) if m else None)
    return JobRecord(last=last, created_at=first_seen or ev.at)


def legacy_record(data: dict[str, Any]) -> JobRecord:
    """A record checkpointed before records held their event (flat fields, ``updated_at``)."""
    fields = dict(data)
    created_at = fields.pop("created_at")
    fields["at"] = fields.pop("updated_at")
    metrics = {k: fields.pop(k, None) for k in ("step", "train_loss", "valid_loss")}
    fields["metrics"] = {k: v for k, v in metrics.items() if v is not None} or None
    return record_from_event(msgspec.convert(fields, TrainingEvent), msgspec.convert(created_at, datetime))


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
    n, o = newer.last, older.last
    nm, om = n.metrics or TrainingMetrics(), o.metrics or TrainingMetrics()
    return JobRecord(
        last=msgspec.structs.replace(
            n,
            provider_job_id=n.provider_job_id or o.provider_job_id,
            metrics=step_metrics(
                nm.step if nm.step is not None else om.step,
                nm.train_loss if nm.train_loss is not None else om.train_loss,
                nm.valid_loss if nm.valid_loss is not None else om.valid_loss,
            ),
            dataset_path=n.dataset_path or o.dataset_path,
            trained_through=n.trained_through or o.trained_through,
        ),
        created_at=min(a.created_at, b.created_at),
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
