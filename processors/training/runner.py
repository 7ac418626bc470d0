"""The job runner: the async side of engine 3, run by the runtime as a service.

It never touches processor state directly: it asks its :class:`JobBook` (the
training processor, through ``ctx.call``/``ctx.apply``, i.e. on the worker thread)
which jobs it owns, and reports what the trainer says through
:meth:`JobBook.job_update`, whose events are produced before the runtime can
checkpoint.  It also restores job history from ``vt.training`` (read through the
service context) whenever the processor takes a partition, and applies cancel
requests written by ``vector-trainer train cancel``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import ClassVar, Protocol

import msgspec

from stream.contract import events
from stream.contract.config import TrainingSettings
from stream.contract.events import TrainingEvent
from stream.contract.logs import redact
from stream.contract.processing import Result, Service, ServiceContext

from .dataset import slug
from .jobs import TERMINAL, JobRecord, JobUpdate
from .trainers import BaseTrainer, JobSpec, TrainerError

log = logging.getLogger(__name__)

MAX_STEP_EVENTS_PER_POLL = 20
LOOP_INTERVAL_S = 0.5


def cancel_dir(state_dir: Path) -> Path:
    return state_dir / "training" / "cancel-requests"


def request_cancel(state_dir: Path, function_name: str, job_id: str | None) -> Path:
    """Ask the running processor (same state dir) to cancel a function's job."""
    directory = cancel_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{slug(function_name)}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"function_name": function_name, "job_id": job_id}))
    tmp.replace(path)
    return path


def spec_of(rec: JobRecord, epochs: int) -> JobSpec:
    job = rec.last
    assert job.dataset_path is not None
    directory = Path(job.dataset_path)
    valid = directory / "valid.jsonl"
    return JobSpec(
        job_id=job.job_id,
        function_name=job.function_name,
        base_model=job.base_model,
        epochs=epochs,
        train_path=directory / "train.jsonl",
        valid_path=valid if job.n_val > 0 and valid.is_file() else None,
        n_train=job.n_train,
        n_val=job.n_val,
    )


class JobBook(Protocol):
    """The side of the training processor the runner works with (every call on the worker thread)."""

    cfg: TrainingSettings
    trainer: BaseTrainer | None

    @property
    def restores_from_topic(self) -> bool: ...
    def partitions_to_restore(self) -> set[int]: ...
    def restore(self, history: list[TrainingEvent], partitions: set[int]) -> Result: ...
    def owned_active_jobs(self) -> list[JobRecord]: ...
    def job_update(self, job_id: str, update: JobUpdate) -> Result: ...


