"""What the console knows: the output topics followed live, and the processors' metrics.

One consumer (no group, nothing committed) is assigned every partition of the golden,
hooks, training, models, dlq and curation topics, reads them from the beginning and keeps
following them; topics that do not exist yet are looked for again every few seconds.
Records are applied on the event loop, so readers (the API handlers, same loop) always
see a consistent view.  ``revision`` grows with every change: the pages poll it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stream.contract.events import Curation, DeadLetter, GoldenSample, HookRelease, ModelUpdated, TrainingEvent
from ..scrape import Scrape
from stream.contract.topics import TopicNames

log = logging.getLogger(__name__)

# hooks.history: every hook version (the compacted hooks topic keeps the newest per function only).
FOLLOWED = ("golden", "hooks", "hooks.history", "training", "models", "dlq", "curation")

_decoders = {
    "golden": msgspec.json.Decoder(GoldenSample),
    "hooks": msgspec.json.Decoder(HookRelease),
    "hooks.history": msgspec.json.Decoder(HookRelease),
    "training": msgspec.json.Decoder(TrainingEvent),
    "models": msgspec.json.Decoder(ModelUpdated),
    "dlq": msgspec.json.Decoder(DeadLetter),
    "curation": msgspec.json.Decoder(Curation),
}


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One record of the dead-letter topic, with its place there (``id`` = ``partition-offset``)."""

    partition: int
    offset: int
    key: bytes | None
    letter: DeadLetter

    @property
    def id(self) -> str:
        return f"{self.partition}-{self.offset}"


@dataclass(slots=True)
class MetricsSource:
    url: str
    scrape: Scrape | None = None
    error: str | None = None
    at: float = 0.0


