"""``vector-trainer train ...`` as a user runs it, and the demo summary's engine-3 section."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from rich.console import Console

from stream.contract import events
from stream.contract.events import ModelUpdated, TrainingEvent, TrainingMetrics
from stream.contract.topics import ALL, TopicNames
from stream.runtime.kafka import ensure_topics, read_topic
from stream.tools.summary import sections
from tests.support.cli import vt
from tests.support.training import T0, golden_items, produce

pytestmark = pytest.mark.broker


def ev(fn: str, job: str, status: str, minute: int, **kw) -> tuple[str, bytes, bytes]:
    body = TrainingEvent(job_id=job, function_name=fn, trainer="openai", base_model="gpt-4o-mini-2024-07-18", status=status,
                         at=T0 + timedelta(minutes=minute), n_train=12, n_val=2, est_tokens=4242, est_cost_usd=0.0127,
                         dataset_path=f"/data/{job}", trained_through=T0 + timedelta(seconds=13), **kw)
    return ("training", fn.encode(), events.encode(body))


def test_train_help_lists_its_commands() -> None:
    res = vt("train", "--help")
    assert res.returncode == 0
    for command in ("list", "status", "cancel", "export"):
        assert command in res.stdout


async def test_train_commands_and_summary_against_a_broker(broker, tmp_path) -> None:
    prefix = "traincli."
    env = {"VT_BOOTSTRAP": broker.bootstrap, "VT_TOPIC_PREFIX": prefix, "VT_STATE_DIR": str(tmp_path / "state")}
    names = TopicNames(prefix)
    await ensure_topics(broker.bootstrap, names, 2)

    class S:  # what produce() needs
        bootstrap = broker.bootstrap
        topic_prefix = prefix

    done = [
        ev("fn_a", "job-a", "queued", 0),
        ev("fn_a", "job-a", "running", 1, provider_job_id="ftjob-1", metrics=TrainingMetrics(step=1, train_loss=1.25, valid_loss=1.4)),
        ev("fn_a", "job-a", "succeeded", 2, provider_job_id="ftjob-1", fine_tuned_model="ft:gpt-4o-mini:org::abc"),
        ("models", b"fn_a", events.encode(ModelUpdated(function_name="fn_a", model="ft:gpt-4o-mini:org::abc", job_id="job-a", trained_on=12, at=T0))),
        ev("fn_b", "job-b", "queued", 0),
    ]
    await produce(S, golden_items("fn_a", range(14)) + golden_items("fn_b", range(3)) + done)

    listed = vt("train", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    row_a = next(line for line in listed.stdout.splitlines() if "fn_a" in line)
    assert "succeeded" in row_a and "ft:gpt-4o-mini:org::abc" in row_a and "14" in row_a
    status = vt("train", "status", "fn_a", env=env)
    assert status.returncode == 0, status.stderr
    assert "14 golden samples, 0 new since the last job" in status.stdout
    assert "running, step 1, train_loss 1.25, valid_loss 1.4" in status.stdout and "newest model: ft:gpt-4o-mini:org::abc" in status.stdout
    assert vt("train", "status", "nobody", env=env).returncode == 1

    out = tmp_path / "export"
    exported = vt("train", "export", "fn_a", "--out", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    (manifest,) = out.rglob("manifest.json")
    body = json.loads(manifest.read_text())
    assert body["n_train"] + body["n_val"] == 14 and body["est_tokens"] > 0 and f"dataset: {manifest.parent}" in exported.stdout
    assert vt("train", "export", "nobody", env=env).returncode == 1

    nothing = vt("train", "cancel", "fn_a", env=env)
    assert nothing.returncode == 1 and "no job in flight (latest: succeeded)" in nothing.stdout
    cancel = vt("train", "cancel", "fn_b", env={**env, "OPENAI_API_KEY": ""})
    assert cancel.returncode == 0, cancel.stderr
    (request,) = (tmp_path / "state" / "training" / "cancel-requests").glob("*.json")
    assert json.loads(request.read_text()) == {"function_name": "fn_b", "job_id": "job-b"}

    records = {t: await read_topic(broker.bootstrap, names.physical(t), idle_timeout=0.5) for t in ALL}
    console = Console(record=True, width=250)
    for section in sections():
        rendered = section(records)
        if rendered is not None:
            console.print(rendered)
    text = console.export_text()
    assert "Fine-tuning per function" in text
    line_a = next(line for line in text.splitlines() if "fn_a" in line and "succeeded" in line)
    assert "12/2" in line_a and "4242" in line_a and "ft:gpt-4o-mini:org::abc" in line_a
    assert any("fn_b" in line and "queued" in line for line in text.splitlines())


def test_summary_says_so_when_there_is_nothing_to_train() -> None:
    from processors.training.report import summary

    console = Console(record=True, width=200)
    console.print(summary({}))
    assert "no golden samples reached the golden topic" in console.export_text()


def test_run_refuses_openai_without_a_key(broker, tmp_path) -> None:
    env = {"VT_BOOTSTRAP": broker.bootstrap, "VT_TOPIC_PREFIX": "nokey.", "VT_TRAINING_TRAINER": "openai",
           "OPENAI_API_KEY": "", "VT_TRAINING_API_KEY": "", "VT_STATE_DIR": str(tmp_path), "VT_METRICS_PORT": "0"}
    res = vt("run", env=env)
    assert res.returncode == 2 and "needs an API key in VT_TRAINING_API_KEY or OPENAI_API_KEY" in res.stderr
