"""Assembles the pipeline: the engines with their Prometheus sensors, the runtime, the broker, signals.

This is the thin facade behind ``vector-trainer run``; everything it does is a call
into the modules that own the work.  It is the one place that knows every floor:
the engines (``processors``), the runtime, and the VectorWave write-back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Iterator

from prometheus_client import CollectorRegistry

from processors.density import DensityProcessor
from processors.density.embedder import make_embedder
from processors.feedback.diff import FeedbackDiffAnalyzer, semantic_analyzer
from processors.feedback.llm import LLMRuleProposer
from processors.feedback.processor import FeedbackProcessor
from processors.training import TrainingProcessor
from stream.contract.config import Settings
from stream.contract.hooks.release import SIGNING_KEY_ENV
from stream.contract.processing import Processor
from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.kafka import ensure_topics
from stream.runtime.loop import Runtime
from stream.runtime.sensors import PrometheusSensors
from stream.vectorwave_bridge.golden import GoldenWriteBack

log = logging.getLogger(__name__)


def build_processors(settings: Settings, registry: CollectorRegistry | None = None) -> list[Processor]:
    """Every processor ``run`` starts, each owning its input topics, reporting to ``registry``.

    Give the runtime the same registry: its ``/metrics`` then serves the engines' figures.
    The number of distinct function labels, shared by every engine, is ``density.metric_functions``.
    """
    registry = registry if registry is not None else CollectorRegistry()
    sensors = PrometheusSensors(registry, settings.density.metric_functions)
    proposer = None
    if settings.feedback.llm_enabled:
        proposer = LLMRuleProposer(
            model=settings.feedback.llm_model, base_url=settings.feedback.llm_base_url, timeout_s=settings.feedback.llm_timeout_s
        )
    density = DensityProcessor(settings.density, sensor=sensors.density)
    training = TrainingProcessor(settings, sensor=sensors.training)
    feedback = FeedbackProcessor(
        settings.feedback,
        store_dir=settings.state_dir / "hooks",
        signing_key=os.environ.get(SIGNING_KEY_ENV) or None,
        proposer=proposer,
        analyzer=feedback_analyzer(settings, density),
        sensor=sensors.feedback,
    )
    processors: list[Processor] = [density, training, feedback]
    if settings.vectorwave.golden_writeback:  # opt-in: needs the vectorwave extra and its store
        processors.append(GoldenWriteBack.from_settings(settings, registry))
    return processors


def feedback_analyzer(settings: Settings, density: DensityProcessor) -> FeedbackDiffAnalyzer:
    """The feedback diff's semantic measure (``feedback.semantic_diff``).

    ``auto`` shares the density engine's sentence model when it has one (no second copy in
    memory) and otherwise counts shared words; ``minilm`` loads all-MiniLM-L6-v2 if the density
    engine does not already run it (an ``EmbedderError`` names the missing extra); ``jaccard``
    never embeds.
    """
    mode = settings.feedback.semantic_diff
    sentence_model = settings.density.embedder in ("minilm", "sentence-transformers")
    if mode == "jaccard" or (mode == "auto" and not sentence_model):
        return FeedbackDiffAnalyzer()
    if mode == "minilm" and settings.density.embedder != "minilm":
        return semantic_analyzer(make_embedder("minilm"))
    return semantic_analyzer(density.embedder)


@contextlib.contextmanager
def broker_for(settings: Settings) -> Iterator[Settings]:
    """Yield settings with a bootstrap address, starting the embedded broker if none is configured."""
    if settings.bootstrap is not None:
        yield settings
        return
    log.warning(
        "no --bootstrap / VT_BOOTSTRAP given: starting the embedded broker (memory-only; its topics vanish when it stops)"
    )
    stale = settings.state_dir / "checkpoints"
    if stale.exists():
        # Checkpoints name offsets of a log that died with the previous embedded broker.
        log.warning("removing checkpoints in %s: they refer to a previous embedded broker's topics", stale)
        shutil.rmtree(stale)
    with EmbeddedBroker(log_file=settings.state_dir / "broker.log") as broker:
        yield settings.replace(bootstrap=broker.bootstrap)


async def serve(settings: Settings, processors: list[Processor] | None = None, registry: CollectorRegistry | None = None) -> None:
    """Create missing topics, then run every processor (by default :func:`build_processors`) until SIGINT/SIGTERM.

    ``registry`` is the one ``/metrics`` serves; processors given here should report to it.
    """
    assert settings.bootstrap is not None
    created = await ensure_topics(settings.bootstrap, TopicNames(settings.topic_prefix), settings.partitions, settings.replication_factor)
    log.info("topics: %s", ", ".join(f"{t} ({s})" for t, s in sorted(created.items())))
    registry = registry if registry is not None else CollectorRegistry()
    runtime = Runtime(settings, processors if processors is not None else build_processors(settings, registry), registry=registry)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopper(runtime, sig))
    log.info(
        "processing %s in group %r; processors: %s",
        ", ".join(sorted({t for p in runtime.processors for t in p.inputs})),
        settings.group_id,
        ", ".join(p.name for p in runtime.processors),
    )
    try:
        await runtime.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _stopper(runtime: Runtime, sig: signal.Signals):  # type: ignore[no-untyped-def]
    def stop() -> None:
        log.info("%s received: finishing the current batch, checkpointing, then exiting", sig.name)
        runtime.stop()

    return stop
