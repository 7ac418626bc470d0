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


SCHEMA_DIR = ROOT / "schemas"


def _stale_schemas(schemas: dict[str, object]) -> list[str]:
    """Topics whose committed schemas/<topic>.schema.json differs from the generated one."""
    return [t for t, body in schemas.items() if json.loads((SCHEMA_DIR / f"{t}.schema.json").read_text()) != body]


def test_schema_for_every_topic_and_committed_copies_are_current() -> None:
    schemas = events.json_schemas()
    assert set(schemas) == set(events.TOPIC_TYPES)
    ex = schemas["executions"]
    assert set(ex["required"]) == {"uuid", "function_name", "timestamp_utc", "status", "inputs", "return_value"}
    assert ex["properties"]["status"]["enum"] == sorted(["SUCCESS", "ERROR", "FAILURE", "ANOMALY", "CACHE_HIT"])
    assert _stale_schemas(schemas) == [], "stale committed schemas: run 'vector-trainer schema --out schemas'"


def test_a_real_event_change_makes_the_committed_schemas_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison still bites once formatting is normalised: a new field on one event is caught."""

    class ModelUpdated(events.ModelUpdated, kw_only=True):  # same name, one field more
        """A model trained by a finished job is ready to serve."""

        rollout_percent: int = 100

    monkeypatch.setitem(events.TOPIC_TYPES, "models", ModelUpdated)
    changed = events.json_schemas()
    assert "rollout_percent" in changed["models"]["properties"]
    # every file carries every event in $defs, so all of them are stale, models first among them
    assert _stale_schemas(changed) == list(events.TOPIC_TYPES)


def test_schema_normalisation_hides_only_what_msgspec_versions_render_differently() -> None:
    raw = {"description": "Line one.\n\n    Indented body.\n    ", "anyOf": [{"type": "string"}, {"type": "null"}]}
    cleaned = {"description": "Line one.\n\nIndented body.", "anyOf": [{"type": "null"}, {"type": "string"}]}
    assert events._normalised(raw) == events._normalised(cleaned) == {
        "description": "Line one.\n\nIndented body.",
        "anyOf": [{"type": "string"}, {"type": "null"}],
    }
    assert events._normalised({"description": "Other text."}) != events._normalised({"description": "Line one."})
    assert events._normalised({"anyOf": [{"type": "integer"}, {"type": "null"}]}) != events._normalised({"anyOf": raw["anyOf"]})
