"""Engine 3's pure logic with plain calls: dataset, cost guard, trigger, job records, state."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from processors.training import TrainingProcessor, build_trainer
from processors.training.cost import check_budget, count_tokens, encoding_for, estimate
from processors.training.dataset import Sample, in_validation, read_jsonl, split, write_dataset
from processors.training.jobs import JobUpdate, StepMetrics
from processors.training.trainers import OpenAITrainer
from stream.contract import events
from stream.contract.config import ConfigError, Settings, TrainingSettings
from stream.contract.deadletter import INVALID_VALUE
from stream.contract.events import ModelUpdated, TrainingEvent
from stream.contract.processing import FROM_BEGINNING
from stream.runtime.sensors import PrometheusSensors
from tests.support.training import T0, golden, record, records, tombstone

NOW = T0.timestamp() + 3600


def settings(tmp_path: Path, **training) -> Settings:
    return Settings(state_dir=tmp_path / "state", training=TrainingSettings(**{"cooldown_s": 0.0, **training}))


def proc(tmp_path: Path, trainer=None, **training) -> TrainingProcessor:
    sensor = PrometheusSensors(CollectorRegistry()).training  # its Prometheus side runs too
    p = TrainingProcessor(settings(tmp_path, **training), trainer=trainer, restore_from_topic=False, sensor=sensor, clock=lambda: NOW)
    assert p.load_state("golden", 0, None) == FROM_BEGINNING
    return p


def decoded(outputs) -> list:
    return [events.decode(o.topic, o.value) for o in outputs]


def openai_trainer() -> OpenAITrainer:
    return OpenAITrainer(api_key="sk-unit-test-key-123456", base_url="http://127.0.0.1:9/v1")  # never called here


# ----------------------------------------------------------------- configuration
def test_training_settings_come_from_the_environment() -> None:
    s = Settings.load(environ={"VT_TRAINING_THRESHOLD": "7", "VT_TRAINING_TRAINER": "openai", "VT_TRAINING_PRICES": "m1=2.5,m2=10"})
    assert s.training.threshold == 7 and s.training.trainer == "openai" and s.training.prices == {"m1": 2.5, "m2": 10.0}
    assert Settings.load(environ={}).training.threshold == 50
    described = {path: env for path, env, _v, _h in s.describe()}
    assert described["training.max_day_usd"] == "VT_TRAINING_MAX_DAY_USD"
    with pytest.raises(ConfigError, match="training.trainer"):
        Settings.load(environ={"VT_TRAINING_TRAINER": "magic"})
    with pytest.raises(ConfigError, match="min_train_examples"):
        Settings.load(environ={"VT_TRAINING_MIN_TRAIN_EXAMPLES": "5"})
    with pytest.raises(ConfigError, match="local_model_path"):
        Settings.load(environ={"VT_TRAINING_TRAINER": "local"})
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_trainer(TrainingSettings(trainer="openai"), environ={})
    assert build_trainer(TrainingSettings(), environ={}) is None


# ----------------------------------------------------------------- dataset
def _samples(n: int) -> list[Sample]:
    return [
        Sample(uuid=s.uuid, selected_at=s.selected_at, messages=tuple((m.role, m.content) for m in s.messages))
        for s in (golden("f", i) for i in range(n))
    ]


def test_split_is_a_function_of_each_uuid_alone(tmp_path) -> None:
    all_ = _samples(200)
    train, val = split(all_, 0.2)
    assert 20 <= len(val) <= 60 and len(train) + len(val) == 200
    # Removing half of the samples moves nobody between splits.
    train2, val2 = split(all_[::2], 0.2)
    assert {s.uuid for s in val2} == {s.uuid for s in val} & {s.uuid for s in all_[::2]}
    assert all(in_validation(s.uuid, 0.2) for s in val) and not any(in_validation(s.uuid, 0.2) for s in train)
    assert split(all_, 0.0)[1] == []


def test_dataset_files_are_chatml_jsonl_with_a_manifest(tmp_path) -> None:
    train, val = split(_samples(30), 0.2)
    ds = write_dataset(root=tmp_path, job_id="j1", function_name="weird name/../x", train=train, valid=val)
    assert ds.directory.parent.parent == tmp_path and ".." not in ds.directory.parent.name
    rows = read_jsonl(ds.train_path)
    assert len(rows) == ds.n_train and rows[0]["messages"][0] == {"role": "system", "content": "You are the f function."}
    manifest = json.loads(ds.manifest_path.read_text())
    assert manifest["n_train"] == len(train) and manifest["n_val"] == len(val)
    assert {s["uuid"] for s in manifest["samples"] if s["split"] == "valid"} == {s.uuid for s in val}
    assert manifest["trained_through"] == max(s.selected_at for s in train + val).isoformat()
    again = write_dataset(root=tmp_path / "b", job_id="j1", function_name="weird name/../x", train=train, valid=val)
    assert again.train_path.read_bytes() == ds.train_path.read_bytes()


# ----------------------------------------------------------------- cost guard
def test_tokens_are_counted_offline_and_priced_per_million() -> None:
    s = _samples(10)
    assert encoding_for("gpt-4o-mini-2024-07-18") == "o200k_base" and encoding_for("gpt-3.5-turbo-0125") == "cl100k_base"
    per_epoch = count_tokens(s, "o200k_base")
    assert per_epoch > 10 * 3 * 4  # contents plus per-message framing
    est = estimate(s, model="gpt-4o-mini-2024-07-18", epochs=3, prices={"gpt-4o-mini-2024-07-18": 3.0})
    assert est.tokens == 3 * per_epoch and est.cost_usd == pytest.approx(est.tokens * 3.0 / 1e6)
    unknown = estimate(s, model="gpt-secret", epochs=3, prices={"gpt-4o-mini-2024-07-18": 3.0})
    verdict = check_budget(unknown, model="gpt-secret", max_job_usd=100, max_day_usd=100, spent_today_usd=0)
    assert not verdict.allowed and "no price for model 'gpt-secret'" in verdict.reason
    assert check_budget(est, model="m", max_job_usd=1.0, max_day_usd=1.0, spent_today_usd=0).allowed
    over_job = check_budget(est, model="m", max_job_usd=est.cost_usd / 2, max_day_usd=100, spent_today_usd=0)
    assert not over_job.allowed and "per-job budget" in over_job.reason
    over_day = check_budget(est, model="m", max_job_usd=100, max_day_usd=1.0, spent_today_usd=1.0 - est.cost_usd / 2)
    assert not over_day.allowed and "per-day budget" in over_day.reason


# ----------------------------------------------------------------- the trigger
def test_no_trainer_exports_the_dataset_at_the_threshold_and_counts_only_new_samples(tmp_path) -> None:
    p = proc(tmp_path, threshold=12)
    assert not p.process(records([golden("f", i) for i in range(11)])).rejected
    assert p.tick(NOW).outputs == []
    p.process([record(golden("f", 11), offset=11)])
    outs = p.tick(NOW + 1).outputs
    (ev,) = decoded(outs)
    assert isinstance(ev, TrainingEvent) and ev.status == "exported" and ev.trainer == "none"
    assert ev.n_train + ev.n_val == 12 and ev.n_train >= 10 and ev.est_tokens > 0
    assert Path(ev.dataset_path, "train.jsonl").is_file() and Path(ev.dataset_path, "manifest.json").is_file()
    assert ev.trained_through == T0 + timedelta(seconds=11)
    assert outs[0].key == b"f"
    # Nothing new: nothing happens, however often it ticks.
    assert p.tick(NOW + 5).outputs == []
    p.process(records([golden("f", i) for i in range(12, 23)], start=12))
    assert p.tick(NOW + 10).outputs == []  # 11 new < 12
    p.process([record(golden("f", 23), offset=23)])
    (ev2,) = decoded(p.tick(NOW + 20).outputs)
    assert ev2.status == "exported" and ev2.n_train + ev2.n_val == 24 and ev2.job_id != ev.job_id


def test_tombstones_remove_samples_and_small_sets_never_fire(tmp_path) -> None:
    p = proc(tmp_path, threshold=10)
    p.process(records([golden("f", i) for i in range(14)]))
    p.process([tombstone("f", f"f-s{i:04d}", offset=20 + i) for i in range(5)])
    assert len(p.samples("f")) == 9
    assert p.tick(NOW).outputs == []
    # 10 samples, but with 20 % held out fewer than 10 training examples: no job yet.
    q = proc(tmp_path / "q", threshold=5, validation_fraction=0.3)
    q.process(records([golden("g", i) for i in range(11)]))
    assert q.tick(NOW).outputs == [] and len(split(q.samples("g"), 0.3)[0]) < 10


def test_cooldown_and_one_job_in_flight(tmp_path) -> None:
    p = proc(tmp_path, openai_trainer(), threshold=10, cooldown_s=100.0)
    p.process(records([golden("f", i) for i in range(12)]))
    (queued,) = decoded(p.tick(NOW).outputs)
    assert queued.status == "queued" and queued.trainer == "openai" and queued.est_cost_usd > 0
    p.process(records([golden("f", i) for i in range(12, 40)], start=12))
    assert p.tick(NOW + 500).outputs == []  # in flight
    p.job_update(queued.job_id, JobUpdate(status="failed", provider_job_id="ftjob-1", error="boom"))
    p._clock = lambda: NOW + 10  # noqa: SLF001
    assert p.tick(NOW + 50).outputs == []  # cooldown from the job's start
    (second,) = decoded(p.tick(NOW + 101).outputs)
    assert second.status == "queued" and second.n_train + second.n_val == 40


def test_budget_refusals_are_events_with_the_figures(tmp_path) -> None:
    p = proc(tmp_path, openai_trainer(), threshold=10, max_job_usd=0.000001)
    p.process(records([golden("f", i) for i in range(12)]))
    (ev,) = decoded(p.tick(NOW).outputs)
    assert ev.status == "rejected_budget" and ev.est_tokens > 0 and ev.est_cost_usd > 0.000001
    assert "per-job budget" in ev.error and Path(ev.dataset_path, "train.jsonl").is_file()
    unknown = proc(tmp_path / "u", openai_trainer(), threshold=10, base_model="gpt-unpriced")
    unknown.process(records([golden("f", i) for i in range(12)]))
    (ev,) = decoded(unknown.tick(NOW).outputs)
    assert ev.status == "rejected_budget" and "no price for model 'gpt-unpriced'" in ev.error


def test_per_day_budget_counts_jobs_started_today(tmp_path) -> None:
    p = proc(tmp_path, openai_trainer(), threshold=10)
    p.process(records([golden("f", i) for i in range(12)]))
    (first,) = decoded(p.tick(NOW).outputs)
    assert first.status == "queued"
    budget = first.est_cost_usd * 1.5
    p2 = proc(tmp_path / "p2", openai_trainer(), threshold=10, max_day_usd=budget)
    p2.process(records([golden("f", i) for i in range(12)]))
    p2.process(records([golden("g", i) for i in range(12)], partition=0, start=100))
    outs = decoded(p2.tick(NOW).outputs)
    assert [e.status for e in outs] == ["queued", "rejected_budget"]
    assert "per-day budget" in outs[1].error and p2.spent_today(NOW) == pytest.approx(outs[0].est_cost_usd)
    assert p2.spent_today(NOW + 86400) == 0  # a new UTC day


def test_bad_golden_records_are_rejected_with_reasons(tmp_path) -> None:
    p = proc(tmp_path)
    good = golden("f", 1)
    no_answer = golden("f", 2, answer="   ")
    result = p.process([
        record(good, k=b"f/someone-else"),
        record(no_answer, offset=1),
        record(good, offset=2, k=b"\xff\xfe"),
        tombstone("f", "", offset=3),
        record(good, offset=4),
    ])
    reasons = [(r.error_type, r.error) for r in result.rejected]
    assert [t for t, _ in reasons] == [INVALID_VALUE] * 4
    assert "does not match" in reasons[0][1] and "assistant message is empty" in reasons[1][1]
    assert "UTF-8" in reasons[2][1] and "not function_name/uuid" in reasons[3][1]
    assert [s.uuid for s in p.samples("f")] == [good.uuid]  # the good one still counted


# ----------------------------------------------------------------- job records
def test_job_updates_emit_each_status_change_and_step_then_model(tmp_path) -> None:
    p = proc(tmp_path, openai_trainer(), threshold=10)
    p.process(records([golden("f", i) for i in range(12)]))
    (queued,) = decoded(p.tick(NOW).outputs)
    jid = queued.job_id
    seq = []
    seq += decoded(p.job_update(jid, JobUpdate(status="validating", provider_job_id="ftjob-9")).outputs)
    assert p.job_update(jid, JobUpdate(status="validating", provider_job_id="ftjob-9")).outputs == []  # no change, no event
    seq += decoded(p.job_update(jid, JobUpdate(status="running", steps=(StepMetrics(1, 2.0, 2.2), StepMetrics(2, 1.5, None)))).outputs)
    seq += decoded(p.job_update(jid, JobUpdate(status="running", steps=(StepMetrics(2, 1.5, None),))).outputs)  # seen already
    seq += decoded(p.job_update(jid, JobUpdate(status="succeeded", fine_tuned_model="ft:m:org::x", steps=(StepMetrics(3, 1.0, 1.1),))).outputs)
    assert [type(e).__name__ + ":" + getattr(e, "status", "") for e in seq] == [
        "TrainingEvent:validating", "TrainingEvent:running", "TrainingEvent:running", "TrainingEvent:running",
        "TrainingEvent:succeeded", "ModelUpdated:",
    ]
    assert [e.metrics.step for e in seq[1:4]] == [1, 2, 3] and seq[1].metrics.valid_loss == 2.2
    assert all(e.provider_job_id == "ftjob-9" for e in seq[:5])
    model = seq[-1]
    assert isinstance(model, ModelUpdated) and model.model == "ft:m:org::x" and model.trained_on == queued.n_train
    assert p.job_update(jid, JobUpdate(status="running")).outputs == []  # final: later reports are ignored


def test_state_round_trip_and_restore_from_topic_history(tmp_path) -> None:
    p = proc(tmp_path, openai_trainer(), threshold=10)
    p.process(records([golden("f", i) for i in range(12)]))
    (queued,) = decoded(p.tick(NOW).outputs)
    p.job_update(queued.job_id, JobUpdate(status="running", provider_job_id="ftjob-7"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    p.save_state("golden", 0, ckpt)
    # A restart with the checkpoint: same golden set, the job still in flight, nothing re-fired.
    q = TrainingProcessor(settings(tmp_path, threshold=10), trainer=openai_trainer(), restore_from_topic=True, clock=lambda: NOW)
    q.load_state("golden", 0, ckpt)
    assert q.owned_active_jobs() == [] and q.tick(NOW + 10).outputs == []  # waits for the topic history
    assert q.partitions_to_restore() == {0}
    q.restore([], {0})
    (job,) = q.owned_active_jobs()
    assert job.last.provider_job_id == "ftjob-7" and job.status == "running" and len(q.samples("f")) == 12
    assert q.tick(NOW + 20).outputs == []
    # A new owner without checkpoint rebuilds the job from vt.training events alone.
    history = [TrainingEvent(**{**msgspec.structs.asdict(queued)}), *decoded(p.job_update(queued.job_id, JobUpdate(status="running", steps=(StepMetrics(1, 1.0),))).outputs)]
    r = TrainingProcessor(settings(tmp_path / "r", threshold=10), trainer=openai_trainer(), clock=lambda: NOW)
    r.load_state("golden", 0, None)
    r.process(records([golden("f", i) for i in range(12)]))
    r.restore(history, {0})
    (job,) = r.owned_active_jobs()
    assert job.job_id == queued.job_id and job.last.provider_job_id == "ftjob-7" and job.step == 1
    assert r.tick(NOW + 30).outputs == []


def test_a_dataset_that_cannot_be_written_does_not_stop_the_processor(tmp_path) -> None:
    p = proc(tmp_path, threshold=10)
    p.root.parent.mkdir(parents=True, exist_ok=True)
    p.root.write_text("a file where the training directory should be")
    p.process(records([golden("f", i) for i in range(12)]))
    assert p.tick(NOW).outputs == []  # logged, held back, no exception
    p.root.unlink()
    assert p.tick(NOW + 30).outputs == []  # still held
    (ev,) = decoded(p.tick(NOW + 61).outputs)
    assert ev.status == "exported"


def test_a_checkpoint_written_before_records_held_their_event_still_loads(tmp_path) -> None:
    p = proc(tmp_path, trainer=openai_trainer(), threshold=10)
    p.process(records([golden("f", i) for i in range(12)]))
    (queued,) = decoded(p.tick(NOW).outputs)
    p.job_update(queued.job_id, JobUpdate(status="running", provider_job_id="ftjob-3", steps=(StepMetrics(2, 0.5, 0.6),)))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    p.save_state("golden", 0, ckpt)
    # The same state in the flat layout of earlier versions: the event's fields, created_at, updated_at, losses.
    state = json.loads((ckpt / "training.json").read_text())
    legacy_jobs = []
    for job in state["jobs"]:
        flat = {k: v for k, v in job["last"].items() if k not in ("at", "metrics")}
        legacy_jobs.append({**flat, "created_at": job["created_at"], "updated_at": job["last"]["at"], **job["last"].get("metrics", {})})
    (ckpt / "training.json").write_text(json.dumps({"samples": state["samples"], "jobs": legacy_jobs}))
    q = TrainingProcessor(settings(tmp_path, threshold=10), trainer=openai_trainer(), restore_from_topic=False, clock=lambda: NOW)
    q.load_state("golden", 0, ckpt)
    (job,) = q.owned_active_jobs()
    assert job.last == p.job(queued.job_id).last and job.created_at == p.job(queued.job_id).created_at
    assert job.step == 2 and job.last.metrics.valid_loss == 0.6 and job.last.provider_job_id == "ftjob-3"
