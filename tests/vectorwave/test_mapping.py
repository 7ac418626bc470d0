"""VectorWave execution records -> ExecutionLog: plain function calls, no store, no broker."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from stream.contract import deadletter, events
from stream.vectorwave_bridge.mapping import map_execution

TS = "2026-11-24T19:36:35.180751+00:00"


def _record(**over) -> dict:
    """A SUCCESS record exactly as VectorWave 1.0.2's tracer stores it (captured with capture_inputs=True)."""
    rec = {
        "trace_id": "868870da", "span_id": "9d253615", "parent_span_id": None, "function_name": "greet",
        "timestamp_utc": TS, "duration_ms": 0.095, "status": "SUCCESS", "error_message": None, "error_code": None,
        "return_value": '{"hi": "bobbob"}', "exec_source": "REALTIME", "function_uuid": "f4847c69-027d-5aaa-8c68-3ef53d125c59",
        "name": "bob", "n": 2, "api_key": "[MASKED]", "extra": {"a": [1, 2]},
    }
    rec.update(over)
    return rec


def _log(m) -> events.ExecutionLog:
    assert m.failure is None, m.failure
    return msgspec.json.decode(m.value, type=events.ExecutionLog)


def test_success_record_maps_every_field() -> None:
    m = map_execution("u-1", _record(), [0.25] * 4)
    log = _log(m)
    assert m.key == b"greet" and log.uuid == "u-1" and log.function_name == "greet" and log.status == "SUCCESS"
    assert log.timestamp_utc == datetime(2026, 11, 24, 19, 36, 35, 180751, tzinfo=UTC) == m.timestamp
    assert log.inputs == {"name": "bob", "n": 2, "api_key": "[MASKED]", "extra": {"a": [1, 2]}}  # top-level inputs
    assert log.return_value == {"hi": "bobbob"}  # VectorWave's JSON string, decoded
    assert (log.duration_ms, log.trace_id, log.span_id, log.error_message) == (0.095, "868870da", "9d253615", None)
    assert log.vector == [0.25] * 4
    wire = json.loads(m.value)
    assert wire["vectorwave"] == {"function_uuid": "f4847c69-027d-5aaa-8c68-3ef53d125c59", "exec_source": "REALTIME"}


def test_error_record_keeps_message_and_code() -> None:
    log = _log(map_execution("u", _record(status="ERROR", return_value=None, error_message="Traceback ...\nValueError: nope\n", error_code="ValueError")))
    assert log.status == "ERROR" and log.error_message.endswith("ValueError: nope\n") and log.return_value is None
    only_code = _log(map_execution("u", _record(status="FAILURE", error_code="RATE_LIMIT")))
    assert only_code.error_message == "RATE_LIMIT"


@pytest.mark.parametrize(
    ("stored", "expected"),
    [('"plain"', "plain"), ("[1, 2]", [1, 2]), ("not json", "not json"), (None, None), (42, 42)],
)
def test_return_value_is_decoded_when_it_is_json(stored, expected) -> None:
    assert _log(map_execution("u", _record(return_value=stored))).return_value == expected


def test_cache_hit_and_tags() -> None:
    rec = _record(status="CACHE_HIT", is_golden_source=True, team="search", run_id="r7")
    m = map_execution("u", rec, None, tag_keys={"team", "run_id"})
    log = _log(m)
    assert log.status == "CACHE_HIT" and "team" not in log.inputs and "run_id" not in log.inputs
    assert json.loads(m.value)["vectorwave"]["tags"] == {"team": "search", "run_id": "r7"}
    assert json.loads(m.value)["vectorwave"]["is_golden_source"] is True


def test_lite_zero_vector_means_no_vector() -> None:
    assert _log(map_execution("u", _record(), [0.0] * 384)).vector is None
    assert _log(map_execution("u", _record(), [])).vector is None


def test_pro_mode_value_types_encode() -> None:
    rec = _record(timestamp_utc=datetime(2026, 1, 1, tzinfo=UTC), function_uuid=uuid.UUID(int=5), extra={1, 2})
    log = _log(map_execution("u", rec))
    assert log.timestamp_utc == datetime(2026, 1, 1, tzinfo=UTC) and log.inputs["extra"] == [1, 2]


@pytest.mark.parametrize(
    ("change", "vector", "reason"),
    [
        ({"function_name": "a/b"}, None, "wrong_type"),
        ({"status": "WARNING"}, None, "unknown_status"),
        ({"timestamp_utc": None}, None, "wrong_type"),
        ({"timestamp_utc": "yesterday"}, None, "invalid_value"),
        ({}, [float("nan"), 1.0], "invalid_vector"),
        ({"duration_ms": -1.0}, None, "wrong_type"),  # the runtime classifies range errors so too
    ],
)
def test_records_that_are_not_valid_execution_logs_say_why(change, vector, reason) -> None:
    m = map_execution("u", _record(**change), vector)
    assert m.failure is not None and m.failure.error_type == reason and m.failure.error
    assert json.loads(m.value)["uuid"] == "u"  # the dead letter keeps the record


def test_missing_fields_are_reported() -> None:
    rec = _record()
    del rec["status"]
    m = map_execution("u", rec)
    assert m.failure is not None and m.failure.error_type == "wrong_type"  # present as null: "Expected str"
    assert "$.status" in m.failure.error


def test_tombstones_are_valid_only_on_compacted_topics() -> None:
    assert deadletter.decode_input("golden", None, max_bytes=1024, max_vector_dim=8) is None
    assert deadletter.decode_input("hooks", None, max_bytes=1024, max_vector_dim=8) is None
    failure = deadletter.decode_input("executions", None, max_bytes=1024, max_vector_dim=8)
    assert isinstance(failure, deadletter.DecodeFailure) and failure.error_type == deadletter.NULL_VALUE
