"""Assembles a runnable processor: topics, processors, runtime, signals.

This is the thin facade behind ``vector-trainer run``; everything it does is a call
into the modules that own the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Iterator

from .broker import EmbeddedBroker
from .config import Settings
from .processing import Processor
from .runtime import Runtime
from .topics import TopicNames, ensure_topics

log = logging.getLogger(__name__)


def build_processors(settings: Settings) -> list[Processor]:
    """Every processor ``run`` starts, each owning its input topics.

    Processors register their metrics when the runtime calls ``bind_metrics``.
    :class:`processors.intake.IntakeCounter` remains for input topics no engine owns
    (none, now that all three engines have landed).
    """
    from processors.density import DensityProcessor
    from processors.feedback.processor import FeedbackProcessor
    from processors.feedback.release import SIGNING_KEY_ENV
    from processors.training import TrainingProcessor

    proposer = None
    if settings.feedback.llm_enabled:
        from processors.feedback.llm import LLMRuleProposer

        proposer = LLMRuleProposer(
            model=settings.feedback.llm_model, base_url=settings.feedback.llm_base_url, timeout_s=settings.feedback.llm_timeout_s
        )
    feedback = FeedbackProcessor(
        settings.feedback,
        store_dir=settings.state_dir / "hooks",
        signing_key=os.environ.get(SIGNING_KEY_ENV) or None,
        proposer=proposer,
    )
    processors: list[Processor] = [DensityProcessor(settings.density), TrainingProcessor(settings), feedback]
    if settings.vectorwave.golden_writeback:  # opt-in: needs the vectorwave extra and its store
        from .vectorwave_bridge.golden import GoldenWriteBack

        processors.append(GoldenWriteBack.from_settings(settings))
    return processors


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


async def serve(settings: Settings, processors: list[Processor] | None = None) -> None:
    """Create missing topics, then run every processor until SIGINT/SIGTERM."""
    assert settings.bootstrap is not None
    created = await ensure_topics(settings.bootstrap, TopicNames(settings.topic_prefix), settings.partitions, settings.replication_factor)
    log.info("topics: %s", ", ".join(f"{t} ({s})" for t, s in sorted(created.items())))
    runtime = Runtime(settings, processors if processors is not None else build_processors(settings))
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
