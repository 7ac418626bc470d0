from pathlib import Path

import pytest

from stream.contract.config import ConfigError, Settings, parse_assignments


def test_defaults_are_valid_and_env_names_follow_fields() -> None:
    s = Settings.load(environ={})
    assert s.bootstrap is None and s.topic_prefix == "vt." and s.metrics_port == 9464
    described = {path: env for path, env, _v, _h in s.describe()}
    assert described["state_dir"] == "VT_STATE_DIR"
    assert described["bootstrap"] == "VT_BOOTSTRAP"
    assert described["runtime.max_message_bytes"] == "VT_RUNTIME_MAX_MESSAGE_BYTES"


def test_environment_then_overrides() -> None:
    env = {"VT_BOOTSTRAP": "kafka:9092", "VT_STATE_DIR": "/tmp/x", "VT_METRICS_PORT": "9100", "VT_RUNTIME_MAX_BATCH_RECORDS": "42"}
    s = Settings.load({"metrics_port": 9200, "runtime.poll_timeout_ms": "50", "group_id": None}, environ=env)
    assert s.bootstrap == "kafka:9092"
    assert s.state_dir == Path("/tmp/x")
    assert s.metrics_port == 9200  # the flag wins over the environment
    assert s.runtime.max_batch_records == 42 and s.runtime.poll_timeout_ms == 50
    assert s.group_id == "vector-trainer"  # None means "flag not given"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VT_BOOTSTRAP": "kafka"}, "bootstrap: 'kafka' is not host:port"),
        ({"VT_METRICS_PORT": "http"}, "VT_METRICS_PORT: 'http' is not an integer"),
        ({"VT_METRICS_PORT": "70000"}, "metrics_port: 70000 is not a port"),
        ({"VT_TOPIC_PREFIX": "vt/"}, "topic_prefix"),
        ({"VT_RUNTIME_MAX_BATCH_RECORDS": "0"}, "runtime.max_batch_records: must be >= 1"),
        ({"VT_LOG_LEVEL": "LOUD"}, "log_level"),
    ],
)
def test_bad_values_say_which_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.load(environ=env)


def test_unknown_setting_and_bad_assignment() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'runtime.nope'"):
        Settings.load({"runtime.nope": 1}, environ={})
    with pytest.raises(ConfigError, match="is a section"):
        Settings.load({"runtime": 1}, environ={})
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_assignments(["novalue"])
    assert parse_assignments(["runtime.max_batch_records = 7"]) == {"runtime.max_batch_records": "7"}
