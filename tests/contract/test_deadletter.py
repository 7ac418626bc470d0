import base64

import pytest

from stream.contract import deadletter as dl
from stream.tools.traffic import BAD_KINDS, TrafficGenerator

EXPECTED = {
    "malformed_json": dl.MALFORMED_JSON,
    "missing_field": dl.MISSING_FIELD,
    "wrong_type": dl.WRONG_TYPE,
    "unknown_status": dl.UNKNOWN_STATUS,
    "nan_vector": dl.INVALID_VECTOR,
    "oversize": dl.OVERSIZE,
    "too_deep": dl.TOO_DEEP,
    "null_value": dl.NULL_VALUE,
}


@pytest.mark.parametrize("kind", [k for k in BAD_KINDS if k in EXPECTED])
def test_every_kind_of_bad_input_gets_its_reason(kind: str) -> None:
    bad = TrafficGenerator(seed=3).bad(kind)
    result = dl.decode_input("executions", bad.value, max_bytes=1_048_576, max_vector_dim=4096)
    assert isinstance(result, dl.DecodeFailure), kind
    assert result.error_type == EXPECTED[kind]
    assert result.error


def test_wrong_dimension_decodes_fine_here_because_it_needs_per_function_state() -> None:
    bad = TrafficGenerator(seed=3).bad("wrong_dimension")
    assert not isinstance(dl.decode_input("executions", bad.value, max_bytes=1 << 20, max_vector_dim=4096), dl.DecodeFailure)


def test_vector_longer_than_the_limit() -> None:
    good = TrafficGenerator(seed=3).execution()
    result = dl.decode_input("executions", good.value, max_bytes=1 << 20, max_vector_dim=8)
    assert isinstance(result, dl.DecodeFailure) and result.error_type == dl.INVALID_VECTOR


def test_dead_letter_keeps_a_bounded_copy_of_the_value() -> None:
    raw = b"x" * 1000
    letter = dl.dead_letter(source_topic="vt.executions", partition=1, offset=9, raw=raw, error_type=dl.OVERSIZE, error="big", max_value_bytes=100)
    assert base64.b64decode(letter.value_b64) == raw[:100]
    assert letter.value_bytes == 1000 and letter.value_truncated
    assert (letter.source_topic, letter.partition, letter.offset) == ("vt.executions", 1, 9)