class JobRunner(Service):
    """Restores job history, drives owned jobs through the trainer, applies cancel requests."""

    name: ClassVar[str] = "training-jobs"

    def __init__(self, processor: JobBook) -> None:
        self.proc = processor
        self.trainer: BaseTrainer | None = processor.trainer
        self.cfg = processor.cfg
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel: dict[str, Path] = {}  # function -> request file
        self._ignored: set[str] = set()

    async def run(self, ctx: ServiceContext) -> None:
        cdir = cancel_dir(ctx.settings.state_dir)
        try:
            while not ctx.stopping.is_set():
                if self.proc.restores_from_topic:
                    parts = await ctx.call(self.proc.partitions_to_restore)
                    if parts:
                        await self._restore(ctx, parts)
                self._scan_cancel_requests(cdir)
                jobs = await ctx.call(self.proc.owned_active_jobs)
                await self._reconcile(ctx, jobs)
                if await ctx.sleep(LOOP_INTERVAL_S):
                    break
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._tasks.clear()
            if ctx.stopping.is_set() and self.trainer is not None:
                await self.trainer.aclose()

    # ----------------------------------------------------------------- restore
    async def _restore(self, ctx: ServiceContext, parts: set[int]) -> None:
        try:
            records = await ctx.read_topic("training")
        except Exception as exc:  # broker trouble: the trigger waits, we retry next loop
            log.warning("could not read %s to restore job history (%s); retrying", ctx.names.physical("training"), exc)
            await ctx.sleep(2.0)
            return
        history: list[TrainingEvent] = []
        for r in records:
            if r.value is None:
                continue
            try:
                ev = events.decode("training", r.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("skipping an unreadable record at training[%d]@%d: %s", r.partition, r.offset, exc)
                continue
            assert isinstance(ev, TrainingEvent)
            history.append(ev)
        await ctx.apply(self.proc.restore, history, parts)
        log.info("job history restored from %d training events for partitions %s", len(history), sorted(parts))

    # ----------------------------------------------------------------- cancel requests
    def _scan_cancel_requests(self, cdir: Path) -> None:
        if not cdir.is_dir():
            return
        for path in cdir.glob("*.json"):
            try:
                body = json.loads(path.read_text())
                self._cancel[str(body["function_name"])] = path
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable cancel request %s: %s", path, exc)

    def _cancel_requested(self, rec: JobRecord) -> bool:
        return rec.function_name in self._cancel

    def _cancel_done(self, rec: JobRecord) -> None:
        path = self._cancel.pop(rec.function_name, None)
        if path is not None:
            path.unlink(missing_ok=True)

    # ----------------------------------------------------------------- driving jobs
    async def _reconcile(self, ctx: ServiceContext, jobs: list[JobRecord]) -> None:
        wanted = {j.job_id: j for j in jobs}
        for job_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[job_id]
            elif job_id not in wanted:
                log.info("job %s is no longer owned here (rebalance): stopped following it", job_id)
                task.cancel()
                del self._tasks[job_id]
        # Cancel requests for functions without a job in flight are answered by deleting them.
        active_fns = {j.function_name for j in jobs}
        for fn in [f for f in self._cancel if f not in active_fns]:
            path = self._cancel.pop(fn)
            log.info("cancel request for %s: no job in flight here", fn)
            path.unlink(missing_ok=True)
        for job_id, rec in wanted.items():
            if job_id in self._tasks:
                continue
            if self.trainer is None or rec.last.trainer != self.trainer.kind:
                if job_id not in self._ignored:
                    self._ignored.add(job_id)
                    log.warning(
                        "job %s of %s was started by trainer %r but this instance runs %r: not following it",
                        job_id, rec.function_name, rec.last.trainer, self.trainer.kind if self.trainer else "none",
                    )
                continue
            self._tasks[job_id] = asyncio.create_task(self._drive(ctx, rec, self.trainer), name=f"vt-job-{job_id}")

    async def _report(self, ctx: ServiceContext, job_id: str, update: JobUpdate) -> bool:
        # Shielded: once the processor has taken the update, its events must reach the topic even
        # if this task is cancelled (shutdown, rebalance); the runtime's lock orders the checkpoint after.
        result = await asyncio.shield(ctx.apply(self.proc.job_update, job_id, update))
        return bool(result.outputs)

    async def _drive(self, ctx: ServiceContext, rec: JobRecord, trainer: BaseTrainer) -> None:
        """Start (or find) the job, then poll it with back-off until it ends."""
        try:
            await self._drive_inner(ctx, rec, trainer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave the job "in flight" forever unnoticed
            log.exception("following job %s failed unexpectedly", rec.job_id)
            try:
                await self._report(ctx, rec.job_id, JobUpdate(status="failed", error=redact(f"{type(exc).__name__}: {exc}")[:2000]))
            except Exception:
                log.exception("could not record job %s as failed; the next owner will find it in flight", rec.job_id)

    async def _drive_inner(self, ctx: ServiceContext, rec: JobRecord, trainer: BaseTrainer) -> None:
        spec = spec_of(rec, self.cfg.epochs)
        backoff = self.cfg.poll_initial_s
        pid = rec.last.provider_job_id
        while pid is None:
            if self._cancel_requested(rec):
                await self._report(ctx, rec.job_id, JobUpdate(status="cancelled", error="cancelled on request before it started"))
                self._cancel_done(rec)
                return
            try:
                pid = await trainer.find(spec)
                if pid is None:
                    prepared = await trainer.prepare(spec)
                    pid = await trainer.start(spec, prepared)
                    log.info("job %s started on %s as %s", rec.job_id, trainer.kind, pid)
                else:
                    log.info("job %s already exists on %s as %s: following it", rec.job_id, trainer.kind, pid)
            except TrainerError as exc:
                await self._report(ctx, rec.job_id, JobUpdate(status="failed", error=str(exc)[:2000]))
                return
            except Exception as exc:
                if not trainer.is_transient(exc):
                    raise
                log.warning("starting job %s: %s; retrying in %.1fs", rec.job_id, redact(str(exc)), backoff)
                if await ctx.sleep(backoff):
                    return
                backoff = min(backoff * 2, self.cfg.poll_max_s)
        last_step = rec.step
        delay = self.cfg.poll_initial_s
        cancel_sent = False
        while not ctx.stopping.is_set():
            try:
                if self._cancel_requested(rec) and not cancel_sent:
                    await trainer.cancel(pid)
                    cancel_sent = True
                    log.info("cancel of job %s (%s) sent on request", rec.job_id, pid)
                update = await trainer.poll(pid)
                steps = await trainer.metrics(pid, last_step) if update.status in {"running", *TERMINAL} else []
            except TrainerError as exc:
                if cancel_sent or not self._cancel_requested(rec):
                    await self._report(ctx, rec.job_id, JobUpdate(status="failed", provider_job_id=pid, error=str(exc)[:2000]))
                    return
                log.warning("cancel of job %s refused: %s", rec.job_id, exc)
                self._cancel_done(rec)
                continue
            except Exception as exc:
                if not trainer.is_transient(exc):
                    raise
                delay = min(max(delay, self.cfg.poll_initial_s) * 2, self.cfg.poll_max_s)
                log.warning("polling job %s: %s; retrying in %.1fs", rec.job_id, redact(str(exc)), delay)
                if await ctx.sleep(delay):
                    return
                continue
            if steps:
                last_step = steps[-1].step
            update = JobUpdate(
                status=update.status, provider_job_id=pid, fine_tuned_model=update.fine_tuned_model,
                error=update.error, steps=tuple(steps[-MAX_STEP_EVENTS_PER_POLL:]),
            )
            changed = await self._report(ctx, rec.job_id, update)
            if update.status in TERMINAL:
                self._cancel_done(rec)
                return
            delay = self.cfg.poll_initial_s if changed else min(delay * 1.5, self.cfg.poll_max_s)
            if await ctx.sleep(delay):
                return
