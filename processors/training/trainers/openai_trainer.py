"""Fine-tuning on OpenAI (or any server speaking its files and fine_tuning.jobs API).

Built on ``openai.AsyncOpenAI``: upload the JSONL files, create a supervised job
with the configured epochs, poll it, read its metrics events and checkpoints for
the losses, cancel it.  The API key is passed to the client and nowhere else: it
is registered with the log redactor and every error text leaving this module is
scrubbed of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import openai
from openai import AsyncOpenAI

from stream.contract.logs import redact, secrets

from ..jobs import JobUpdate, StepMetrics
from .base import BaseTrainer, JobSpec, TrainerError

log = logging.getLogger(__name__)

# OpenAI's job statuses -> TrainingEvent's.  A status not listed (a new one) keeps the
# previous status and is logged, rather than being guessed.
STATUS_MAP: dict[str, str] = {
    "validating_files": "validating",
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
KEY_ENV = ("VT_TRAINING_API_KEY", "OPENAI_API_KEY")


def api_key_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    for name in KEY_ENV:
        if env.get(name):
            return env[name]
    return None


class OpenAITrainer(BaseTrainer):
    """Supervised fine-tuning through the OpenAI API (see the module docstring)."""

    kind: ClassVar[str] = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        suffix: str | None = "vt",
        file_wait_s: float = 120.0,
        max_retries: int = 2,
    ) -> None:
        if not api_key:
            raise TrainerError("the OpenAI trainer needs an API key (VT_TRAINING_API_KEY or OPENAI_API_KEY)")
        secrets.add(api_key)
        self._key = api_key
        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries)
        self._suffix = suffix or None
        self._file_wait_s = file_wait_s
        self._unknown_logged: set[str] = set()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAITrainer(base_url={str(self._client.base_url)!r})"

    # ----------------------------------------------------------------- strategy
    async def prepare(self, spec: JobSpec) -> dict[str, Any]:
        try:
            train_id = await self._upload(spec.train_path, spec)
            valid_id = await self._upload(spec.valid_path, spec) if spec.valid_path is not None else None
        except openai.APIStatusError as exc:
            raise self._error(exc) from None
        return {"training_file": train_id, "validation_file": valid_id}

    async def start(self, spec: JobSpec, prepared: dict[str, Any]) -> str:
        kwargs: dict[str, Any] = {
            "model": spec.base_model,
            "training_file": prepared["training_file"],
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": spec.epochs}}},
            "metadata": {"vt_job_id": spec.job_id, "vt_function": spec.function_name[:512]},
        }
        if prepared.get("validation_file"):
            kwargs["validation_file"] = prepared["validation_file"]
        if self._suffix:
            kwargs["suffix"] = self._suffix
        try:
            job = await self._client.fine_tuning.jobs.create(**kwargs)
        except openai.APIStatusError as exc:
            raise self._error(exc) from None
        log.info("OpenAI job %s created for %s (%s)", job.id, spec.job_id, spec.base_model)
        return job.id

    async def find(self, spec: JobSpec) -> str | None:
        page = await self._client.fine_tuning.jobs.list(metadata={"vt_job_id": spec.job_id}, limit=100)
        for job in page.data:
            # Check here too: a server that ignores the filter must not hand us someone else's job.
            if (job.metadata or {}).get("vt_job_id") == spec.job_id:
                return job.id
        return None

    async def poll(self, provider_job_id: str) -> JobUpdate:
        try:
            job = await self._client.fine_tuning.jobs.retrieve(provider_job_id)
        except openai.APIStatusError as exc:
            raise self._error(exc) from None
        status = STATUS_MAP.get(job.status)
        if status is None and job.status not in self._unknown_logged:
            self._unknown_logged.add(job.status)
            log.warning("OpenAI job %s has status %r, which vector-trainer does not know; still polling", job.id, job.status)
        error = None
        if status == "failed":
            if job.error is not None:
                error = f"{job.error.code}: {job.error.message}" + (f" (param {job.error.param})" if job.error.param else "")
            else:
                error = "the provider reported the job as failed without a reason"
        return JobUpdate(
            status=status,
            provider_job_id=job.id,
            fine_tuned_model=job.fine_tuned_model if status == "succeeded" else None,
            error=self._clean(error) if error else None,
        )

    async def metrics(self, provider_job_id: str, after_step: int | None) -> list[StepMetrics]:
        """Per-step losses from the job's ``metrics`` events, valid loss completed from checkpoints."""
        by_step: dict[int, StepMetrics] = {}
        try:
            events = await self._client.fine_tuning.jobs.list_events(provider_job_id, limit=100)
            for ev in events.data:
                data = ev.data if isinstance(ev.data, dict) else None
                if ev.type != "metrics" or not data or not isinstance(data.get("step"), (int, float)):
                    continue
                step = int(data["step"])
                by_step[step] = StepMetrics(step, _num(data.get("train_loss")), _num(data.get("valid_loss")))
            checkpoints = await self._client.fine_tuning.jobs.checkpoints.list(provider_job_id, limit=100)
        except openai.APIStatusError as exc:
            raise self._error(exc) from None
        for ck in checkpoints.data:
            step = int(ck.step_number)
            m = ck.metrics
            valid = _num(m.full_valid_loss) if m.full_valid_loss is not None else _num(m.valid_loss)
            known = by_step.get(step)
            if known is None:
                by_step[step] = StepMetrics(step, _num(m.train_loss), valid)
            elif known.valid_loss is None and valid is not None:
                by_step[step] = StepMetrics(step, known.train_loss, valid)
        return [by_step[s] for s in sorted(by_step) if after_step is None or s > after_step]

    async def cancel(self, provider_job_id: str) -> None:
        try:
            await self._client.fine_tuning.jobs.cancel(provider_job_id)
        except openai.APIStatusError as exc:
            raise self._error(exc) from None

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(
            exc,
            (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError, asyncio.TimeoutError),
        )

    async def aclose(self) -> None:
        await self._client.close()

    # ----------------------------------------------------------------- helpers
    async def _upload(self, path: Any, spec: JobSpec) -> str:
        name = f"{spec.job_id}-{path.name}"
        created = await self._client.files.create(file=(name, path.read_bytes()), purpose="fine-tune")
        deadline = asyncio.get_running_loop().time() + self._file_wait_s
        file = created
        delay = 0.2
        while file.status not in ("processed", "error"):
            if asyncio.get_running_loop().time() > deadline:
                raise TrainerError(f"file {file.id} was not processed within {self._file_wait_s:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            file = await self._client.files.retrieve(file.id)
        if file.status == "error":
            raise TrainerError(self._clean(f"file {file.id} was rejected: {file.status_details or 'no details'}"))
        return file.id

    def _clean(self, text: str) -> str:
        return redact(text.replace(self._key, "[REDACTED]"))

    def _error(self, exc: openai.APIStatusError) -> Exception:
        """Permanent API errors become TrainerError (the job fails); 429/5xx stay retryable."""
        if self.is_transient(exc):
            return exc
        message = getattr(exc, "message", None) or str(exc)
        return TrainerError(self._clean(f"{type(exc).__name__} ({exc.status_code}): {message}"))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
