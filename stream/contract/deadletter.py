"""Decoding of input values with a reason for every failure, and dead-letter records.

Every way an input can be bad maps to one short ``error_type`` from a fixed
vocabulary (it is a metric label, so it must stay bounded); the full message,
naming the field, goes into the dead letter's ``error``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import msgspec

from stream.contract import events
from stream.contract.events import DeadLetter, ExecutionLog
from stream.contract.topics import COMPACTED

# The closed vocabulary of dead-letter reasons.
MALFORMED_JSON = "malformed_json"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
UNKNOWN_STATUS = "unknown_status"
INVALID_VALUE = "invalid_value"
INVALID_VECTOR = "invalid_vector"
WRONG_DIMENSION = "wrong_dimension"
OVERSIZE = "oversize"
TOO_DEEP = "too_deep"
NULL_VALUE = "null_value"
PROCESSING_ERROR = "processing_error"

REASONS = (
    MALFORMED_JSON,
    MISSING_FIELD,
    WRONG_TYPE,
    UNKNOWN_STATUS,
    INVALID_VALUE,
    INVALID_VECTOR,
    WRONG_DIMENSION,
    OVERSIZE,
    TOO_DEEP,
    NULL_VALUE,
    PROCESSING_ERROR,
)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    error_type: str
    error: str


def _classify_validation(message: str) -> str:
    if message.startswith("Object missing required field"):
        return MISSING_FIELD
    if "`$.vector" in message:
        return INVALID_VECTOR
    if message.startswith("Invalid enum value"):
        return UNKNOWN_STATUS if "`$.status`" in message else INVALID_VALUE
    if message.startswith("Expected"):
        return WRONG_TYPE
    return INVALID_VALUE


_NON_FINITE = (b"NaN", b"Infinity", b"-Infinity", b"inf", b"-inf", b"nan")


def _malformed(raw: bytes, message: str) -> DecodeFailure:
    """Name NaN/Infinity literals (which Python's json module writes) rather than just 'malformed'."""
    match = re.search(r"\(byte (\d+)\)", message)
    if match:
        pos = int(match.group(1))
        if any(raw.startswith(tok, pos) for tok in _NON_FINITE):
            in_vector = raw.rfind(b'"vector"', 0, pos) > raw.rfind(b"]", 0, pos)
            where = " - at `$.vector`" if in_vector else ""
            return DecodeFailure(
                INVALID_VECTOR if in_vector else INVALID_VALUE,
                f"non-finite number (NaN/Infinity) at byte {pos} is not valid JSON{where}",
            )
    return DecodeFailure(MALFORMED_JSON, message)


def decode_input(
    topic: str, raw: bytes | None, *, max_bytes: int, max_vector_dim: int
) -> events.Event | DecodeFailure | None:
    """Decode one input value of a logical topic, or say precisely why it is bad.

    ``None`` is a tombstone on a compacted topic (a key leaving the golden set or the
    hooks): valid input there, handed to processors as ``Record.value=None``.
    """
    if raw is None:
        if topic in COMPACTED:
            return None
        return DecodeFailure(NULL_VALUE, "value is null (tombstones are not valid on an input topic)")
    if len(raw) > max_bytes:
        return DecodeFailure(OVERSIZE, f"value has {len(raw)} bytes, the limit is {max_bytes}")
    try:
        raw.decode("utf-8")  # JSON is UTF-8, also in the names of fields the decoder skips
    except UnicodeDecodeError as exc:
        return DecodeFailure(MALFORMED_JSON, f"invalid UTF-8 at byte {exc.start}: {exc.reason}")
    try:
        event = events.decode(topic, raw)
    except msgspec.ValidationError as exc:
        message = str(exc)
        return DecodeFailure(_classify_validation(message), message)
    except msgspec.DecodeError as exc:
        return _malformed(raw, str(exc))
    except RecursionError:
        return DecodeFailure(TOO_DEEP, "JSON nesting is too deep to decode")
    if isinstance(event, ExecutionLog) and event.vector is not None and len(event.vector) > max_vector_dim:
        return DecodeFailure(
            INVALID_VECTOR, f"vector has {len(event.vector)} dimensions, the limit is {max_vector_dim} - at `$.vector`"
        )
    return event


def dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    raw: bytes | None,
    error_type: str,
    error: str,
    max_value_bytes: int,
    processor: str | None = None,
) -> DeadLetter:
    """Build the dead letter of one input, keeping at most ``max_value_bytes`` of it."""
    value = raw or b""
    kept = value[:max_value_bytes]
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        value_b64=base64.b64encode(kept).decode("ascii"),
        value_bytes=len(value),
        value_truncated=len(kept) < len(value),
        error_type=error_type if error_type in REASONS else INVALID_VALUE,
        error=error[:2000],
        at=events.utcnow(),
        processor=processor,
    )
