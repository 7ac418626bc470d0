"""VectorWave execution records -> ``ExecutionLog`` values for ``vt.executions``.

VectorWave 1.0 stores one object per call in its ``VectorWaveExecutions``
collection: bookkeeping fields (``function_name``, ``timestamp_utc``,
``duration_ms``, ``status``, ``error_message``, ``error_code``, ``return_value``
as a JSON *string*, ``trace_id``, ``span_id``, ``parent_span_id``,
``function_uuid``, ``exec_source``) next to the captured inputs, which are
top-level properties named after the function's parameters.  This module turns
such a record into the JSON an ``ExecutionLog`` decodes from, and validates it with
the very decoder the processor uses, so a record that would be dead-lettered there
is known (with the same reason) before it is sent.
"""

from __future__ import annotations

import json
import uuid as uuid_mod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import msgspec

from stream.contract import events
from stream.contract.deadletter import DecodeFailure, decode_input

# VectorWave's own fields of an execution record; everything else is an input
# (VectorWave's archiver uses the same split when it exports training data).
BOOKKEEPING = frozenset(
    {
        "uuid",
        "trace_id",
        "span_id",
        "parent_span_id",
        "function_name",
        "function_uuid",
        "timestamp_utc",
        "duration_ms",
        "status",
        "error_message",
        "error_code",
        "return_value",
        "exec_source",
        "is_golden_source",
    }
)
# Kept on the wire under "vectorwave" (ExecutionLog ignores unknown fields, so
# consumers that want them can read them; nothing else depends on them).
_EXTRAS = ("function_uuid", "parent_span_id", "error_code", "exec_source", "is_golden_source")


@dataclass(frozen=True, slots=True)
class Mapped:
    """One record ready to produce: on ``vt.executions`` when ``failure`` is None, else dead-lettered."""

    uuid: str
    key: bytes  # the function name, as every producer keys vt.executions
    value: bytes  # the ExecutionLog JSON (or, for a failure, the best-effort JSON that failed)
    failure: DecodeFailure | None = None
    timestamp: datetime | None = None


def _plain(obj: Any) -> Any:
    """msgspec fallback for values a store may hand back (Weaviate's UUID/date types, sets, bytes)."""
    if isinstance(obj, uuid_mod.UUID):
        return str(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf-8", errors="replace")
    return str(obj)


def decode_return_value(value: Any) -> Any:
    """VectorWave stores the (masked) return value JSON-encoded in a string; undo that when it parses."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def meaningful_vector(vector: Iterable[float] | None) -> list[float] | None:
    """The stored vector, or None when there is none.

    Lite mode (LanceDB) has a fixed-size vector column and writes zeros for an
    execution logged without a vectorizer; an all-zero vector has no direction, so
    it is treated as absent and the density engine embeds the log itself.
    """
    if vector is None:
        return None
    out = [float(x) for x in vector]
    if all(x == 0.0 for x in out):  # also true for []; NaN is not 0.0, so it stays and fails validation
        return None
    return out


def execution_object(
    uuid: str, properties: Mapping[str, Any], vector: Iterable[float] | None, *, tag_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """The JSON object of an ExecutionLog for one VectorWave execution record (not validated here).

    ``tag_keys`` are VectorWave custom properties (``.weaviate_properties``: team,
    priority, run_id ...) that are labels of the call rather than its inputs.
    """
    skip = BOOKKEEPING | set(tag_keys)
    obj: dict[str, Any] = {
        "uuid": str(uuid),
        "function_name": properties.get("function_name"),
        "timestamp_utc": properties.get("timestamp_utc"),
        "status": properties.get("status"),
        "inputs": {k: v for k, v in properties.items() if k not in skip},
        "return_value": decode_return_value(properties.get("return_value")),
    }
    for name in ("duration_ms", "trace_id", "span_id"):
        if properties.get(name) is not None:
            obj[name] = properties[name]
    message, code = properties.get("error_message"), properties.get("error_code")
    if message is not None or code is not None:
        obj["error_message"] = str(message if message is not None else code)
    vec = meaningful_vector(vector)
    if vec is not None:
        obj["vector"] = vec
    extras = {k: properties[k] for k in _EXTRAS if properties.get(k) is not None}
    tags = {k: properties[k] for k in tag_keys if properties.get(k) is not None}
    if tags:
        extras["tags"] = tags
    if extras:
        obj["vectorwave"] = extras
    return obj


_encoder = msgspec.json.Encoder(enc_hook=_plain)


def map_execution(
    uuid: str,
    properties: Mapping[str, Any],
    vector: Iterable[float] | None = None,
    *,
    tag_keys: Iterable[str] = (),
    max_bytes: int = 1_048_576,
    max_vector_dim: int = 8192,
) -> Mapped:
    """Map and validate one record exactly as the processor will decode it.

    Never raises on odd content: whatever cannot become a valid ExecutionLog comes
    back with a :class:`DecodeFailure` (same reason vocabulary as the runtime's dead
    letters), so the caller dead-letters it instead of dropping it.
    """
    obj = execution_object(uuid, properties, vector, tag_keys=tag_keys)
    name = obj.get("function_name")
    key = name.encode("utf-8", errors="replace") if isinstance(name, str) else b""
    try:
        raw = _encoder.encode(obj)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        # Unencodable even with the fallback (e.g. nesting too deep): keep what we can.
        raw = json.dumps({"uuid": str(uuid), "function_name": name}, default=str).encode()
        return Mapped(str(uuid), key, raw, DecodeFailure("invalid_value", f"record cannot be encoded as JSON: {exc}"))
    decoded = decode_input("executions", raw, max_bytes=max_bytes, max_vector_dim=max_vector_dim)
    if isinstance(decoded, DecodeFailure):
        return Mapped(str(uuid), key, raw, decoded)
    assert isinstance(decoded, events.ExecutionLog)
    return Mapped(str(uuid), key, raw, None, decoded.timestamp_utc)
