"""An OpenAI-compatible HTTP server on loopback, for testing the OpenAI trainer through the real SDK.

It implements the endpoints the trainer uses (``/v1/files``,
``/v1/fine_tuning/jobs`` with retrieve, list by metadata, cancel, events and
checkpoints) with OpenAI's JSON shapes and error bodies.  Each ``retrieve`` answers
the job's state and then advances it one state (validating_files → queued →
running, one training step per poll → succeeded), so tests are deterministic without sleeping; a job's
``script`` makes it fail part-way instead.  Faults (HTTP 500/429) can be
injected per path prefix, and every request is recorded.
"""

from __future__ import annotations

import email.parser
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.loopback_http import LoopbackServer

STEPS_PER_EPOCH = 2


@dataclass
class FakeJob:
    id: str
    model: str
    training_file: str
    validation_file: str | None
    n_epochs: int
    n_train: int
    suffix: str | None
    metadata: dict[str, str]
    script: str  # "succeed", "fail_after_step" or "stall" (runs until cancelled)
    created_at: int
    status: str = "validating_files"
    step: int = 0
    fine_tuned_model: str | None = None
    error: dict[str, Any] | None = None
    finished_at: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # what the server reported, per step

    @property
    def total_steps(self) -> int:
        return self.n_epochs * STEPS_PER_EPOCH

    def body(self) -> dict[str, Any]:
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "model": self.model,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "fine_tuned_model": self.fine_tuned_model,
            "organization_id": "org-fake",
            "result_files": [],
            "status": self.status,
            "validation_file": self.validation_file,
            "training_file": self.training_file,
            "hyperparameters": {"n_epochs": self.n_epochs, "batch_size": 1, "learning_rate_multiplier": 1.8},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": self.n_epochs}}},
            "trained_tokens": None,
            "error": self.error,
            "seed": 42,
            "metadata": self.metadata or None,
            "suffix": self.suffix,
        }


