"""Typed events on vector-trainer's topics (MISSION.md, "Topics and events").

All values are JSON.  Decoding is strict: a wrong type, a missing required field,
an unknown status or a non-finite number fails with a message naming the field
(msgspec's ``... - at `$.status```).  Unknown extra fields are ignored so producers
may add their own.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import math
import sys
from array import array
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from stream.contract.hooks.rules import Rule

FunctionName = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^\s/][^/]*$")]
Uuid = Annotated[str, Meta(min_length=1, max_length=128)]
NonNegInt = Annotated[int, Meta(ge=0)]

Status = Literal["SUCCESS", "ERROR", "FAILURE", "ANOMALY", "CACHE_HIT"]
Strategy = Literal["steady", "anomaly"]
Decision = Literal["reject", "pin"]
Role = Literal["system", "user", "assistant"]
TrainingStatus = Literal[
    "queued", "validating", "running", "succeeded", "failed", "cancelled", "rejected_budget", "exported"
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime) -> datetime:
    """Timestamps without an offset are taken as UTC (the field is called *_utc)."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class Event(Struct, kw_only=True, omit_defaults=True):
    """Base of every event: keyword-only construction, absent optionals left out of JSON."""


class ExecutionLog(Event):
    """One call of a logged function of the LLM service (input topic ``executions``)."""

    uuid: Uuid
    function_name: FunctionName
    timestamp_utc: datetime
    status: Status
    inputs: dict[str, Any]
    return_value: Any
    duration_ms: Annotated[float, Meta(ge=0)] | None = None
    trace_id: str | None = None
    span_id: str | None = None
    error_message: str | None = None
    vector: list[float] | None = None
    vector_b64: Annotated[
        str | None,
        Meta(description="The vector as base64 of little-endian float32 values: a compact alternative to "
                         "`vector` (about 2.7x fewer bytes than JSON floats for a 384-d vector). Give one "
                         "of the two. It decodes to exactly the floats `vector` would carry for the same "
                         "float32 values."),
    ] = None

    def __post_init__(self) -> None:
        self.timestamp_utc = _aware(self.timestamp_utc)
        if self.duration_ms is not None and not math.isfinite(self.duration_ms):
            raise ValueError("duration_ms must be finite - at `$.duration_ms`")
        if self.vector_b64 is not None:
            if self.vector is not None:
                raise ValueError("give either vector or vector_b64, not both - at `$.vector_b64`")
            self.vector = _float32_le(self.vector_b64)
            self.vector_b64 = None  # one representation in memory: the engines read `vector`
        if self.vector is not None:
            if not self.vector:
                raise ValueError("vector must not be empty - at `$.vector`")
            if not all(map(math.isfinite, self.vector)):  # the common case in C; the loop only to name the culprit
                i, x = next((i, x) for i, x in enumerate(self.vector) if not math.isfinite(x))
                raise ValueError(f"vector holds a non-finite number ({x}) - at `$.vector[{i}]`")


def _float32_le(text: str) -> list[float]:
    """The floats of a base64 text of little-endian float32 values (strict base64, whole values only)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("vector_b64 is not valid base64 - at `$.vector_b64`") from None
    if len(raw) % 4:
        raise ValueError(f"vector_b64 holds {len(raw)} bytes, not whole float32 values - at `$.vector_b64`")
    values = array("f")
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def vector_b64(vector: list[float]) -> str:
    """What a producer puts in ``vector_b64`` for ``vector`` (values rounded to float32)."""
    values = array("f", vector)
    if sys.byteorder != "little":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


class Feedback(Event):
    """A user's correction of one output (input topic ``feedback``)."""

    uuid: Uuid
    function_name: FunctionName
    bad_output: str
    fixed_output: str
    timestamp_utc: datetime
    inputs: dict[str, Any] = {}
    log_uuid: str | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        self.timestamp_utc = _aware(self.timestamp_utc)


class ChatMessage(Event):
    role: Role
    content: str


class GoldenSample(Event):
    """A sample in the golden set (compacted topic ``golden``, key ``function_name/uuid``)."""

    uuid: Uuid
    function_name: FunctionName
    strategy: Strategy
    density: float
    messages: list[ChatMessage]
    source_timestamp: datetime
    selected_at: datetime
    pinned: Annotated[
        bool, Meta(description="an operator pinned the sample (topic `curation`): it stays whatever its density")
    ] = False

    def __post_init__(self) -> None:
        self.source_timestamp = _aware(self.source_timestamp)
        self.selected_at = _aware(self.selected_at)


class Curation(Event):
    """An operator's decision about one golden key (compacted topic ``curation``, key ``function_name/uuid``).

    ``reject``: the log never enters (or leaves) the golden set, so no training dataset
    holds it; ``pin``: it is in the golden set whatever its density (while it is indexed,
    i.e. until TTL or the per-function cap evicts it).  A tombstone clears the decision.
    """

    function_name: FunctionName
    uuid: Uuid
    decision: Decision
    at: datetime
    reason: Annotated[str, Meta(max_length=2000)] | None = None
    by: Annotated[str, Meta(max_length=256)] | None = None

    def __post_init__(self) -> None:
        self.at = _aware(self.at)


