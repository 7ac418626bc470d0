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

    max_batch_records: int = field(
        default=5000,
        metadata={
            "help": "records fetched per getmany() call (the fetch size bounds it too); fewer, larger batches cost less "
            "per record in the loop and the engines"
        },
    )
    poll_timeout_ms: int = field(default=200, metadata={"help": "how long one fetch waits for records"})
    fetch_max_wait_ms: int = field(
        default=50,
        metadata={
            "help": "longest a fetch request waits at the broker for data; the embedded broker holds a fetch "
            "this long even when records arrive meanwhile, so it bounds the added latency (real Kafka answers at once)"
        },
    )
    idle_fetch_max_wait_ms: int = field(
        default=500,
        metadata={
            "help": "the fetch wait once no record has come for a second: an idle instance asks the broker about twice "
            "a second instead of twenty times (each empty fetch costs ~1 ms of CPU); back to fetch_max_wait_ms with the "
            "first record, which may wait up to ~1/5 of this at the embedded broker (real Kafka answers at once); "
            "0 or <= fetch_max_wait_ms: never changes"
        },
    )
    fetch_min_bytes: int = field(
        default=1,
        metadata={"help": "a fetch answers once this many bytes are ready (or fetch_max_wait_ms passed); more = fewer, bigger fetches"},
    )
    commit_interval_s: float = field(default=1.0, metadata={"help": "seconds between offset commits"})
    tick_interval_s: float = field(
        default=0.1,
        metadata={
            "help": "fewest seconds from the end of one round of the processors' time-driven work (tick(): idle "
            "evaluation, debounced synthesis, training triggers) to the start of the next, which runs after a fetch once "
            "this has passed (0 = after every fetch)"
        },
    )
    checkpoint_interval_s: float = field(
        default=10.0, metadata={"help": "seconds between state checkpoints (also taken on revoke and shutdown)"}
    )
    state_snapshots: bool = field(
        default=True,
        metadata={"help": "keep each partition's state in the state topic too, so any instance can take it over without its disk"},
    )
    state_snapshot_interval_s: float = field(
        default=60.0, metadata={"help": "fewest seconds between two snapshots of one partition's state to the state topic"}
    )
    state_snapshot_ratio: float = field(
        default=1.0,
        metadata={
            "help": "a partition's state goes to the state topic again once the input read since its last snapshot is this "
            "many times the snapshot's size (bounds the bytes written per input byte; 0 = at every checkpoint past the interval)"
        },
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
        _check(self.fetch_max_wait_ms >= 1, "runtime.fetch_max_wait_ms", "must be >= 1")
        _check(self.idle_fetch_max_wait_ms >= 0, "runtime.idle_fetch_max_wait_ms", "must be >= 0")
        _check(self.fetch_min_bytes >= 1, "runtime.fetch_min_bytes", "must be >= 1")
        _check(self.commit_interval_s >= 0, "runtime.commit_interval_s", "must be >= 0")
        _check(self.tick_interval_s >= 0, "runtime.tick_interval_s", "must be >= 0")
        _check(self.checkpoint_interval_s > 0, "runtime.checkpoint_interval_s", "must be > 0")
        _check(self.state_snapshot_interval_s >= 0, "runtime.state_snapshot_interval_s", "must be >= 0")
        _check(self.state_snapshot_ratio >= 0, "runtime.state_snapshot_ratio", "must be >= 0")
        _check(self.max_message_bytes >= 1024, "runtime.max_message_bytes", "must be >= 1024")
        _check(self.dlq_value_max_bytes >= 0, "runtime.dlq_value_max_bytes", "must be >= 0")
        _check(self.max_vector_dim >= 1, "runtime.max_vector_dim", "must be >= 1")
        _check(1_000 <= self.session_timeout_ms <= 300_000, "runtime.session_timeout_ms", "must be 1000..300000")
        _check(self.send_retry_backoff_s > 0, "runtime.send_retry_backoff_s", "must be > 0")


EMBEDDERS = ("hashing", "minilm", "sentence-transformers")
SEMANTIC_DIFFS = ("auto", "minilm", "jaccard")


@dataclass(frozen=True, slots=True)
class DensitySettings:
    """Engine 1: the incremental density index and golden selection (``processors/density``).

    Settings that shape the index itself (epsilon, vector source, embedder, masking) are
    recorded in every checkpoint; changing one makes the processor rebuild its state
    from the beginning of ``executions`` instead of mixing old and new densities.
    """

    epsilon: float = field(default=0.3, metadata={"help": "cosine distance within which two logs are neighbours (0..1)"})
    exact_threshold: int = field(
        default=16384,
        metadata={
            "help": "a function's index is exact (one BLAS matrix product per batch) up to this many logs, HNSW above; "
            "exact is faster up to a few 10k logs at 384-d and uses less memory"
        },
    )
    hnsw_m: int = field(default=32, metadata={"help": "HNSW links per node (level 0 has twice as many)"})
    hnsw_ef_construction: int = field(default=200, metadata={"help": "HNSW build-time beam width"})
    hnsw_ef: int = field(default=64, metadata={"help": "HNSW query beam width beyond k (ef = k + this)"})
    initial_k: int = field(default=32, metadata={"help": "first k of the k-NN range emulation; grown until the k-th neighbour is beyond epsilon"})
    max_k: int = field(
        default=4096, metadata={"help": "cap of that k; a log with more neighbours gets a truncated density (vt_density_range_cap_hits_total)"}
    )
    query_threads: int = field(default=1, metadata={"help": "threads of one HNSW query call (inserts always use one: deterministic graphs)"})
    blas_threads: int = field(
        default=1,
        metadata={
            "help": "threads of the BLAS matrix products (exact mode) in this process; 0 = the BLAS default "
            "(all cores: on a small machine they spin against the broker and the consumer for little gain)"
        },
    )
    ttl_s: float = field(
        default=7 * 24 * 3600.0, metadata={"help": "logs older than this (event time, behind the function's newest log) leave the index; 0 = never"}
    )
    max_per_function: int = field(default=100_000, metadata={"help": "most logs kept per function; the oldest (event time) leave first"})
    select_interval_s: float = field(
        default=5.0, metadata={"help": "selection is re-evaluated each time a partition's event time enters a new window of this length"}
    )
    idle_evaluate_s: float = field(
        default=3.0,
        metadata={"help": "a partition with indexed but unevaluated logs is evaluated after this long without input (wall clock); 0 = never"},
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
        default="hashing",
        metadata={"help": "vectors for logs without one: hashing (scikit-learn), minilm (all-MiniLM-L6-v2 from the "
                  "'models' extra, 384-d) or sentence-transformers (a model directory of yours)"},
    )
    embed_dim: int = field(default=384, metadata={"help": "dimension of the hashing embedder's vectors"})
    embed_model_path: Path | None = field(
        default=None, metadata={"help": "local sentence-transformers model directory (never downloaded)"}
    )
    metric_functions: int = field(default=200, metadata={"help": "distinct function names in metric labels (every engine); more become _other"})

    def validate(self) -> None:
        _check(0 < self.epsilon < 1, "density.epsilon", "must be between 0 and 1 (exclusive)")
        _check(self.exact_threshold >= 1, "density.exact_threshold", "must be >= 1")
        _check(4 <= self.hnsw_m <= 256, "density.hnsw_m", "must be 4..256")
        _check(self.hnsw_ef_construction >= self.hnsw_m, "density.hnsw_ef_construction", "must be >= hnsw_m")
        _check(self.hnsw_ef >= 1, "density.hnsw_ef", "must be >= 1")
        _check(1 <= self.initial_k <= self.max_k, "density.initial_k", "must be 1..max_k")
        _check(self.query_threads >= 1, "density.query_threads", "must be >= 1")
        _check(self.blas_threads >= 0, "density.blas_threads", "must be >= 0")
        _check(self.ttl_s >= 0, "density.ttl_s", "must be >= 0 (0 = no TTL)")
        _check(self.max_per_function >= 1, "density.max_per_function", "must be >= 1")
        _check(self.select_interval_s > 0, "density.select_interval_s", "must be > 0")
        _check(self.idle_evaluate_s >= 0, "density.idle_evaluate_s", "must be >= 0")
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


# USD per 1M *training* tokens, as published by OpenAI for supervised fine-tuning when this
# was written.  Prices change: override with VT_TRAINING_PRICES="model=usd,model=usd".
DEFAULT_TRAINING_PRICES: dict[str, float] = {
    "gpt-4o-mini-2024-07-18": 3.0,
    "gpt-4o-2024-08-06": 25.0,
    "gpt-4.1-2025-04-14": 25.0,
    "gpt-4.1-mini-2025-04-14": 5.0,
    "gpt-4.1-nano-2025-04-14": 1.5,
    "gpt-3.5-turbo-0125": 8.0,
}
TRAINERS = ("none", "openai", "local")


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    """Engine 3: when to fine-tune, what it may cost, and which trainer runs the job.

    The API key is deliberately not a setting (settings are printed by ``vector-trainer
    config``): it is read from ``VT_TRAINING_API_KEY`` or ``OPENAI_API_KEY`` when the
    OpenAI trainer is built.
    """

    trainer: str = field(
        default="none", metadata={"help": "none (export the dataset only), openai or local (transformers + peft LoRA)"}
    )
    threshold: int = field(default=50, metadata={"help": "golden samples new since the last job that trigger a job"})
    cooldown_s: float = field(default=3600.0, metadata={"help": "minimum seconds between two jobs of one function"})
    min_train_examples: int = field(default=10, metadata={"help": "fewest training examples a job may have (OpenAI: 10)"})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "share of samples held out for validation (split by hash of uuid)"}
    )
    epochs: int = field(default=3, metadata={"help": "training epochs (n_epochs)"})
    base_model: str = field(default="gpt-4o-mini-2024-07-18", metadata={"help": "model to fine-tune"})
    prices: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_TRAINING_PRICES),
        metadata={"help": "USD per 1M training tokens by model (model=usd,...); a model not listed is refused"},
    )
    tokenizer_encoding: str = field(
        default="auto", metadata={"help": "offline token counting: auto (from the model), o200k_base or cl100k_base"}
    )
    max_job_usd: float = field(default=20.0, metadata={"help": "refuse a job whose estimated cost is above this"})
    max_day_usd: float = field(default=50.0, metadata={"help": "refuse jobs once today's (UTC) estimated spend would pass this"})
    openai_base_url: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible endpoint; unset = the SDK's default (api.openai.com)"}
    )
    openai_timeout_s: float = field(default=60.0, metadata={"help": "timeout of one OpenAI API request"})
    suffix: str = field(default="vt", metadata={"help": "suffix of fine-tuned model names (OpenAI)"})
    poll_initial_s: float = field(default=5.0, metadata={"help": "first wait between two polls of a running job"})
    poll_max_s: float = field(default=120.0, metadata={"help": "longest wait between two polls (back-off cap)"})
    local_model_path: Path | None = field(
        default=None, metadata={"help": "local causal LM directory for trainer=local (no download happens)"}
    )
    local_lora_r: int = field(default=8, metadata={"help": "LoRA rank for trainer=local"})
    local_learning_rate: float = field(default=2e-4, metadata={"help": "learning rate for trainer=local"})
    local_max_length: int = field(default=512, metadata={"help": "tokens per example kept by trainer=local"})

    def validate(self) -> None:
        _check(self.trainer in TRAINERS, "training.trainer", f"{self.trainer!r} is not one of {', '.join(TRAINERS)}")
        _check(self.threshold >= 1, "training.threshold", "must be >= 1")
        _check(self.cooldown_s >= 0, "training.cooldown_s", "must be >= 0")
        _check(self.min_train_examples >= 10, "training.min_train_examples", "must be >= 10 (OpenAI's minimum)")
        _check(0 <= self.validation_fraction < 0.5, "training.validation_fraction", "must be in [0, 0.5)")
        _check(1 <= self.epochs <= 50, "training.epochs", "must be 1..50")
        _check(bool(self.base_model.strip()), "training.base_model", "must not be empty")
        _check(all(v >= 0 for v in self.prices.values()), "training.prices", "prices must be >= 0")
        _check(self.max_job_usd >= 0 and self.max_day_usd >= 0, "training.max_job_usd/max_day_usd", "must be >= 0")
        _check(self.openai_timeout_s > 0, "training.openai_timeout_s", "must be > 0")
        _check(0 < self.poll_initial_s <= self.poll_max_s, "training.poll_initial_s", "must be > 0 and <= poll_max_s")
        _check(self.local_lora_r >= 1, "training.local_lora_r", "must be >= 1")
        _check(self.local_max_length >= 8, "training.local_max_length", "must be >= 8")
        _check(
            self.trainer != "local" or self.local_model_path is not None,
            "training.local_model_path",
            "is required when training.trainer=local",
        )


