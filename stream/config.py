"""The one typed configuration of vector-trainer.

Every knob lives here, as a field of :class:`Settings` or of one of its sections.
Values come from (lowest to highest precedence) the defaults below, ``VT_*``
environment variables, and CLI flags.  The environment name of a field is derived
from its place: ``Settings.state_dir`` is ``VT_STATE_DIR``; a field of a section,
``Settings.runtime.max_message_bytes``, is ``VT_RUNTIME_MAX_MESSAGE_BYTES``.  A few
fields also have a short, documented alias (``VT_BOOTSTRAP``).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "VT_"


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


def _check(cond: bool, name: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{name}: {message}")


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Consumer-loop limits: batch sizes, intervals and what counts as oversized."""

    max_batch_records: int = field(default=500, metadata={"help": "records fetched per getmany() call"})
    poll_timeout_ms: int = field(default=200, metadata={"help": "how long one fetch waits for records"})
    commit_interval_s: float = field(default=1.0, metadata={"help": "seconds between offset commits"})
    checkpoint_interval_s: float = field(
        default=10.0, metadata={"help": "seconds between state checkpoints (also taken on revoke and shutdown)"}
    )
    max_message_bytes: int = field(
        default=1_048_576, metadata={"help": "input values larger than this are dead-lettered as oversize"}
    )
    dlq_value_max_bytes: int = field(
        default=65_536, metadata={"help": "raw bytes of a bad value kept in its dead letter (the rest is cut)"}
    )
    max_vector_dim: int = field(default=8192, metadata={"help": "longest vector accepted in an event"})
    session_timeout_ms: int = field(
        default=10_000,
        metadata={"help": "consumer-group session timeout: how soon a dead instance's partitions move"},
    )
    send_retry_backoff_s: float = field(
        default=1.0, metadata={"help": "first back-off when the broker does not acknowledge outputs"}
    )

    def validate(self) -> None:
        _check(self.max_batch_records >= 1, "runtime.max_batch_records", "must be >= 1")
        _check(self.poll_timeout_ms >= 1, "runtime.poll_timeout_ms", "must be >= 1")
        _check(self.commit_interval_s >= 0, "runtime.commit_interval_s", "must be >= 0")
        _check(self.checkpoint_interval_s > 0, "runtime.checkpoint_interval_s", "must be > 0")
        _check(self.max_message_bytes >= 1024, "runtime.max_message_bytes", "must be >= 1024")
        _check(self.dlq_value_max_bytes >= 0, "runtime.dlq_value_max_bytes", "must be >= 0")
        _check(self.max_vector_dim >= 1, "runtime.max_vector_dim", "must be >= 1")
        _check(1_000 <= self.session_timeout_ms <= 300_000, "runtime.session_timeout_ms", "must be 1000..300000")
        _check(self.send_retry_backoff_s > 0, "runtime.send_retry_backoff_s", "must be > 0")


EMBEDDERS = ("hashing", "sentence-transformers")