class HookValidation(Event):
    """Replay of the feedback pairs through a candidate hook, before it is released."""

    pairs: NonNegInt
    heldout_pairs: NonNegInt = 0
    exact_match_before: float = 0.0
    exact_match_after: float = 0.0
    similarity_before: float = 0.0
    similarity_after: float = 0.0
    heldout_similarity_before: float = 0.0
    heldout_similarity_after: float = 0.0
    worse_pairs: NonNegInt = 0
    heldout_exact_match_before: float = 0.0
    heldout_exact_match_after: float = 0.0


class HookRelease(Event):
    """A released prompt hook (compacted topic ``hooks``, key ``function_name``).

    ``rules`` are data (see :mod:`stream.hookrules`); ``module_source`` is the generated
    ``generated_prompt_hook.py`` holding the same rules, ``sha256`` its digest and
    ``signature`` an HMAC when a signing key is configured.  ``vetoed`` lists rules an
    operator rolled back (carried by every later release so they never return);
    ``rollback_of`` names the version a rollback restored.
    """

    function_name: FunctionName
    version: Annotated[int, Meta(ge=1)]
    rules: list[Rule]
    module_source: str
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
    validation: HookValidation
    created_at: datetime
    parent_version: Annotated[int, Meta(ge=1)] | None = None
    signature: str | None = None
    vetoed: list[Rule] = []
    rollback_of: Annotated[int, Meta(ge=1)] | None = None

    def __post_init__(self) -> None:
        self.created_at = _aware(self.created_at)


class TrainingMetrics(Event):
    step: NonNegInt | None = None
    train_loss: float | None = None
    valid_loss: float | None = None


class TrainingEvent(Event):
    """A status change of a fine-tuning job (topic ``training``, key ``function_name``)."""

    job_id: str
    function_name: FunctionName
    trainer: str
    base_model: str
    status: TrainingStatus
    at: datetime
    n_train: NonNegInt = 0
    n_val: NonNegInt = 0
    est_tokens: NonNegInt = 0
    est_cost_usd: float = 0.0
    metrics: TrainingMetrics | None = None
    fine_tuned_model: str | None = None
    dataset_path: str | None = None
    error: str | None = None
    # The provider's id of the job (e.g. OpenAI's ``ftjob-...``), so a restarted or new owner
    # resumes polling it instead of starting a second job.
    provider_job_id: str | None = None
    # The newest ``selected_at`` among the samples in the job's dataset: golden samples
    # selected later are "new since the last job".
    trained_through: datetime | None = None

    def __post_init__(self) -> None:
        self.at = _aware(self.at)
        if self.trained_through is not None:
            self.trained_through = _aware(self.trained_through)


class ModelUpdated(Event):
    """A fine-tuned model is ready (topic ``models``, key ``function_name``)."""

    function_name: FunctionName
    model: str
    job_id: str
    trained_on: NonNegInt
    at: datetime

    def __post_init__(self) -> None:
        self.at = _aware(self.at)


class DeadLetter(Event):
    """An input that could not be processed, with why (topic ``dlq``, key = original key)."""

    source_topic: str
    partition: int
    offset: int
    value_b64: str
    error_type: str
    error: str
    at: datetime
    value_bytes: NonNegInt = 0
    value_truncated: bool = False
    processor: str | None = None


# Logical topic -> the type of its values.  Tombstones (null values) exist only on
# the compacted topics.
TOPIC_TYPES: dict[str, type[Event]] = {
    "executions": ExecutionLog,
    "feedback": Feedback,
    "golden": GoldenSample,
    "hooks": HookRelease,
    "training": TrainingEvent,
    "models": ModelUpdated,
    "dlq": DeadLetter,
    "curation": Curation,
}

_encoder = msgspec.json.Encoder()
_decoders = {topic: msgspec.json.Decoder(tp) for topic, tp in TOPIC_TYPES.items()}


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(topic: str, raw: bytes) -> Event:
    """Decode a value of a logical topic, raising ``msgspec.DecodeError``/``ValidationError``."""
    return _decoders[topic].decode(raw)


def _normalised(node: Any) -> Any:
    """The schema with what msgspec versions render differently made canonical.

    msgspec 0.23 started cleaning struct docstrings (``inspect.cleandoc``) where
    earlier versions kept them raw, and orders ``anyOf`` members differently; cleaning
    every ``description`` ourselves and sorting ``anyOf`` (its order means nothing)
    gives the same schema from both, so the committed copies change only when an event does.
    """
    if isinstance(node, dict):
        out = {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _normalised(v)
            for k, v in node.items()
        }
        if isinstance(out.get("anyOf"), list):
            out["anyOf"] = sorted(out["anyOf"], key=lambda m: (m == {"type": "null"}, json.dumps(m, sort_keys=True)))
        return out
    if isinstance(node, list):
        return [_normalised(v) for v in node]
    return node


def json_schemas() -> dict[str, Any]:
    """JSON Schema (2020-12) of every event, keyed by logical topic, for producers in any language."""
    types_ = list(TOPIC_TYPES.values())
    (schemas, components) = msgspec.json.schema_components(types_, ref_template="#/$defs/{name}")
    components = _normalised(components)
    out: dict[str, Any] = {}
    for topic, schema in zip(TOPIC_TYPES, schemas, strict=True):
        name = schema["$ref"].rsplit("/", 1)[1]
        out[topic] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://vector-trainer.dev/schema/{topic}.json",
            "title": name,
            **components[name],
            "$defs": {k: v for k, v in components.items() if k != name},
        }
    return out
