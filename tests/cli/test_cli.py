"""The command line, run as a user runs it (a subprocess of the installed entry point)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.contract.events import TOPIC_TYPES
from stream.contract.topics import ALL
from tests.support.cli import vt


def test_help_explains_every_command() -> None:
    res = vt("--help")
    assert res.returncode == 0
    for command in ("run", "broker", "topics", "produce", "tail", "schema", "config", "demo"):
        assert command in res.stdout
    run_help = vt("run", "--help").stdout
    assert "VT_BOOTSTRAP" in run_help and "embedded broker" in run_help


def test_bad_configuration_exits_2_with_the_setting_named() -> None:
    res = vt("config", env={"VT_METRICS_PORT": "lots"})
    assert res.returncode == 2
    assert "VT_METRICS_PORT: 'lots' is not an integer" in res.stderr
    res = vt("config", "-c", "runtime.max_batch_records=0")
    assert res.returncode == 2 and "runtime.max_batch_records: must be >= 1" in res.stderr


def test_schema_prints_json_schema_per_topic(tmp_path: Path) -> None:
    res = vt("schema", "--topic", "executions")
    assert res.returncode == 0
    body = json.loads(res.stdout)
    assert body["title"] == "ExecutionLog" and "vector" in body["properties"]
    res = vt("schema", "--out", str(tmp_path))
    assert res.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.schema.json" for t in TOPIC_TYPES)
    assert {"executions", "feedback", "golden", "hooks", "training", "models", "dlq", "curation"} <= set(TOPIC_TYPES)


@pytest.mark.broker
def test_topics_produce_and_tail_against_a_broker(broker) -> None:
    env = {"VT_BOOTSTRAP": broker.bootstrap, "VT_TOPIC_PREFIX": "cli."}
    created = vt("topics", "create", "--partitions", "2", env=env)
    assert created.returncode == 0, created.stderr
    assert "cli.golden" in created.stdout and "created" in created.stdout
    again = vt("topics", "create", env=env)
    assert again.returncode == 0 and "created" not in again.stdout and again.stdout.count("exists") == len(ALL)
    produced = vt("produce", "demo", "--count", "40", "--rate", "0", "--bad-ratio", "0", env=env)
    assert produced.returncode == 0, produced.stderr
    assert "sent 40 events" in produced.stdout
    tailed = vt("tail", "executions", "--max", "5", "--raw", env=env)
    assert tailed.returncode == 0, tailed.stderr
    lines = [json.loads(line) for line in tailed.stdout.splitlines() if line.strip()]
    assert len(lines) == 5 and all("function_name" in line for line in lines)
    missing = vt("tail", "nonsense", env=env)
    assert missing.returncode == 2 and "is not one of vector-trainer's topics" in missing.stderr


def test_commands_that_need_a_broker_say_so() -> None:
    res = vt("topics", "create", env={"VT_BOOTSTRAP": ""})
    assert res.returncode == 2 and "--bootstrap" in res.stderr
