import json

import msgspec
import pytest

from stream.contract import events
from stream.contract.events import ExecutionLog
from tests.support import ROOT

GOOD = {
    "uuid": "u1",
    "function_name": "summarize",
    "timestamp_utc": "2026-11-01T10:00:00Z",
    "status": "SUCCESS",
    "inputs": {"text": "hi"},
    "return_value": "hello",
    "vector": [0.1, 0.2],
}


def test_round_trip_keeps_values_and_makes_timestamps_aware() -> None:
    naive = {**GOOD, "timestamp_utc": "2026-11-01T10:00:00"}
    log = events.decode("executions", json.dumps(naive).encode())
    assert isinstance(log, ExecutionLog)
    assert log.timestamp_utc.tzinfo is not None and log.timestamp_utc.utcoffset().total_seconds() == 0
    again = events.decode("executions", events.encode(log))
    assert again == log


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"status": "MAYBE"}, "Invalid enum value 'MAYBE' - at `$.status`"),
        ({"inputs": []}, "Expected `object`, got `array` - at `$.inputs`"),
        ({"vector": ["x"]}, "Expected `float`, got `str` - at `$.vector[0]`"),
        ({"vector": []}, "vector must not be empty"),
        ({"duration_ms": -1}, "Expected `float` >= 0"),
        ({"function_name": ""}, "Expected `str` of length >= 1 - at `$.function_name`"),
        ({"function_name": "a/b"}, "at `$.function_name`"),
    ],
)
def test_strict_decoding_names_the_field(change: dict, fragment: str) -> None:
    with pytest.raises(msgspec.ValidationError) as exc:
        events.decode("executions", json.dumps({**GOOD, **change}).encode())
    assert fragment in str(exc.value)


def test_missing_field_is_named() -> None:
    body = dict(GOOD)
    del body["return_value"]
    with pytest.raises(msgspec.ValidationError, match="missing required field `return_value`"):
        events.decode("executions", json.dumps(body).encode())


def test_non_finite_vector_rejected_when_built_in_python() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        ExecutionLog(**{**msgspec.json.decode(json.dumps(GOOD)), "timestamp_utc": events.utcnow(), "vector": [float("nan")]})


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    log = events.decode("executions", json.dumps({**GOOD, "tenant": "acme"}).encode())
    assert log.uuid == "u1"


def test_schema_for_every_topic_and_committed_copies_are_current() -> None:
    schemas = events.json_schemas()
    assert set(schemas) == set(events.TOPIC_TYPES)
    ex = schemas["executions"]
    assert set(ex["required"]) == {"uuid", "function_name", "timestamp_utc", "status", "inputs", "return_value"}
    assert ex["properties"]["status"]["enum"] == sorted(["SUCCESS", "ERROR", "FAILURE", "ANOMALY", "CACHE_HIT"])
    schema_dir = ROOT / "schemas"
    for topic, body in schemas.items():
        committed = json.loads((schema_dir / f"{topic}.schema.json").read_text())
        assert committed == body, f"schemas/{topic}.schema.json is stale: run 'vector-trainer schema --out schemas'"