@dataclass(frozen=True, slots=True)
class DensitySettings:
    """Engine 1: the incremental density index and golden selection (``processors/density``).

    Settings that shape the index itself (epsilon, vector source, embedder, masking) are
    recorded in every checkpoint; changing one makes the processor rebuild its state
    from the beginning of ``executions`` instead of mixing old and new densities.
    """

    epsilon: float = field(default=0.3, metadata={"help": "cosine distance within which two logs are neighbours (0..1)"})
    exact_threshold: int = field(
        default=512, metadata={"help": "a function's index uses exact brute force below this many logs, HNSW above"}
    )
    hnsw_m: int = field(default=32, metadata={"help": "HNSW links per node (level 0 has twice as many)"})
    hnsw_ef_construction: int = field(default=200, metadata={"help": "HNSW build-time beam width"})
    hnsw_ef: int = field(default=64, metadata={"help": "HNSW query beam width beyond k (ef = k + this)"})
    initial_k: int = field(default=32, metadata={"help": "first k of the k-NN range emulation; grown until the k-th neighbour is beyond epsilon"})
    max_k: int = field(
        default=4096, metadata={"help": "cap of that k; a log with more neighbours gets a truncated density (vt_density_range_cap_hits_total)"}
    )
    query_threads: int = field(default=1, metadata={"help": "threads of one HNSW query call (inserts always use one: deterministic graphs)"})
    ttl_s: float = field(
        default=7 * 24 * 3600.0, metadata={"help": "logs older than this (event time, behind the function's newest log) leave the index; 0 = never"}
    )
    max_per_function: int = field(default=100_000, metadata={"help": "most logs kept per function; the oldest (event time) leave first"})
    select_interval_s: float = field(
        default=5.0, metadata={"help": "selection is re-evaluated each time a partition's event time enters a new window of this length"}
    )
    steady_k: int = field(default=50, metadata={"help": "most steady (dense-centre) samples per function"})
    steady_min_density: float = field(default=1.0, metadata={"help": "a steady sample needs at least this density"})
    dedup_similarity: float | None = field(
        default=None, metadata={"help": "two selected samples never have a cosine similarity above this; unset = 1 - epsilon"}
    )
    anomaly_k: int = field(default=50, metadata={"help": "most anomaly (rare but successful) samples per function; 0 = none"})
    anomaly_percentile: float = field(default=5.0, metadata={"help": "anomalies come from the lowest this-percent densities"})
    anomaly_min_logs: int = field(default=100, metadata={"help": "logs a function needs before anomalies are selected"})
    system_prompt: str = field(
        default="You are the {function} function of an LLM service.",
        metadata={"help": "system message of every golden sample; {function} is replaced by the function name"},
    )
    mask_keys: tuple[str, ...] = field(
        default=(), metadata={"help": "input keys (any depth, case-insensitive) whose values are masked before indexing and output"}
    )
    embedder: str = field(
        default="hashing", metadata={"help": "vectors for logs without one: hashing (scikit-learn) or sentence-transformers"}
    )
    embed_dim: int = field(default=384, metadata={"help": "dimension of the hashing embedder's vectors"})
    embed_model_path: Path | None = field(
        default=None, metadata={"help": "local sentence-transformers model directory (never downloaded)"}
    )
    metric_functions: int = field(default=200, metadata={"help": "distinct function names in metric labels; more become _other"})

    def validate(self) -> None:
        _check(0 < self.epsilon < 1, "density.epsilon", "must be between 0 and 1 (exclusive)")
        _check(self.exact_threshold >= 1, "density.exact_threshold", "must be >= 1")
        _check(4 <= self.hnsw_m <= 256, "density.hnsw_m", "must be 4..256")
        _check(self.hnsw_ef_construction >= self.hnsw_m, "density.hnsw_ef_construction", "must be >= hnsw_m")
        _check(self.hnsw_ef >= 1, "density.hnsw_ef", "must be >= 1")
        _check(1 <= self.initial_k <= self.max_k, "density.initial_k", "must be 1..max_k")
        _check(self.query_threads >= 1, "density.query_threads", "must be >= 1")
        _check(self.ttl_s >= 0, "density.ttl_s", "must be >= 0 (0 = no TTL)")
        _check(self.max_per_function >= 1, "density.max_per_function", "must be >= 1")
        _check(self.select_interval_s > 0, "density.select_interval_s", "must be > 0")
        _check(self.steady_k >= 0 and self.anomaly_k >= 0, "density.steady_k/anomaly_k", "must be >= 0")
        _check(self.steady_min_density >= 0, "density.steady_min_density", "must be >= 0")
        _check(
            self.dedup_similarity is None or -1 <= self.dedup_similarity <= 1,
            "density.dedup_similarity",
            "must be between -1 and 1",
        )
        _check(0 < self.anomaly_percentile < 100, "density.anomaly_percentile", "must be between 0 and 100 (exclusive)")
        _check(self.anomaly_min_logs >= 1, "density.anomaly_min_logs", "must be >= 1")
        _check(self.embedder in EMBEDDERS, "density.embedder", f"{self.embedder!r} is not one of {', '.join(EMBEDDERS)}")
        _check(8 <= self.embed_dim <= 8192, "density.embed_dim", "must be 8..8192")
        _check(
            self.embedder != "sentence-transformers" or self.embed_model_path is not None,
            "density.embed_model_path",
            "is required when density.embedder=sentence-transformers (a local directory; nothing is downloaded)",
        )
        _check(self.metric_functions >= 1, "density.metric_functions", "must be >= 1")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a vector-trainer process needs to know."""

    bootstrap: str | None = field(
        default=None,
        metadata={"help": "Kafka bootstrap servers, host:port[,host:port]; unset = start the embedded broker"},
    )
    topic_prefix: str = field(default="vt.", metadata={"help": "prefix of every topic name"})
    group_id: str = field(default="vector-trainer", metadata={"help": "consumer group shared by all instances"})
    client_id: str = field(default="vector-trainer", metadata={"help": "Kafka client id (shows in broker logs)"})
    state_dir: Path = field(default=Path(".vt-state"), metadata={"help": "where checkpoints and artefacts live"})
    metrics_host: str = field(default="127.0.0.1", metadata={"help": "address of the /metrics endpoint"})
    metrics_port: int = field(default=9464, metadata={"help": "port of the /metrics endpoint; 0 = any free port"})
    partitions: int = field(default=3, metadata={"help": "partitions of topics created by vector-trainer"})
    replication_factor: int = field(default=1, metadata={"help": "replication factor of created topics"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    density: DensitySettings = field(default_factory=DensitySettings)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.bootstrap is not None:
            for part in self.bootstrap.split(","):
                host, sep, port = part.strip().rpartition(":")
                _check(
                    bool(sep and host and port.isdigit() and 0 < int(port) < 65536),
                    "bootstrap",
                    f"{part!r} is not host:port (example: localhost:9092)",
                )
        _check(
            all(c.isalnum() or c in "._-" for c in self.topic_prefix),
            "topic_prefix",
            f"{self.topic_prefix!r} may only hold letters, digits, '.', '_' and '-'",
        )
        _check(bool(self.group_id.strip()), "group_id", "must not be empty")
        _check(0 <= self.metrics_port < 65536, "metrics_port", f"{self.metrics_port} is not a port (0-65535)")
        _check(1 <= self.partitions <= 1000, "partitions", "must be between 1 and 1000")
        _check(self.replication_factor >= 1, "replication_factor", "must be >= 1")
        _check(
            self.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
            "log_level",
            f"{self.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR",
        )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value.validate()

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from the environment, then apply ``overrides``.

        ``overrides`` maps dotted field paths (``"runtime.max_batch_records"``) to values;
        ``None`` values are ignored so CLI options left unset fall through to the environment.
        """
        env = os.environ if environ is None else environ
        values = _from_env(cls, env, ENV_PREFIX)
        for path, value in (overrides or {}).items():
            if value is None:
                continue
            _assign(cls, values, path.split("."), value)
        return _build(cls, values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def describe(self) -> list[tuple[str, str, Any, str]]:
        """(dotted path, env var, current value, help) for every field, for ``--help`` and docs."""
        return list(_describe(self, (), ENV_PREFIX))


def _field_type(owner: type, name: str) -> Any:
    hints = typing.get_type_hints(owner)
    return hints[name]


def _coerce(tp: Any, raw: Any, name: str) -> Any:
    """Turn a string (from env/CLI) or a Python value into the field's type, or say why not."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in {"", "none", "null"}):
            return None
        return _coerce(args[0], raw, name)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        items = raw if isinstance(raw, (list, tuple)) else [p for p in str(raw).split(",") if p.strip()]
        return tuple(_coerce(inner, item.strip() if isinstance(item, str) else item, name) for item in items)
    if origin is dict:
        if isinstance(raw, Mapping):
            return dict(raw)
        out: dict[str, float] = {}
        for part in str(raw).split(","):
            if not part.strip():
                continue
            k, sep, v = part.partition("=")
            if not sep:
                raise ConfigError(f"{name}: {part!r} is not key=value")
            out[k.strip()] = _coerce(typing.get_args(tp)[1], v.strip(), name)
        return out
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name}: {raw!r} is not a boolean (use true/false)")
    if tp in (int, float):
        if isinstance(raw, bool):
            raise ConfigError(f"{name}: expected a number, got {raw!r}")
        try:
            value = tp(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {raw!r} is not {'an integer' if tp is int else 'a number'}") from None
        if tp is float and value != value:
            raise ConfigError(f"{name}: NaN is not allowed")
        return value
    if tp is Path:
        return Path(raw).expanduser()
    if tp is str:
        return str(raw)
    raise ConfigError(f"{name}: cannot set a value of type {tp!r} from {raw!r}")


def _env_names(path: tuple[str, ...], f: dataclasses.Field[Any], prefix: str) -> tuple[str, ...]:
    primary = prefix + "_".join(path).upper()
    return tuple(dict.fromkeys((primary, *f.metadata.get("env", ()))))


def _from_env(cls: type, env: Mapping[str, str], prefix: str, path: tuple[str, ...] = ()) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = _field_type(cls, f.name)
        here = (*path, f.name)
        if dataclasses.is_dataclass(tp):
            values[f.name] = _from_env(tp, env, prefix, here)
            continue
        for name in _env_names(here, f, prefix):
            if name in env:
                values[f.name] = _coerce(tp, env[name], name)
                break
    return values


def _assign(cls: type, values: dict[str, Any], path: list[str], value: Any, above: tuple[str, ...] = ()) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    head, *rest = path
    full = ".".join((*above, head))
    if head not in names:
        raise ConfigError(f"unknown setting {'.'.join((*above, *path))!r}; known here: {', '.join(sorted(names))}")
    tp = _field_type(cls, head)
    if rest:
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{full!r} has no sub-settings")
        _assign(tp, values.setdefault(head, {}), rest, value, (*above, head))
    elif dataclasses.is_dataclass(tp):
        raise ConfigError(f"{full!r} is a section; set one of its fields ({full}.FIELD=VALUE)")
    else:
        values[head] = _coerce(tp, value, full)


def _build(cls: type, values: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        tp = _field_type(cls, f.name)
        kwargs[f.name] = _build(tp, values[f.name]) if dataclasses.is_dataclass(tp) else values[f.name]
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _describe(obj: Any, path: tuple[str, ...], prefix: str):  # type: ignore[no-untyped-def]
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        here = (*path, f.name)
        if dataclasses.is_dataclass(value):
            yield from _describe(value, here, prefix)
        else:
            yield ".".join(here), " / ".join(_env_names(here, f, prefix)), value, f.metadata.get("help", "")


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """Parse ``-c section.field=value`` CLI items into an overrides mapping."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-c {item!r}: expected NAME=VALUE, e.g. -c runtime.max_batch_records=1000")
        out[key.strip()] = value.strip()
    return out
