"""Engine 3 on the real embedded broker: golden samples in, jobs on vt.training and vt.models out.

OpenAI is the OpenAI-compatible server of tests/fake_openai.py on loopback, spoken
to by the real openai SDK; nothing here reaches the internet.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from processors.training import OpenAITrainer, TrainingProcessor
from processors.training.runner import request_cancel
from stream.contract import events
from stream.contract.config import TrainingSettings
from stream.contract.events import ModelUpdated, TrainingEvent
from stream.runtime.kafka import read_topic
from stream.runtime.sensors import PrometheusSensors
from tests.support.fake_openai import FakeOpenAI
from tests.support.runtime import metric, running, wait_for
from tests.support.training import golden, golden_items, produce, topic_events

pytestmark = pytest.mark.broker

KEY = "sk-broker-test-SECRET-9f8e7d6c5b4a"
FN = "summarize_ticket"


def openai_settings(make_settings, server: FakeOpenAI, **training):
    return make_settings(
        training=TrainingSettings(
            **{"trainer": "openai", "threshold": 12, "epochs": 2, "cooldown_s": 3600.0, "openai_base_url": server.base_url,
               "poll_initial_s": 0.05, "poll_max_s": 0.2, **training}
        )
    )


def last_status(proc: TrainingProcessor, fn: str = FN) -> str | None:
    jobs = proc.jobs_of(fn)
    return jobs[-1].status if jobs else None


async def test_full_job_queued_to_succeeded_with_losses_and_model_and_no_key_anywhere(
    make_settings, topics, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(api_key=KEY) as server:
        settings = openai_settings(make_settings, server)
        await produce(settings, golden_items(FN, range(15)))
        registry = CollectorRegistry()
        proc = TrainingProcessor(settings, sensor=PrometheusSensors(registry).training)
        async with running(settings, [proc], registry=registry) as rt:
            await wait_for(lambda: last_status(proc) == "succeeded", timeout=60, what="the job to succeed")
            await wait_for(lambda: metric(rt, "vt_events_produced_total", topic="models") >= 1, what="the model event")
            exposition = generate_latest(rt.registry).decode()
            assert metric(rt, "vt_training_jobs_total", function=FN, status="succeeded") == 1
            assert metric(rt, "vt_training_estimated_cost_usd", function=FN) > 0
            assert metric(rt, "vt_training_estimated_tokens", function=FN) > 0
            (job,) = server.jobs.values()
            assert metric(rt, "vt_training_loss", function=FN, split="train") == job.metrics[-1]["train_loss"]
            assert 0 <= time.time() - metric(rt, "vt_training_last_model_timestamp_seconds", function=FN) < 60
            # Statuses this job never reached exist at 0 (alert rules read them).
            assert metric(rt, "vt_training_jobs_total", function=FN, status="failed") == 0
            assert 'vt_training_jobs_total{function="summarize_ticket",status="rejected_budget"} 0.0' in exposition
        training = await topic_events(settings, "training")
        models = await topic_events(settings, "models")

    (job,) = server.jobs.values()
    seq = [(e.status, e.metrics.step if e.metrics else None) for e in training]
    steps = [m["step"] for m in job.metrics]
    # One event per status change and one per training step the provider reported (the first
    # step's event is also the change to running); the final event carries the last losses.
    assert seq == [("queued", None), ("validating", None), ("queued", None),
                   *[("running", s) for s in steps], ("succeeded", steps[-1])], seq
    assert all(e.job_id == training[0].job_id and e.function_name == FN for e in training)
    assert all(e.provider_job_id == job.id for e in training[1:])
    running_events = [e for e in training if e.metrics]
    assert [(e.metrics.train_loss, e.metrics.valid_loss) for e in running_events[:-1]] == [
        (m["train_loss"], m.get("valid_loss")) for m in job.metrics
    ]
    first = training[0]
    assert first.n_train + first.n_val == 15 and first.est_tokens > 0 and first.est_cost_usd > 0
    assert job.n_train == first.n_train and job.n_epochs == 2 and job.metadata["vt_job_id"] == first.job_id
    (model,) = models
    assert isinstance(model, ModelUpdated) and model.model == job.fine_tuned_model == training[-1].fine_tuned_model
    assert model.job_id == first.job_id and model.trained_on == first.n_train
    # The key was used (every request authorized) and appears nowhere we write.
    assert server.requests and all(ok for _m, _p, ok in server.requests)
    assert KEY not in caplog.text
    assert KEY not in exposition
    for t in ("training", "models", "dlq"):
        for r in await read_topic(settings.bootstrap, f"{settings.topic_prefix}{t}", idle_timeout=0.3):
            assert KEY.encode() not in (r.value or b"") + (r.key or b"")
    for path in settings.state_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    print("\nevent sequence of one job (vt.training, then vt.models):")
    for e in training:
        m = f" step={e.metrics.step} train_loss={e.metrics.train_loss} valid_loss={e.metrics.valid_loss}" if e.metrics else ""
        print(f"  {e.status:<10} job={e.job_id} provider={e.provider_job_id}{m}")
    print(f"  ModelUpdated model={model.model} trained_on={model.trained_on}")


async def test_failure_and_cancellation_paths(make_settings, topics, monkeypatch) -> None:
    monkeypatch.setenv("VT_TRAINING_API_KEY", KEY)
    with FakeOpenAI(api_key=KEY) as server:
        server.scripts = {"fails": "fail_after_step", "cancels": "stall"}
        settings = openai_settings(make_settings, server)
        await produce(settings, golden_items("fails", range(14)) + golden_items("cancels", range(14)))
        proc = TrainingProcessor(settings)
        async with running(settings, [proc]):
            await wait_for(lambda: last_status(proc, "fails") == "failed", timeout=60, what="the failing job")
            await wait_for(lambda: last_status(proc, "cancels") == "running", timeout=60, what="the other job to run")
            request_cancel(settings.state_dir, "cancels", None)
            await wait_for(lambda: last_status(proc, "cancels") == "cancelled", timeout=60, what="the cancellation")
        training = await topic_events(settings, "training")
        assert await topic_events(settings, "models") == []
    failed = [e for e in training if e.function_name == "fails"][-1]
    assert failed.status == "failed" and failed.error.startswith("invalid_training_file: The job failed")
    cancelled = [e for e in training if e.function_name == "cancels"][-1]
    assert cancelled.status == "cancelled"
    assert server.jobs[cancelled.provider_job_id].status == "cancelled"
    assert not list((settings.state_dir / "training" / "cancel-requests").glob("*.json"))


async def test_restart_resumes_the_running_job_by_id_instead_of_starting_another(make_settings, topics, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(api_key=KEY) as server:
        settings = openai_settings(make_settings, server, epochs=3, poll_initial_s=0.2, poll_max_s=0.2)
        await produce(settings, golden_items(FN, range(13)))
        first = TrainingProcessor(settings)
        async with running(settings, [first]):
            # The fake answers a poll with the job's state and then moves it on by a step, so the
            # processor sees "running" one poll after the server's first step: wait for both.
            await wait_for(
                lambda: any(j.step for j in server.jobs.values()) and last_status(first) == "running",
                timeout=60, what="the job to train a step and the processor to see it running",
            )
        assert last_status(first) == "running"
        (job,) = server.jobs.values()
        stopped_at = job.step
        assert stopped_at < job.total_steps
        second = TrainingProcessor(settings)
        async with running(settings, [second]):
            await wait_for(lambda: last_status(second) == "succeeded", timeout=60, what="the resumed job to succeed")
        training = await topic_events(settings, "training")
    assert server.count("POST", "/v1/fine_tuning/jobs") == 1 and len(server.files) == 2  # one job, uploaded once
    assert [e.status for e in training].count("queued") == 2  # ours, then the provider's queue
    assert {e.job_id for e in training} == {training[0].job_id}
    steps = [e.metrics.step for e in training if e.status == "running" and e.metrics and e.metrics.step]
    assert steps == sorted(set(steps)) and steps[-1] == job.total_steps  # no step reported twice across the restart


async def test_a_job_created_before_a_crash_is_found_by_its_id_not_created_again(make_settings, topics, monkeypatch) -> None:
    """The crash window between 'job created at the provider' and 'its id recorded': vt.training
    has our queued event (no provider id), the provider has the job (tagged with our job id)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(api_key=KEY) as server:
        settings = openai_settings(make_settings, server)
        await produce(settings, golden_items(FN, range(15)))
        # What the crashed instance had done: written the dataset, announced the job, created it.
        scratch = TrainingProcessor(settings, trainer=OpenAITrainer(api_key=KEY, base_url=server.base_url), restore_from_topic=False)
        scratch.load_state("golden", 0, None)
        from tests.support.training import records

        scratch.process(records([golden(FN, i) for i in range(15)]))
        (queued_out,) = scratch.tick(10**10).outputs
        queued = events.decode("training", queued_out.value)
        await produce(settings, [("training", FN.encode(), queued_out.value)])
        from processors.training.runner import spec_of

        t = OpenAITrainer(api_key=KEY, base_url=server.base_url)
        spec = spec_of(scratch.job(queued.job_id), settings.training.epochs)
        pid = await t.start(spec, await t.prepare(spec))
        await t.aclose()

        proc = TrainingProcessor(settings)
        async with running(settings, [proc]):
            await wait_for(lambda: last_status(proc) == "succeeded", timeout=60, what="the found job to succeed")
        training = await topic_events(settings, "training")
    assert server.count("POST", "/v1/fine_tuning/jobs") == 1
    assert {e.job_id for e in training} == {queued.job_id}
    assert training[-1].status == "succeeded" and training[-1].provider_job_id == pid