class FakeOpenAI(LoopbackServer):
    """Start with ``with FakeOpenAI(api_key=...) as server:``; point the SDK at ``server.base_url``."""

    def __init__(self, api_key: str, models: tuple[str, ...] = ("gpt-4o-mini-2024-07-18",), echo_key_in_errors: bool = False) -> None:
        self.api_key = api_key
        self.echo_key_in_errors = echo_key_in_errors
        self.models = set(models)
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.requests: list[tuple[str, str, bool]] = []  # method, path, authorized
        self.next_script = "succeed"
        self.scripts: dict[str, str] = {}  # vt_function metadata -> script, else next_script
        self.faults: list[list[Any]] = []  # [method, path prefix, status, remaining]
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._serve()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def fail_next(self, method: str, prefix: str, status: int, times: int = 1) -> None:
        with self.lock:
            self.faults.append([method, prefix, status, times])

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ok in self.requests if m == method and p == path)

    # ----------------------------------------------------------------- plumbing
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        path = url.path
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        authorized = h.headers.get("Authorization") == f"Bearer {self.api_key}"
        with self.lock:
            self.requests.append((method, path, authorized))
            fault = next((f for f in self.faults if f[0] == method and path.startswith(f[1]) and f[3] > 0), None)
            if fault is not None:
                fault[3] -= 1
        if not authorized:
            presented = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            # Like a provider that echoes what it was given (the real one shows a masked key): a test
            # can then check that our side never repeats the key it got back.
            shown = f" You provided: {presented}." if self.echo_key_in_errors else ""
            return self._send(h, 401, _error(f"Incorrect API key provided.{shown}", "invalid_request_error", "invalid_api_key"))
        if fault is not None:
            return self._send(h, fault[2], _error(f"injected fault {fault[2]}", "server_error", None))
        try:
            with self.lock:
                status, payload = self._route(method, path, query, body, h.headers.get("Content-Type", ""))
        except _ApiError as exc:
            status, payload = exc.status, _error(exc.message, exc.type, exc.code, exc.param)
        self._send(h, status, payload)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes, ctype: str) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1"]:
            raise _ApiError(404, f"unknown path {path}")
        parts = parts[1:]
        if parts == ["files"] and method == "POST":
            return 200, self._upload(body, ctype)
        if len(parts) == 2 and parts[0] == "files" and method == "GET":
            f = self.files.get(parts[1]) or _raise(_ApiError(404, f"No such File object: {parts[1]}", code="not_found"))
            f["status"] = "processed"
            return 200, _file_body(f)
        if parts[:2] != ["fine_tuning", "jobs"]:
            raise _ApiError(404, f"unknown path {path}")
        rest = parts[2:]
        if not rest:
            return (200, self._create(json.loads(body or b"{}"))) if method == "POST" else (200, self._list(query))
        job = self.jobs.get(rest[0]) or _raise(_ApiError(404, f"Could not find fine-tune: {rest[0]}", code="fine_tune_not_found"))
        if len(rest) == 1 and method == "GET":
            body = job.body()  # the state as it is, then time moves on by one step
            self._advance(job)
            return 200, body
        if rest[1:] == ["cancel"] and method == "POST":
            if job.status in ("succeeded", "failed", "cancelled"):
                raise _ApiError(400, f"Job {job.id} has already completed; it cannot be cancelled.", code="invalid_state")
            job.status, job.finished_at = "cancelled", int(time.time())
            job.events.append(_event(job, "info", "Fine-tuning job cancelled"))
            return 200, job.body()
        if rest[1:] == ["events"] and method == "GET":
            return 200, _page(list(reversed(job.events)), query)
        if rest[1:] == ["checkpoints"] and method == "GET":
            return 200, _page(list(reversed(job.checkpoints)), query)
        raise _ApiError(404, f"unknown path {path}")

    # ----------------------------------------------------------------- endpoints
    def _upload(self, body: bytes, ctype: str) -> dict[str, Any]:
        msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        fields: dict[str, Any] = {}
        filename = None
        for part in msg.get_payload() if msg.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                filename = part.get_filename()
            fields[name] = part.get_payload(decode=True)
        if fields.get("purpose") != b"fine-tune":
            raise _ApiError(400, "purpose must be fine-tune", param="purpose")
        content = fields.get("file") or _raise(_ApiError(400, "file is required", param="file"))
        lines = [line for line in content.decode().splitlines() if line.strip()]
        for i, line in enumerate(lines):
            row = json.loads(line)
            if not isinstance(row.get("messages"), list) or row["messages"][-1]["role"] != "assistant":
                raise _ApiError(400, f"line {i + 1} is not a chat example", param="file")
        fid = f"file-{next(self._ids)}"
        self.files[fid] = {"id": fid, "bytes": len(content), "filename": filename, "lines": len(lines), "status": "uploaded", "content": content}
        return _file_body(self.files[fid])

    def _create(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("model") not in self.models:
            raise _ApiError(400, f"Model {req.get('model')} is not available for fine-tuning or does not exist.", param="model", code="model_not_available")
        tf = self.files.get(req.get("training_file", ""))
        if tf is None:
            raise _ApiError(400, f"invalid training_file: {req.get('training_file')}", param="training_file")
        if tf["lines"] < 10:
            raise _ApiError(400, f"Training file has {tf['lines']} example(s), but must have at least 10 examples", param="training_file", code="invalid_n_examples")
        vf = req.get("validation_file")
        if vf is not None and vf not in self.files:
            raise _ApiError(400, f"invalid validation_file: {vf}", param="validation_file")
        hp = (req.get("method") or {}).get("supervised", {}).get("hyperparameters") or req.get("hyperparameters") or {}
        job = FakeJob(
            id=f"ftjob-{next(self._ids):06d}", model=req["model"], training_file=tf["id"], validation_file=vf,
            n_epochs=int(hp.get("n_epochs") or 3), n_train=tf["lines"], suffix=req.get("suffix"),
            metadata=dict(req.get("metadata") or {}), created_at=int(time.time()),
            script=self.scripts.get((req.get("metadata") or {}).get("vt_function", ""), self.next_script),
        )
        job.events.append(_event(job, "info", f"Created fine-tuning job: {job.id}"))
        self.jobs[job.id] = job
        return job.body()

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        wanted = {k[len("metadata[") : -1]: v for k, v in query.items() if k.startswith("metadata[") and k.endswith("]")}
        jobs = [j for j in reversed(list(self.jobs.values())) if all(j.metadata.get(k) == v for k, v in wanted.items())]
        return _page([j.body() for j in jobs], query)

    def _advance(self, job: FakeJob) -> None:
        """One state per retrieve: validating_files -> queued -> running (a step per poll) -> end."""
        if job.status == "validating_files":
            job.status = "queued"
            job.events.append(_event(job, "info", "Validated training file"))
        elif job.status == "queued":
            job.status = "running"
            job.events.append(_event(job, "info", "Fine-tuning job started"))
        elif job.status == "running":
            if job.script == "stall" and job.step >= 1:
                return  # keeps running until cancelled
            if job.step < job.total_steps:
                job.step += 1
                train_loss = round(2.5 / (1 + job.step), 4)
                valid_loss = round(2.8 / (1 + job.step), 4) if job.validation_file else None
                data = {"step": job.step, "train_loss": train_loss, "total_steps": job.total_steps, "train_mean_token_accuracy": 0.5}
                if valid_loss is not None:
                    data["valid_loss"] = valid_loss
                job.metrics.append(dict(data))
                job.events.append(_event(job, "info", f"Step {job.step}/{job.total_steps}: training loss={train_loss}", data))
                if job.step % STEPS_PER_EPOCH == 0:
                    job.checkpoints.append({
                        "object": "fine_tuning.job.checkpoint", "id": f"ftckpt-{job.id}-{job.step}", "created_at": int(time.time()),
                        "fine_tuned_model_checkpoint": f"ft:{job.model}:org-fake::{job.id}:ckpt-step-{job.step}",
                        "fine_tuning_job_id": job.id, "step_number": job.step,
                        "metrics": {"step": job.step, "train_loss": train_loss, "valid_loss": valid_loss, "full_valid_loss": valid_loss},
                    })
                if job.script == "fail_after_step" and job.step == 1:
                    job.status, job.finished_at = "failed", int(time.time())
                    job.error = {"code": "invalid_training_file", "message": "The job failed due to an invalid training file.", "param": "training_file"}
                    job.events.append(_event(job, "error", job.error["message"]))
            else:
                job.status, job.finished_at = "succeeded", int(time.time())
                job.fine_tuned_model = f"ft:{job.model}:org-fake:{job.suffix or ''}:{job.id[-6:]}"
                job.events.append(_event(job, "info", "The job has successfully completed"))


class _ApiError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None, param: str | None = None) -> None:  # noqa: A002
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param


def _raise(exc: Exception) -> Any:
    raise exc


def _error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _file_body(f: dict[str, Any]) -> dict[str, Any]:
    return {"object": "file", "id": f["id"], "bytes": f["bytes"], "created_at": int(time.time()), "filename": f["filename"],
            "purpose": "fine-tune", "status": f["status"]}


_event_ids = itertools.count(1)


def _event(job: FakeJob, level: str, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"object": "fine_tuning.job.event", "id": f"ftevent-{next(_event_ids)}", "created_at": int(time.time()),
            "level": level, "message": message, "data": data or {}, "type": "metrics" if data else "message"}


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    if "after" in query:
        ids = [i["id"] for i in items]
        items = items[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
    limit = int(query.get("limit") or 20)
    page = items[:limit]
    return {"object": "list", "data": page, "has_more": len(items) > limit,
            "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None}
