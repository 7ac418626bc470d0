"""OpenAITrainer through the real openai SDK against an OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from processors.training.dataset import Sample, split, write_dataset
from processors.training.trainers import JobSpec, OpenAITrainer, TrainerError
from processors.training.trainers.openai_trainer import STATUS_MAP
from tests.support.fake_openai import FakeOpenAI

KEY = "sk-test-0123456789abcdefSECRET"
MODEL = "gpt-4o-mini-2024-07-18"


def samples(n: int) -> list[Sample]:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        Sample(
            uuid=f"u{i:03d}",
            selected_at=t0 + timedelta(seconds=i),
            messages=(("system", "Summarise the ticket."), ("user", f"ticket {i}: my invoice is wrong"), ("assistant", f"Billing issue #{i}.")),
        )
        for i in range(n)
    ]


def spec_for(tmp_path: Path, n: int = 24, job_id: str = "job-1", model: str = MODEL, epochs: int = 2) -> JobSpec:
    train, valid = split(samples(n), 0.2)
    ds = write_dataset(root=tmp_path, job_id=job_id, function_name="summarize", train=train, valid=valid)
    return JobSpec(job_id, "summarize", model, epochs, ds.train_path, ds.valid_path, ds.n_train, ds.n_val)


@pytest.fixture
def server():
    with FakeOpenAI(api_key=KEY) as s:
        yield s


def trainer(server: FakeOpenAI, key: str = KEY) -> OpenAITrainer:
    return OpenAITrainer(api_key=key, base_url=server.base_url, timeout_s=5, max_retries=2)


async def test_full_job_uploads_creates_polls_and_reads_losses(server, tmp_path) -> None:
    spec = spec_for(tmp_path)
    t = trainer(server)
    prepared = await t.prepare(spec)
    assert set(server.files) == {prepared["training_file"], prepared["validation_file"]}
    assert server.files[prepared["training_file"]]["content"] == spec.train_path.read_bytes()
    pid = await t.start(spec, prepared)
    job = server.jobs[pid]
    assert job.n_epochs == 2 and job.metadata["vt_job_id"] == "job-1" and job.validation_file == prepared["validation_file"]
    statuses, steps = [], []
    for _ in range(20):
        update = await t.poll(pid)
        statuses.append(update.status)
        steps.extend(await t.metrics(pid, steps[-1].step if steps else None))
        if update.status == "succeeded":
            break
    assert statuses[:4] == ["validating", "queued", "running", "running"] and statuses[-1] == "succeeded"
    assert update.fine_tuned_model == job.fine_tuned_model and update.fine_tuned_model.startswith(f"ft:{MODEL}")
    # Every step the server reported, exactly once, with its losses.
    assert [(s.step, s.train_loss, s.valid_loss) for s in steps] == [
        (m["step"], m["train_loss"], m.get("valid_loss")) for m in job.metrics
    ]
    assert len(steps) == job.total_steps == 4
    assert await t.find(spec) == pid
    await t.aclose()


async def test_every_provider_status_is_mapped() -> None:
    from openai.types.fine_tuning import FineTuningJob

    literal = FineTuningJob.model_fields["status"].annotation.__args__
    assert set(literal) == set(STATUS_MAP)
    assert set(STATUS_MAP.values()) == {"validating", "queued", "running", "succeeded", "failed", "cancelled"}


async def test_failed_job_reports_the_providers_error(server, tmp_path) -> None:
    server.next_script = "fail_after_step"
    spec = spec_for(tmp_path)
    t = trainer(server)
    pid = await t.start(spec, await t.prepare(spec))
    for _ in range(10):
        update = await t.poll(pid)
        if update.status == "failed":
            break
    assert update.status == "failed"
    assert update.error == "invalid_training_file: The job failed due to an invalid training file. (param training_file)"
    await t.aclose()


async def test_cancel_then_poll_says_cancelled(server, tmp_path) -> None:
    spec = spec_for(tmp_path)
    t = trainer(server)
    pid = await t.start(spec, await t.prepare(spec))
    assert (await t.poll(pid)).status == "validating"
    await t.cancel(pid)
    assert (await t.poll(pid)).status == "cancelled"
    with pytest.raises(TrainerError, match="already completed"):
        await t.cancel(pid)  # a second cancel is refused by the provider: permanent
    await t.aclose()


async def test_bad_requests_are_permanent_errors_and_never_show_the_key(server, tmp_path) -> None:
    t = trainer(server)
    spec = spec_for(tmp_path, model="gpt-nope")
    with pytest.raises(TrainerError, match="model_not_available|not available") as exc:
        await t.start(spec, await t.prepare(spec))
    assert KEY not in str(exc.value)
    bad = trainer(server, key="sk-wrong-key-000000000000")
    with pytest.raises(TrainerError, match="401") as exc:
        await bad.prepare(spec_for(tmp_path, job_id="job-2"))
    assert "sk-wrong-key" not in str(exc.value)
    with pytest.raises(TrainerError, match="404"):
        await t.poll("ftjob-missing")
    await t.aclose()
    await bad.aclose()


async def test_server_errors_are_retried_by_the_sdk_then_transient(server, tmp_path) -> None:
    spec = spec_for(tmp_path)
    t = trainer(server)
    pid = await t.start(spec, await t.prepare(spec))
    server.fail_next("GET", f"/v1/fine_tuning/jobs/{pid}", 500, times=1)
    assert (await t.poll(pid)).status == "validating"  # the SDK retried the 500
    server.fail_next("GET", f"/v1/fine_tuning/jobs/{pid}", 503, times=10)
    with pytest.raises(openai.InternalServerError) as exc:
        await t.poll(pid)
    assert t.is_transient(exc.value)
    server.faults.clear()
    assert not t.is_transient(TrainerError("x"))
    await t.aclose()


async def test_upload_content_is_the_chatml_dataset(server, tmp_path) -> None:
    spec = spec_for(tmp_path, n=12)
    t = trainer(server)
    prepared = await t.prepare(spec)
    rows = [json.loads(line) for line in server.files[prepared["training_file"]]["content"].decode().splitlines()]
    assert len(rows) == spec.n_train and all(r["messages"][-1]["role"] == "assistant" for r in rows)
    await t.aclose()
