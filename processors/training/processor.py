"""Engine 3 as a stream processor: follow the golden set, decide when to train, record every job.

Pure logic on the worker thread: it consumes ``vt.golden`` (a sample or a
tombstone per key ``function/uuid``), keeps each owned partition's golden set,
and on ``tick`` applies the trigger rule per function.  A firing function gets a
dataset on disk and a decision on ``vt.training``: ``exported`` (no trainer),
``rejected_budget`` (the cost guard said no, with the figures) or ``queued``.
Queued jobs are driven by :class:`~processors.training.runner.JobRunner`, an async
service that reports back through :meth:`TrainingProcessor.job_update`; every
status change becomes a ``vt.training`` event and success a ``vt.models`` event.

Job records are checkpointed with the golden partition they belong to and, on
every partition load, merged with what ``vt.training`` says (the runner reads it),
so a restart, a lost disk or a rebalance resumes a running job instead of
starting a second one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from stream.contract import events
from stream.contract.config import Settings
from stream.contract.deadletter import INVALID_VALUE
from stream.contract.events import GoldenSample, TrainingEvent
from stream.contract.processing import FROM_BEGINNING, Output, Processor, Record, Rejection, Result, Service
from stream.contract.sensors import TrainingSensor

from .cost import Estimate, check_budget, count_tokens, encoding_for, estimate
from .dataset import Sample, invalid_messages, slug, write_dataset
from .jobs import ACTIVE, TERMINAL, JobRecord, JobUpdate, legacy_record, merge, records_from_events, step_metrics
from .runner import JobRunner
from .trainers import BaseTrainer, build_trainer
from .trigger import decide, new_since, trained_through

log = logging.getLogger(__name__)

JOBS_KEPT_PER_FUNCTION = 20
EVAL_INTERVAL_S = 1.0
RETRY_AFTER_ERROR_S = 60.0


CONFIGURED: Any = object()  # "build the trainer from settings.training"


class _PartitionState(msgspec.Struct):
    samples: dict[str, list[Sample]] = {}  # function -> samples
    jobs: list[JobRecord] = []


class _LegacyPartitionState(msgspec.Struct):
    """A checkpoint written before job records held their latest event."""

    samples: dict[str, list[Sample]] = {}
    jobs: list[dict[str, Any]] = []


def _read_state(raw: bytes) -> _PartitionState:
    try:
        return msgspec.json.decode(raw, type=_PartitionState)
    except msgspec.ValidationError:
        legacy = msgspec.json.decode(raw, type=_LegacyPartitionState)
        return _PartitionState(samples=legacy.samples, jobs=[legacy_record(j) for j in legacy.jobs])


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class TrainingProcessor(Processor):
    """Trigger, dataset export and cost guard of engine 3 (see the module docstring)."""

    name: ClassVar[str] = "training"
    inputs: ClassVar[tuple[str, ...]] = ("golden",)
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        settings: Settings,
        *,
        trainer: BaseTrainer | None = CONFIGURED,
        restore_from_topic: bool = True,
        sensor: TrainingSensor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.cfg = settings.training
        self.root = settings.state_dir / "training"
        self.trainer: BaseTrainer | None = build_trainer(self.cfg) if trainer is CONFIGURED else trainer
        self.trainer_kind = self.trainer.kind if self.trainer is not None else "none"
        self._restore = restore_from_topic
        self._clock = clock
        self._parts: dict[int, dict[str, dict[str, Sample]]] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._restored: set[int] = set()
        self._next_eval = 0.0
        self._dirty = True
        self._held: dict[str, float] = {}  # function -> time before which it is not retried after an error
        self.sensor = sensor if sensor is not None else TrainingSensor()
        self._runner: Service | None = None

    # ----------------------------------------------------------------- runtime hooks
    @property
    def restores_from_topic(self) -> bool:
        return self._restore

    def services(self) -> Sequence[Service]:
        if self._runner is None and (self._restore or self.trainer is not None):
            self._runner = JobRunner(self)
        return (self._runner,) if self._runner is not None else ()

    @property
    def base_model(self) -> str:
        if self.trainer_kind == "local" and self.cfg.local_model_path is not None:
            return str(self.cfg.local_model_path)
        return self.cfg.base_model

    # ----------------------------------------------------------------- input
    def process(self, records: list[Record]) -> Result:
        result = Result()
        for record in records:
            reason = self._apply(record)
            if reason is not None:
                result.rejected.append(Rejection(record, INVALID_VALUE, reason))
            else:
                self._dirty = True
        return result

    def _apply(self, record: Record) -> str | None:
        """Add or remove one golden sample; the reason it is unusable, or None."""
        try:
            key = record.key.decode("utf-8") if record.key is not None else ""
        except UnicodeDecodeError:
            return "golden key is not UTF-8 (expected function_name/uuid)"
        fn, sep, uuid = key.partition("/")
        part = self._parts.setdefault(record.partition, {})
        if record.value is None:
            if not (sep and fn and uuid):
                return f"tombstone key {key[:200]!r} is not function_name/uuid"
            part.get(fn, {}).pop(uuid, None)
            return None
        ev = record.value
        if not isinstance(ev, GoldenSample):
            return f"expected a GoldenSample, got {type(ev).__name__}"
        self.sensor.on_function(ev.function_name)  # its job counters exist (at 0) before its first decision
        if key != f"{ev.function_name}/{ev.uuid}":
            return f"key {key[:200]!r} does not match the sample's function_name/uuid {ev.function_name}/{ev.uuid}"
        messages = tuple((m.role, m.content) for m in ev.messages)
        why = invalid_messages(messages)
        if why is not None:
            return f"golden sample cannot be a fine-tuning example: {why} - at `$.messages`"
        part.setdefault(ev.function_name, {})[ev.uuid] = Sample(
            uuid=ev.uuid, selected_at=ev.selected_at, messages=messages, strategy=ev.strategy
        )
        return None

    # ----------------------------------------------------------------- the trigger
    def tick(self, now: float) -> Result:
        result = Result()
        if not self._dirty and now < self._next_eval:
            return result
        self._dirty = False
        self._next_eval = now + EVAL_INTERVAL_S
        for fn in sorted(self.owned_functions()):
            if self._held.get(fn, 0.0) > now:
                continue
            try:
                result.outputs.extend(self._consider(fn, now))
            except Exception:
                # A disk error writing the dataset must not stop the processor (nor spin every tick).
                log.exception("%s: building the training decision failed; retrying in %.0fs", fn, RETRY_AFTER_ERROR_S)
                self._held[fn] = now + RETRY_AFTER_ERROR_S
        self._update_gauges()
        return result

    def owned_functions(self) -> set[str]:
        """Functions of owned partitions whose job history has been restored."""
        if not self._parts or not self._restored >= set(self._parts):
            return set()
        return {fn for part in self._parts.values() for fn in part}

    def samples(self, function: str) -> list[Sample]:
        out: dict[str, Sample] = {}
        for part in self._parts.values():
            out.update(part.get(function, {}))
        return list(out.values())

    def jobs_of(self, function: str) -> list[JobRecord]:
        return sorted((j for j in self._jobs.values() if j.function_name == function), key=lambda j: j.created_at)

    def _consider(self, fn: str, now: float) -> list[Output]:
        samples = self.samples(fn)
        jobs = self.jobs_of(fn)
        d = decide(
            samples,
            jobs,
            now=now,
            threshold=self.cfg.threshold,
            cooldown_s=self.cfg.cooldown_s,
            min_train_examples=self.cfg.min_train_examples,
            validation_fraction=self.cfg.validation_fraction,
        )
        if not d.fire:
            return []
        at = _dt(now)
        job_id = self._job_id(fn, now, samples)
        est = self._estimate(list(d.train))
        if self.trainer is None:
            status, error = "exported", None
        elif self.trainer_kind == "openai":
            verdict = check_budget(
                est, model=self.cfg.base_model, max_job_usd=self.cfg.max_job_usd,
                max_day_usd=self.cfg.max_day_usd, spent_today_usd=self.spent_today(now),
            )
            status, error = ("queued", None) if verdict.allowed else ("rejected_budget", verdict.reason)
        else:
            status, error = "queued", None
        ds = write_dataset(
            root=self.root, job_id=job_id, function_name=fn, train=d.train, valid=d.valid,
            extra={
                "trainer": self.trainer_kind, "base_model": self.base_model, "epochs": self.cfg.epochs,
                "encoding": encoding_for(self.cfg.base_model, self.cfg.tokenizer_encoding),
                "tokens_per_epoch": est.tokens_per_epoch, "est_tokens": est.tokens,
                "price_usd_per_1m": est.price_per_1m, "est_cost_usd": est.cost_usd, "decision": status,
                "decision_reason": error,
            },
        )
        rec = JobRecord(
            last=TrainingEvent(
                job_id=job_id, function_name=fn, trainer=self.trainer_kind, base_model=self.base_model, status=status,  # type: ignore[arg-type]
                at=at, n_train=ds.n_train, n_val=ds.n_val, est_tokens=est.tokens, est_cost_usd=est.cost_usd,
                dataset_path=str(ds.directory), trained_through=ds.trained_through, error=error,
            ),
            created_at=at,
        )
        self._jobs[job_id] = rec
        self.sensor.on_estimate(fn, est.cost_usd, est.tokens)
        if status == "queued" and self.trainer_kind == "openai":
            self.sensor.on_spend(fn, est.cost_usd)
        log.info(
            "%s: %s (%d train / %d valid, %d tokens, $%.4f)%s -> %s",
            fn, status, ds.n_train, ds.n_val, est.tokens, est.cost_usd, f": {error}" if error else "", ds.directory,
        )
        self._prune(fn)
        return self._status_outputs(rec)

    def _estimate(self, train: list[Sample]) -> Estimate:
        if self.trainer_kind == "local":
            # Compute on our own machine: nothing is billed, the token count is informative.
            tokens = count_tokens(train, encoding_for(self.cfg.base_model, self.cfg.tokenizer_encoding))
            return Estimate(tokens, self.cfg.epochs, None)
        return estimate(
            train, model=self.cfg.base_model, epochs=self.cfg.epochs, prices=self.cfg.prices, encoding=self.cfg.tokenizer_encoding
        )

    def spent_today(self, now: float) -> float:
        """Estimated cost of the jobs started today (UTC), every function this instance knows of."""
        today = _dt(now).date()
        return sum(
            j.last.est_cost_usd for j in self._jobs.values() if j.status in ACTIVE | TERMINAL and j.created_at.date() == today
        )

    def _job_id(self, fn: str, now: float, samples: list[Sample]) -> str:
        digest = hashlib.sha256(f"{fn}\0{now}\0{len(samples)}".encode()).hexdigest()[:6]
        return f"{slug(fn)}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{digest}"

    # ----------------------------------------------------------------- job progress (from the runner)
    def owned_active_jobs(self) -> list[JobRecord]:
        owned = self.owned_functions()
        return [j for j in self._jobs.values() if j.active and j.function_name in owned]

    def job(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    def job_update(self, job_id: str, update: JobUpdate) -> Result:
        """Apply a trainer's report; emit one event per new step (with losses) and per status change."""
        rec = self._jobs.get(job_id)
        result = Result()
        if rec is None or not rec.active or rec.function_name not in self.owned_functions():
            return result
        now = _dt(self._clock())
        changed_pid = bool(update.provider_job_id) and update.provider_job_id != rec.last.provider_job_id
        if update.provider_job_id:
            rec = rec.update(provider_job_id=update.provider_job_id)
        fn = rec.function_name
        self.sensor.on_function(fn)
        for st in update.steps:
            if rec.step is not None and st.step <= rec.step:
                continue
            status_change = rec.status != "running"
            rec = rec.update(status="running", metrics=step_metrics(st.step, st.train_loss, st.valid_loss), at=now)
            if status_change:
                self.sensor.on_status(fn, "running")
            if st.train_loss is not None:
                self.sensor.on_loss(fn, "train", st.train_loss)
            if st.valid_loss is not None:
                self.sensor.on_loss(fn, "valid", st.valid_loss)
            result.outputs.append(self._training_output(rec.event(now)))
            changed_pid = False
        new_status = update.status
        if new_status is not None and new_status != rec.status and not (new_status in ACTIVE and rec.status == "running" and update.steps):
            rec = rec.update(
                status=new_status, at=now,
                fine_tuned_model=update.fine_tuned_model or rec.last.fine_tuned_model,
                error=update.error if new_status in ("failed", "cancelled") else rec.last.error,
            )
            if new_status == "succeeded" and not rec.last.fine_tuned_model:
                rec = rec.update(status="failed", error="the trainer reported success without a model name")
            self._jobs[job_id] = rec
            self._dirty = True
            result.outputs.extend(self._status_outputs(rec))
            log.info("%s: job %s is %s%s", fn, job_id, rec.status, f" ({rec.last.error})" if rec.last.error else "")
        elif changed_pid:
            rec = rec.update(at=now)
            result.outputs.append(self._training_output(rec.event(now)))
        self._jobs[job_id] = rec
        self._update_gauges()
        return result

    def _status_outputs(self, rec: JobRecord) -> list[Output]:
        self.sensor.on_status(rec.function_name, rec.status)
        outputs = [self._training_output(rec.event(rec.updated_at))]
        if rec.status == "succeeded" and rec.last.fine_tuned_model:
            outputs.append(Output("models", rec.function_name.encode(), events.encode(rec.model_updated(rec.updated_at))))
            self.sensor.on_model(rec.function_name, rec.updated_at.timestamp())
        return outputs

    @staticmethod
    def _training_output(ev: TrainingEvent) -> Output:
        return Output("training", ev.function_name.encode(), events.encode(ev))

    # ----------------------------------------------------------------- restore from vt.training
    def partitions_to_restore(self) -> set[int]:
        return set(self._parts) - self._restored

    def restore(self, history: list[TrainingEvent], partitions: set[int]) -> Result:
        """Merge the job history read from ``vt.training``; the partitions read for can now fire."""
        for job_id, rec in records_from_events(history).items():
            known = self._jobs.get(job_id)
            self._jobs[job_id] = merge(known, rec) if known is not None else rec
            if rec.status == "succeeded":
                self.sensor.on_model(rec.function_name, rec.updated_at.timestamp())
        self._restored |= partitions & set(self._parts)
        for fn in {j.function_name for j in self._jobs.values()}:
            self._prune(fn)
        self._dirty = True
        self._update_gauges()
        return Result()

    # ----------------------------------------------------------------- state
    def save_state(self, topic: str, partition: int, directory: Path) -> None:
        part = self._parts.get(partition, {})
        fns = set(part)
        state = _PartitionState(
            samples={fn: sorted(s.values(), key=lambda x: x.uuid) for fn, s in part.items()},
            jobs=[j for j in self._jobs.values() if j.function_name in fns],
        )
        (directory / "training.json").write_bytes(msgspec.json.encode(state))

    def load_state(self, topic: str, partition: int, directory: Path | None) -> int:
        self._parts[partition] = {}
        self._restored.discard(partition)
        if not self._restore:
            self._restored.add(partition)
        self._dirty = True
        if directory is None:
            return FROM_BEGINNING  # the compacted golden topic is the golden set: replay it
        state = _read_state((directory / "training.json").read_bytes())
        self._parts[partition] = {fn: {s.uuid: s for s in samples} for fn, samples in state.samples.items()}
        for rec in state.jobs:
            known = self._jobs.get(rec.job_id)
            self._jobs[rec.job_id] = merge(known, rec) if known is not None else rec
        return FROM_BEGINNING

    def release(self, topic: str, partition: int) -> None:
        self._parts.pop(partition, None)
        self._restored.discard(partition)
        self._dirty = True

    def _prune(self, fn: str) -> None:
        jobs = self.jobs_of(fn)
        for old in jobs[:-JOBS_KEPT_PER_FUNCTION]:
            if not old.active:
                del self._jobs[old.job_id]

    # ----------------------------------------------------------------- observability
    def _update_gauges(self) -> None:
        owned = self.owned_functions()
        self.sensor.on_in_flight(sum(1 for j in self._jobs.values() if j.active and j.function_name in owned))
        for fn in owned:
            samples = self.samples(fn)
            self.sensor.on_samples(fn, len(samples), new_since(samples, trained_through(self.jobs_of(fn))))

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fn in sorted(self.owned_functions()):
            jobs = self.jobs_of(fn)
            samples = self.samples(fn)
            out[fn] = {
                "golden": len(samples),
                "new": new_since(samples, trained_through(jobs)),
                "last_job": jobs[-1].job_id if jobs else None,
                "status": jobs[-1].status if jobs else None,
            }
        return {"trainer": self.trainer_kind, "functions": out}