@dataclass(slots=True)
class ConsoleState:
    """The views the pages and the API read; fed by :meth:`run`."""

    bootstrap: str
    names: TopicNames
    metrics_urls: list[str] = field(default_factory=list)
    state_dir: Path | None = None
    dlq_keep: int = 50_000
    metrics_interval_s: float = 2.0
    signing_key: str | None = None

    golden: dict[str, dict[str, GoldenSample]] = field(default_factory=dict)  # function -> uuid -> sample
    hooks: dict[str, dict[int, HookRelease]] = field(default_factory=dict)  # function -> version -> release
    hooks_refused: int = 0
    training: dict[str, list[TrainingEvent]] = field(default_factory=dict)  # function -> events, in topic order
    models: dict[str, ModelUpdated] = field(default_factory=dict)
    curation: dict[str, dict[str, Curation]] = field(default_factory=dict)  # function -> uuid -> decision in force
    dlq: deque[DlqEntry] = field(default_factory=deque)
    dlq_seen: int = 0
    undecodable: dict[str, int] = field(default_factory=dict)  # topic -> records that are not its event type
    metrics: list[MetricsSource] = field(default_factory=list)
    revision: int = 0
    caught_up: set[str] = field(default_factory=set)  # topics read up to their highwater once
    missing: set[str] = field(default_factory=set)
    _golden_key: dict[bytes, tuple[str, str]] = field(default_factory=dict)
    _stopping: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self.dlq = deque(maxlen=self.dlq_keep)
        self.metrics = [MetricsSource(u) for u in self.metrics_urls]
        if self.signing_key is None:
            from stream.contract.hooks.release import SIGNING_KEY_ENV

            self.signing_key = os.environ.get(SIGNING_KEY_ENV) or None

    # ------------------------------------------------------------------ applying records
    def apply(self, logical: str, record: ConsumerRecord[bytes, bytes]) -> None:
        """Fold one record of a followed topic into the views."""
        self.revision += 1
        if logical == "golden":
            self._apply_golden(record)
            return
        if logical == "curation" and record.value is None:  # a tombstone: the decision was cleared
            function, _, uuid = (record.key or b"").decode("utf-8", errors="replace").partition("/")
            decided = self.curation.get(function, {})
            decided.pop(uuid, None)
            if not decided:
                self.curation.pop(function, None)
            return
        if record.value is None:
            return
        try:
            event = _decoders[logical].decode(record.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable[logical] = self.undecodable.get(logical, 0) + 1
            return
        if isinstance(event, HookRelease):
            self.add_release(event)
        elif isinstance(event, TrainingEvent):
            self.training.setdefault(event.function_name, []).append(event)
        elif isinstance(event, ModelUpdated):
            self.models[event.function_name] = event
        elif isinstance(event, Curation):
            self.curation.setdefault(event.function_name, {})[event.uuid] = event
        elif isinstance(event, DeadLetter):
            self.dlq_seen += 1
            self.dlq.append(DlqEntry(record.partition, record.offset, record.key, event))

    def _apply_golden(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None:
            return
        previous = self._golden_key.pop(record.key, None)
        if previous is not None:
            fn, uuid = previous
            self.golden.get(fn, {}).pop(uuid, None)
        if record.value is None:  # a tombstone: the sample left the golden set
            return
        try:
            sample = _decoders["golden"].decode(record.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable["golden"] = self.undecodable.get("golden", 0) + 1
            return
        self.golden.setdefault(sample.function_name, {})[sample.uuid] = sample
        self._golden_key[record.key] = (sample.function_name, sample.uuid)

    def add_release(self, release: HookRelease) -> bool:
        """Keep a release that verifies (digest, and signature when a key is configured)."""
        from stream.contract.hooks.generator import HookScriptGenerator
        from stream.contract.hooks.release import ReleaseError, verify_release

        try:
            verify_release(release, HookScriptGenerator(), self.signing_key)
        except ReleaseError:
            self.hooks_refused += 1
            return False
        self.hooks.setdefault(release.function_name, {})[release.version] = release
        self.revision += 1
        return True

    def load_version_store(self) -> int:
        """Older hook versions kept by ``vector-trainer hooks`` under the state dir (a compacted topic keeps the newest only)."""
        if self.state_dir is None or not (self.state_dir / "hooks" / "manifest.json").is_file():
            return 0
        from processors.feedback.versions import VersionStore

        store = VersionStore(self.state_dir / "hooks")
        n = 0
        for fn in store.functions():
            for version in store.versions(fn):
                try:
                    n += self.add_release(store.get(fn, version))
                except (KeyError, OSError, msgspec.DecodeError, msgspec.ValidationError):
                    continue
        return n

    # ------------------------------------------------------------------ views
    def functions(self) -> list[str]:
        names: set[str] = set(self.golden) | set(self.hooks) | set(self.training) | set(self.models)
        for src in self.metrics:
            if src.scrape is not None:
                names.update(s.labels["function"] for s in src.scrape.select("vt_density_index_logs") if "function" in s.labels)
        return sorted(names)

    def metric_by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for src in self.metrics:
            if src.scrape is not None:
                for k, v in src.scrape.by(name, label, **labels).items():
                    out[k] = out.get(k, 0.0) + v
        return out

    def metric_total(self, name: str) -> float | None:
        scrapes = [s.scrape for s in self.metrics if s.scrape is not None]
        return sum(s.total(name) for s in scrapes) if scrapes else None

    def releases(self, function: str) -> list[HookRelease]:
        return [self.hooks[function][v] for v in sorted(self.hooks.get(function, {}))]

    def latest_release(self, function: str) -> HookRelease | None:
        versions = self.hooks.get(function)
        return versions[max(versions)] if versions else None

    # ------------------------------------------------------------------ the hook store rollback needs
    def get(self, function_name: str, version: int | None = None) -> HookRelease:
        """``VersionStore.get`` over what the console holds (so the CLI's rollback code runs unchanged)."""
        versions = self.hooks.get(function_name)
        if not versions:
            raise KeyError(f"no hook versions known for {function_name!r}")
        v = max(versions) if version is None else version
        if v not in versions:
            raise KeyError(f"{function_name!r} has no version {v}; known: {', '.join(map(str, sorted(versions)))}")
        return versions[v]

    # ------------------------------------------------------------------ running
    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def run(self) -> None:
        """Follow the topics and scrape the metrics until :meth:`stop`."""
        self._stopping = asyncio.Event()
        self.load_version_store()
        tasks = [asyncio.create_task(self._follow(), name="console-follow")]
        if self.metrics:
            tasks.append(asyncio.create_task(self._scrape_loop(), name="console-metrics"))
        try:
            await self._stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _scrape_loop(self) -> None:
        while True:
            for src in self.metrics:
                try:
                    src.scrape = await asyncio.to_thread(Scrape.fetch, src.url, 2.0)
                    src.error = None
                    src.at = time.time()
                    self.revision += 1
                except (OSError, ValueError) as exc:
                    src.error = f"{type(exc).__name__}: {exc}"[:300]
            await asyncio.sleep(self.metrics_interval_s)

    async def _follow(self) -> None:
        """Read every followed topic from the beginning, forever, reconnecting after errors."""
        positions: dict[TopicPartition, int] = {}
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                client_id="vt-console", max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_wait_ms=200,
            )
            try:
                await consumer.start()
                await self._consume(consumer, positions)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: try again, keeping our positions
                log.warning("console lost the broker (%s); reconnecting", exc)
                await asyncio.sleep(2.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        assigned: set[TopicPartition] = set()
        logical_of = {self.names.physical(t): t for t in FOLLOWED}
        next_lookup = 0.0
        while True:
            if time.monotonic() >= next_lookup:
                next_lookup = time.monotonic() + 3.0
                await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call for this
                wanted: set[TopicPartition] = set()
                missing = set()
                for physical, logical in logical_of.items():
                    parts = consumer.partitions_for_topic(physical)
                    if parts:
                        wanted.update(TopicPartition(physical, p) for p in parts)
                    else:
                        missing.add(logical)
                self.missing = missing
                if wanted != assigned:
                    consumer.assign(sorted(wanted))
                    for tp in wanted:
                        if tp in positions:
                            consumer.seek(tp, positions[tp])
                        else:
                            await consumer.seek_to_beginning(tp)
                    assigned = wanted
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for tp, records in batch.items():
                logical = logical_of[tp.topic]
                for record in records:
                    self.apply(logical, record)
                if records:
                    positions[tp] = records[-1].offset + 1
            if not batch:
                await self._mark_caught_up(consumer, assigned, logical_of)

    async def _mark_caught_up(
        self, consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition], logical_of: dict[str, str]
    ) -> None:
        behind: set[str] = set()
        for tp in assigned:
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) < high:
                behind.add(logical_of[tp.topic])
        for physical, logical in logical_of.items():
            if logical not in behind and logical not in self.missing:
                self.caught_up.add(logical)


def parse_since(text: str) -> datetime:
    """An ISO time (UTC when it has no offset) or a duration back from now: ``90s``, ``15m``, ``2h``, ``7d``."""
    from datetime import UTC, timedelta

    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def as_dict(value: Any) -> Any:
    """msgspec struct -> plain JSON-able builtins."""
    return msgspec.to_builtins(value)
