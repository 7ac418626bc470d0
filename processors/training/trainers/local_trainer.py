"""LoRA fine-tuning of a local causal language model (optional extra ``local-train``).

Loads a model and its tokenizer from a local directory (no download: the hub is
never asked), wraps it with a PEFT LoRA adapter and trains it on the job's JSONL
in a background thread, so the event loop and the processors' worker thread stay
free.  Every optimisation step's loss is recorded; validation loss is computed
after each epoch; the adapter is saved next to the dataset.

A local job lives in this process: after a restart it cannot be resumed, and
``poll`` says so (the job is reported ``failed`` with that reason) rather than
pretending it is still running.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..jobs import JobUpdate, StepMetrics
from .base import BaseTrainer, JobSpec, TrainerError

log = logging.getLogger(__name__)

EXTRA_MODULES = ("torch", "transformers", "peft")


def missing_extra() -> list[str]:
    """Modules of the ``local-train`` extra that are not installed."""
    return [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]


@dataclass
class _Run:
    """One training run's shared progress (written by the training thread, read by ``poll``)."""

    spec: JobSpec
    output_dir: Path
    status: str = "queued"
    error: str | None = None
    steps: list[StepMetrics] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None


class LocalTrainer(BaseTrainer):
    """transformers + peft LoRA on a local model path, CPU or GPU."""

    kind: ClassVar[str] = "local"

    def __init__(
        self,
        *,
        model_path: Path,
        lora_r: int = 8,
        learning_rate: float = 2e-4,
        max_length: int = 512,
        batch_size: int = 4,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        self.model_path = Path(model_path)
        self.lora_r = lora_r
        self.learning_rate = learning_rate
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self._runs: dict[str, _Run] = {}

    async def prepare(self, spec: JobSpec) -> dict[str, Any]:
        missing = missing_extra()
        if missing:
            raise TrainerError(
                f"trainer=local needs the 'local-train' extra (missing: {', '.join(missing)}): pip install 'vector-trainer[local-train]'"
            )
        if not (self.model_path / "config.json").is_file():
            raise TrainerError(f"no model at {self.model_path} (expected a transformers directory with config.json)")
        return {"output_dir": str(spec.train_path.parent / "adapter")}

    async def start(self, spec: JobSpec, prepared: dict[str, Any]) -> str:
        run = _Run(spec=spec, output_dir=Path(prepared["output_dir"]))
        pid = f"local-{spec.job_id}"
        self._runs[pid] = run
        run.thread = threading.Thread(target=self._train, args=(run,), name=f"vt-local-train-{spec.job_id}", daemon=True)
        run.thread.start()
        return pid

    async def poll(self, provider_job_id: str) -> JobUpdate:
        run = self._runs.get(provider_job_id)
        if run is None:
            return JobUpdate(
                status="failed",
                provider_job_id=provider_job_id,
                error="interrupted: the process running this local training stopped; local jobs cannot be resumed",
            )
        with run.lock:
            status, error = run.status, run.error
        model = str(run.output_dir) if status == "succeeded" else None
        return JobUpdate(status=status, provider_job_id=provider_job_id, fine_tuned_model=model, error=error)

    async def metrics(self, provider_job_id: str, after_step: int | None) -> list[StepMetrics]:
        run = self._runs.get(provider_job_id)
        if run is None:
            return []
        with run.lock:
            return [s for s in run.steps if after_step is None or s.step > after_step]

    async def cancel(self, provider_job_id: str) -> None:
        run = self._runs.get(provider_job_id)
        if run is not None:
            run.cancel.set()

    async def aclose(self) -> None:
        for run in self._runs.values():
            run.cancel.set()

    # ----------------------------------------------------------------- the training thread
    def _set(self, run: _Run, **changes: Any) -> None:
        with run.lock:
            for k, v in changes.items():
                setattr(run, k, v)

    def _train(self, run: _Run) -> None:
        try:
            self._set(run, status="validating")
            self._fit(run)
        except Exception as exc:  # the thread must report, never die silently
            log.exception("local training of %s failed", run.spec.job_id)
            self._set(run, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])

    def _fit(self, run: _Run) -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(self.seed)
        spec = run.spec
        tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True)
        device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        train = self._encode(tokenizer, spec.train_path)
        valid = self._encode(tokenizer, spec.valid_path) if spec.valid_path else []
        if not train:
            raise TrainerError("no training example fits in local_max_length")
        lora = LoraConfig(r=self.lora_r, lora_alpha=2 * self.lora_r, lora_dropout=0.0, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora).to(device)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.learning_rate)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self._set(run, status="running")
        step = 0
        generator = torch.Generator().manual_seed(self.seed)
        for _epoch in range(spec.epochs):
            model.train()
            order = torch.randperm(len(train), generator=generator).tolist()
            for start in range(0, len(order), self.batch_size):
                if run.cancel.is_set():
                    self._set(run, status="cancelled")
                    return
                batch = [train[i] for i in order[start : start + self.batch_size]]
                ids, labels, mask = _collate(batch, pad, torch)
                out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
                loss = out.loss
                if not torch.isfinite(loss):
                    raise TrainerError(f"the loss became {loss.item()} at step {step + 1}")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                with run.lock:
                    run.steps.append(StepMetrics(step, float(loss.item()), None))
            if valid:
                v = self._evaluate(model, valid, pad, device, torch)
                with run.lock:
                    last = run.steps[-1]
                    run.steps[-1] = StepMetrics(last.step, last.train_loss, v)
        run.output_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(run.output_dir)
        (run.output_dir / "vector_trainer.json").write_text(
            json.dumps({"job_id": spec.job_id, "function_name": spec.function_name, "base_model": str(self.model_path), "steps": step})
        )
        self._set(run, status="succeeded")

    def _evaluate(self, model: Any, rows: list[tuple[list[int], list[int]]], pad: int, device: str, torch: Any) -> float:
        model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                ids, labels, mask = _collate(rows[start : start + self.batch_size], pad, torch)
                out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
                total += float(out.loss.item())
                n += 1
        model.train()
        return total / n if n else math.nan

    def _encode(self, tokenizer: Any, path: Path | None) -> list[tuple[list[int], list[int]]]:
        """(input ids, labels): the loss is on the assistant answer only, as in chat fine-tuning."""
        if path is None:
            return []
        rows = []
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            messages = json.loads(line)["messages"]
            prompt = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages[:-1]) + "<|assistant|>\n"
            answer = messages[-1]["content"] + (tokenizer.eos_token or "")
            p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            ids = (p_ids + a_ids)[: self.max_length]
            labels = ([-100] * len(p_ids) + a_ids)[: self.max_length]
            if any(label != -100 for label in labels):
                rows.append((ids, labels))
        return rows


def _collate(batch: list[tuple[list[int], list[int]]], pad: int, torch: Any) -> tuple[Any, Any, Any]:
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(batch):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    return ids, labels, mask