async def test_without_a_trainer_the_dataset_is_exported_and_announced(make_settings, topics) -> None:
    settings = make_settings(training=TrainingSettings(trainer="none", threshold=12, cooldown_s=0.0))
    bad_key = golden(FN, 99)
    items = golden_items(FN, range(16)) + [
        ("golden", f"{FN}/{golden(FN, 3).uuid}".encode(), None),  # a sample leaves the set
        ("golden", b"not-a-key", events.encode(bad_key)),  # key does not match: dead letter
    ]
    await produce(settings, items)
    registry = CollectorRegistry()
    proc = TrainingProcessor(settings, sensor=PrometheusSensors(registry).training)
    async with running(settings, [proc], registry=registry) as rt:
        await wait_for(lambda: last_status(proc) == "exported", timeout=60, what="the export")
        await wait_for(lambda: metric(rt, "vt_dead_letters_total") >= 1, what="the dead letter")
        assert metric(rt, "vt_training_jobs_total", function=FN, status="exported") == 1
    (ev,) = await topic_events(settings, "training")
    assert isinstance(ev, TrainingEvent) and ev.status == "exported" and ev.trainer == "none"
    assert ev.n_train + ev.n_val == 15  # 16 samples, one tombstoned
    path = Path(ev.dataset_path)
    assert path.is_relative_to(settings.state_dir) and (path / "train.jsonl").is_file() and (path / "manifest.json").is_file()
    assert golden(FN, 3).uuid not in (path / "manifest.json").read_text()
    (letter,) = await topic_events(settings, "dlq")
    assert letter.error_type == "invalid_value" and "does not match" in letter.error and letter.processor == "training"