@dataclass(frozen=True, slots=True)
class VectorWaveSettings:
    """The VectorWave bridge: the store it reads, the import cursor, the mirror, the golden write-back."""

    mode: str = field(default="", metadata={"help": "VectorWave store: lite or pro; empty = VectorWave's own VECTORWAVE_MODE"})
    lite_path: Path | None = field(
        default=None, metadata={"help": "LanceDB directory of VectorWave Lite; unset = VectorWave's VECTORWAVE_LITE_PATH"}
    )
    import_page_size: int = field(default=500, metadata={"help": "executions read from VectorWave per page by 'import vectorwave'"})
    import_overlap_s: float = field(
        default=120.0, metadata={"help": "re-read this many seconds before the cursor (late writes); duplicates are skipped"}
    )
    import_cursor: Path | None = field(
        default=None, metadata={"help": "cursor file of 'import vectorwave'; unset = STATE_DIR/vectorwave/import-cursor.json"}
    )
    mirror_queue_size: int = field(default=10_000, metadata={"help": "executions the mirror buffers before dropping (counted)"})
    mirror_batch_size: int = field(default=500, metadata={"help": "executions the mirror sends per batch"})
    golden_writeback: bool = field(
        default=False, metadata={"help": "register golden samples in VectorWave's golden dataset (run's processor)"}
    )
    golden_strategies: tuple[str, ...] = field(
        default=("steady", "anomaly"), metadata={"help": "which golden strategies to write back"}
    )
    golden_remove_on_tombstone: bool = field(
        default=True, metadata={"help": "remove a sample we registered from VectorWave when it leaves the golden set"}
    )
    golden_retry_s: float = field(
        default=5.0, metadata={"help": "first retry delay when VectorWave does not have the sample's execution yet"}
    )
    golden_give_up_s: float = field(
        default=600.0, metadata={"help": "after this long without its execution in VectorWave, a sample is dead-lettered"}
    )

    def validate(self) -> None:
        _check(self.mode in {"", "lite", "pro"}, "vectorwave.mode", f"{self.mode!r} is not lite, pro or empty")
        _check(self.import_page_size >= 1, "vectorwave.import_page_size", "must be >= 1")
        _check(self.import_overlap_s >= 0, "vectorwave.import_overlap_s", "must be >= 0")
        _check(self.mirror_queue_size >= 1, "vectorwave.mirror_queue_size", "must be >= 1")
        _check(self.mirror_batch_size >= 1, "vectorwave.mirror_batch_size", "must be >= 1")
        _check(
            bool(self.golden_strategies) and set(self.golden_strategies) <= {"steady", "anomaly"},
            "vectorwave.golden_strategies",
            "must name steady and/or anomaly",
        )
        _check(self.golden_retry_s > 0, "vectorwave.golden_retry_s", "must be > 0")
        _check(self.golden_give_up_s >= self.golden_retry_s, "vectorwave.golden_give_up_s", "must be >= golden_retry_s")


@dataclass(frozen=True, slots=True)
class FeedbackSettings:
    """Engine 2: feedback pairs → rules → validated prompt hooks.

    The hook signing key is not a setting (``vector-trainer config`` prints settings):
    it is read from ``VT_HOOK_SIGNING_KEY`` only.
    """

    min_support: int = field(default=3, metadata={"help": "pairs a rule must fix before it can be released"})
    min_confidence: float = field(
        default=0.9, metadata={"help": "share of the pairs a rule changes that it must improve (0..1)"}
    )
    heldout_fraction: float = field(
        default=0.2, metadata={"help": "share of pairs held out of synthesis and used only to validate (0..0.9)"}
    )
    debounce_s: float = field(default=1.0, metadata={"help": "quiet seconds after a function's last new pair before re-synthesis"})
    max_delay_s: float = field(default=10.0, metadata={"help": "longest wait for re-synthesis under steady feedback"})
    synthesis_budget_s: float = field(
        default=0.05,
        metadata={"help": "seconds of re-synthesis one tick may spend (on the worker, between batches): once spent, the "
                  "other due functions wait for the next tick, oldest first; 0 = no limit"},
    )
    max_pairs_per_function: int = field(default=2000, metadata={"help": "newest pairs kept per function"})
    max_rules: int = field(default=40, metadata={"help": "most rules in one hook"})
    revalidate_growth: float = field(
        default=2.0,
        metadata={"help": "re-release unchanged rules with a fresh validation once a function's pairs grew by this factor; 0 = never"},
    )
    max_output_chars: int = field(default=20_000, metadata={"help": "longer outputs are dead-lettered (oversize)"})
    llm_enabled: bool = field(default=False, metadata={"help": "also ask an LLM (openai SDK) to propose rules"})
    llm_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint; unset = api.openai.com"})
    llm_model: str = field(default="gpt-4o-mini", metadata={"help": "model of the LLM rule proposer"})
    llm_timeout_s: float = field(default=30.0, metadata={"help": "timeout of one proposer call"})
    semantic_diff: str = field(
        default="auto",
        metadata={"help": "how a correction's semantic difference is measured: auto (the density engine's sentence model "
                  "when it has one, else token Jaccard), minilm (load all-MiniLM-L6-v2: the models extra) or jaccard"},
    )
    rewrite_difference: float = field(
        default=0.5,
        metadata={"help": "a pair whose embedding difference (1 - cosine) is above this changed the answer's meaning: "
                  "it neither proposes nor votes on rules (held out, it still validates them); not applied with token Jaccard (0..2)"},
    )

    def validate(self) -> None:
        _check(self.min_support >= 1, "feedback.min_support", "must be >= 1")
        _check(self.semantic_diff in SEMANTIC_DIFFS, "feedback.semantic_diff", f"{self.semantic_diff!r} is not one of {', '.join(SEMANTIC_DIFFS)}")
        _check(0.0 <= self.rewrite_difference <= 2.0, "feedback.rewrite_difference", "must be 0..2")
        _check(0.5 <= self.min_confidence <= 1.0, "feedback.min_confidence", "must be 0.5..1")
        _check(0.0 <= self.heldout_fraction <= 0.9, "feedback.heldout_fraction", "must be 0..0.9")
        _check(self.debounce_s >= 0, "feedback.debounce_s", "must be >= 0")
        _check(self.max_delay_s >= self.debounce_s, "feedback.max_delay_s", "must be >= feedback.debounce_s")
        _check(self.synthesis_budget_s >= 0, "feedback.synthesis_budget_s", "must be >= 0")
        _check(self.max_pairs_per_function >= 10, "feedback.max_pairs_per_function", "must be >= 10")
        _check(1 <= self.max_rules <= 200, "feedback.max_rules", "must be 1..200")
        _check(self.revalidate_growth == 0 or self.revalidate_growth > 1, "feedback.revalidate_growth", "must be 0 or > 1")
        _check(self.max_output_chars >= 100, "feedback.max_output_chars", "must be >= 100")
        _check(self.llm_timeout_s > 0, "feedback.llm_timeout_s", "must be > 0")


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
    training: TrainingSettings = field(default_factory=TrainingSettings)
    vectorwave: VectorWaveSettings = field(default_factory=VectorWaveSettings)
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)

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
