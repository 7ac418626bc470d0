"""Backfill: page VectorWave's stored executions onto ``vt.executions``, resumably, each once.

The cursor is a small JSON file: the position reached (``timestamp_utc`` and UUID
of the last record handled), the UUIDs already produced whose timestamp lies within
the overlap window behind it, and the page in flight, if any.

- **Paging.**  VectorWave's store can filter and sort by one property, so a page is
  "executions with ``timestamp_utc`` >= position - overlap, oldest first".  The
  overlap re-reads a window behind the position because VectorWave stamps a call
  when it ends and writes it up to a flush interval later, so a late write can land
  behind the cursor; the UUIDs produced inside the window are skipped.  A page asks
  for ``page_size`` + (UUIDs in the window) records, so it always holds new ones
  while any are left, however many records share a timestamp.
- **Exactly once across crashes.**  Without transactions (the embedded broker has
  none), "send then save the cursor" can repeat a page and "save then send" can lose
  one.  So before sending a page its UUIDs and the topics' end offsets are saved as
  *in flight*; after the broker acknowledged it the cursor advances.  A run that
  finds a page in flight first reads the topics from those offsets and counts the
  UUIDs that did arrive as produced; the rest are sent again.
- **Bad records** (not a valid ``ExecutionLog``) go to ``vt.dlq`` with the reason the
  processor would give, and count as handled.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.contract.config import Settings
from stream.contract.events import DeadLetter, utcnow
from stream.contract.processing import Output
from stream.contract.topics import DLQ, EXECUTIONS, TopicNames
from stream.runtime import kafka
from stream.runtime.kafka import at_highwater

from . import vw
from .mapping import map_execution

log = logging.getLogger(__name__)

_NEVER_PRUNED = datetime.max.replace(tzinfo=UTC)  # for records without a usable timestamp
_SLACK = timedelta(seconds=1)  # the store compares timestamps as stored; re-check them parsed


class CursorError(ValueError):
    """The cursor file does not fit this import (other store, other --since) or is unreadable."""


class Inflight(msgspec.Struct, kw_only=True):
    records: dict[str, datetime]  # uuid -> timestamp of each record of the page being sent
    offsets: dict[str, dict[int, int]]  # physical topic -> partition -> end offset before sending


class Cursor(msgspec.Struct, kw_only=True):
    source: str
    topic: str
    since: datetime
    position_ts: datetime | None = None
    position_uuid: str | None = None
    seen: dict[str, datetime] = {}
    produced: int = 0
    dead_lettered: int = 0
    inflight: Inflight | None = None
    updated_at: datetime | None = None


class CursorFile:
    """The cursor on disk, replaced atomically (write, fsync, rename, fsync the directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Cursor | None:
        if not self.path.exists():
            return None
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=Cursor)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CursorError(f"cursor file {self.path} is unreadable ({exc}); remove it or pass --restart") from None

    def save(self, cursor: Cursor) -> None:
        cursor.updated_at = utcnow()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(msgspec.json.encode(cursor))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class StoredExecution:
    uuid: str
    properties: dict[str, Any]
    vector: list[float] | None


def parse_ts(value: Any) -> datetime | None:
    """VectorWave's ``timestamp_utc`` (ISO string in Lite, datetime in Pro) as an aware datetime, or None."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class VectorWaveExecutions:
    """VectorWave's execution collection, read through its own ``VectorStore`` API (Lite or Pro)."""

    def __init__(self, store: Any, collection: str, *, include_vectors: bool = True, describe: str | None = None) -> None:
        self.store = store
        self.collection = collection
        self.include_vectors = include_vectors
        self.description = describe or f"{getattr(store, 'backend_name', 'store')}:{collection}"

    @classmethod
    def configured(cls, *, include_vectors: bool = True) -> VectorWaveExecutions:
        """The store VectorWave's environment points at (``VECTORWAVE_MODE``, ``VECTORWAVE_LITE_PATH``)."""
        store = vw.store()
        collection = vw.settings().EXECUTION_COLLECTION_NAME
        if getattr(store, "backend_name", "") == "lance":
            where = os.path.abspath(os.environ.get("VECTORWAVE_LITE_PATH", ".vectorwave/lance"))
        else:
            where = f"{vw.settings().WEAVIATE_HOST}:{vw.settings().WEAVIATE_PORT}"
        return cls(store, collection, include_vectors=include_vectors, describe=f"{store.backend_name}:{where}:{collection}")

    def _bound(self, low: datetime) -> Any:
        # Lite compares the stored ISO strings in Python; Weaviate wants a date for its DATE property.
        return low.isoformat() if getattr(self.store, "backend_name", "") == "lance" else low

    def page(self, low: datetime, limit: int) -> list[StoredExecution]:
        """Executions with ``timestamp_utc`` >= ``low`` (give or take the slack), oldest first."""
        records = self.store.query(
            collection=self.collection,
            filters={"timestamp_utc__gte": self._bound(low - _SLACK)},
            sort_by="timestamp_utc",
            sort_ascending=True,
            limit=limit,
        )
        out: list[StoredExecution] = []
        for rec in records:
            vector = None
            if self.include_vectors:
                full = self.store.fetch_by_id(self.collection, rec.uuid, include_vector=True)
                vector = full.vector if full is not None else None
            out.append(StoredExecution(str(rec.uuid), dict(rec.properties), vector))
        return out

    def count_since(self, low: datetime, cap: int = 1_000_000) -> int | None:
        """How many executions are at or after ``low``, for the progress bar (None when unknown)."""
        try:
            n = len(
                self.store.query(
                    collection=self.collection, filters={"timestamp_utc__gte": self._bound(low)}, limit=cap, return_properties=["timestamp_utc"]
                )
            )
        except Exception as exc:  # only a progress estimate: never fail the import for it
            log.debug("could not count executions: %s", exc)
            return None
        return n if n < cap else None


@dataclass(slots=True)
class PageReport:
    produced: int  # valid executions acknowledged on vt.executions in this page
    dead_lettered: int  # records sent to vt.dlq in this page
    position: datetime | None


@dataclass(slots=True)
class _Selection:
    outputs: list[Output] = field(default_factory=list)
    inflight: dict[str, datetime] = field(default_factory=dict)  # uuid -> timestamp
    last: tuple[datetime, str] | None = None  # (timestamp, uuid) of the last record handled, in page order
    cut: bool = False  # stopped by the quota before the end of the page
    valid: int = 0


@dataclass(slots=True)
class ImportReport:
    produced: int = 0
    dead_lettered: int = 0
    recovered: int = 0  # records of an interrupted page found already on the topics
    pages: int = 0
    resumed: bool = False
    finished: bool = False  # caught up with the store (False when stopped by --limit)
    total_estimate: int | None = None
    cursor: Cursor | None = None


class Backfill:
    """One import run: resume or start a cursor, then page until caught up (or ``limit``)."""

    def __init__(
        self,
        source: VectorWaveExecutions,
        cursor_file: CursorFile,
        *,
        bootstrap: str,
        names: TopicNames,
        since: datetime | None,
        page_size: int = 500,
        overlap_s: float = 120.0,
        restart: bool = False,
        tag_keys: Iterable[str] = (),
        max_message_bytes: int = 1_048_576,
        max_vector_dim: int = 8192,
        dlq_value_max_bytes: int = 65_536,
    ) -> None:
        self.source = source
        self.cursor_file = cursor_file
        self.bootstrap = bootstrap
        self.names = names
        self.since = since
        self.page_size = page_size
        self.overlap = timedelta(seconds=overlap_s)
        self.restart = restart
        self.tag_keys = frozenset(tag_keys)
        self._max_bytes = max_message_bytes
        self._max_dim = max_vector_dim
        self._dlq_max = dlq_value_max_bytes
        self._origin = vw.Source(f"vectorwave:{source.collection}")

    @classmethod
    def from_settings(
        cls, settings: Settings, source: VectorWaveExecutions, *, since: datetime | None, restart: bool = False
    ) -> Backfill:
        assert settings.bootstrap is not None
        vs = settings.vectorwave
        return cls(
            source,
            CursorFile(vs.import_cursor or settings.state_dir / "vectorwave" / "import-cursor.json"),
            bootstrap=settings.bootstrap,
            names=TopicNames(settings.topic_prefix),
            since=since,
            page_size=vs.import_page_size,
            overlap_s=vs.import_overlap_s,
            restart=restart,
            tag_keys=vw.tag_keys(),
            max_message_bytes=settings.runtime.max_message_bytes,
            max_vector_dim=settings.runtime.max_vector_dim,
            dlq_value_max_bytes=settings.runtime.dlq_value_max_bytes,
        )

    # ------------------------------------------------------------------ cursor
    def open_cursor(self) -> tuple[Cursor, bool]:
        """The cursor to continue (and whether it is a resumption), or a new one from ``since``."""
        topic = self.names.physical(EXECUTIONS)
        existing = None if self.restart else self.cursor_file.load()
        if existing is None:
            if self.since is None:
                raise CursorError("no import cursor to resume: give --since (e.g. --since 2026-01-01 or --since 7d)")
            return Cursor(source=self.source.description, topic=topic, since=self.since), False
        if existing.source != self.source.description or existing.topic != topic:
            raise CursorError(
                f"the cursor in {self.cursor_file.path} belongs to {existing.source} -> {existing.topic}, "
                f"not {self.source.description} -> {topic}; use another cursor file (VT_VECTORWAVE_IMPORT_CURSOR) or --restart"
            )
        if self.since is not None and self.since != existing.since:
            raise CursorError(
                f"the cursor in {self.cursor_file.path} started at --since {existing.since.isoformat()}; "
                "repeat that --since (or leave it out) to resume, or pass --restart to start over"
            )
        return existing, True

    # ------------------------------------------------------------------ run
    async def run(
        self,
        *,
        limit: int | None = None,
        on_start: Callable[[ImportReport], None] | None = None,
        on_page: Callable[[PageReport], None] | None = None,
    ) -> ImportReport:
        """Import until caught up with the store or ``limit`` records were handled in this run.

        ``on_page`` is called once a page is acknowledged by the broker and before the
        cursor records it: the one moment where an interruption leaves a page in flight.
        """
        cursor, resumed = self.open_cursor()
        report = ImportReport(resumed=resumed, cursor=cursor)
        if self.restart:
            self.cursor_file.remove()
        producer = kafka.producer(
            self.bootstrap, client_id="vt-vectorwave-import", max_request_size=max(1_048_576, self._max_bytes + 65_536)
        )
        consumer = kafka.reader(self.bootstrap, client_id="vt-vectorwave-import", auto_offset_reset="latest")
        await producer.start()
        try:
            await consumer.start()
            try:
                tps = await self._partitions(consumer)
                if cursor.inflight is not None:
                    report.recovered = await self._recover(consumer, tps, cursor)
                total = await asyncio.to_thread(self.source.count_since, cursor.since)
                report.total_estimate = total
                if on_start is not None:
                    on_start(report)
                while limit is None or report.produced + report.dead_lettered < limit:
                    quota = None if limit is None else limit - report.produced - report.dead_lettered
                    page = await self._page(producer, consumer, tps, cursor, quota, on_page)
                    if page is None:
                        report.finished = True
                        break
                    report.pages += 1
                    report.produced += page.produced
                    report.dead_lettered += page.dead_lettered
            finally:
                await consumer.stop()
        finally:
            await producer.stop()
        return report

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        tps: list[TopicPartition] = []
        for logical in (EXECUTIONS, DLQ):
            tps.extend(await kafka.partitions(consumer, self.names.physical(logical), timeout=5.0))
        return tps

    async def _page(
        self,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        cursor: Cursor,
        quota: int | None,
        on_page: Callable[[PageReport], None] | None,
    ) -> PageReport | None:
        """Send one page and advance the cursor; None when there is nothing new left."""
        low = cursor.since if cursor.position_ts is None else max(cursor.since, cursor.position_ts - self.overlap)
        base = want = self.page_size + len(cursor.seen)
        while True:
            rows = await asyncio.to_thread(self.source.page, low, want)
            sel = self._select(rows, low, cursor, quota)
            if sel.inflight or sel.cut or len(rows) < want:
                break
            # A full page of records already handled (or in the slack before the window): read further.
            if want >= 64 * base:
                raise RuntimeError(f"{want} executions from {low.isoformat()} on held nothing new; is the store sorted by timestamp_utc?")
            want *= 2
        outputs, inflight, last, valid = sel.outputs, sel.inflight, sel.last, sel.valid
        if not inflight:
            if last is not None:
                self._advance(cursor, last)
                self.cursor_file.save(cursor)
            return None

        # 1. Write ahead: what is about to be sent, and where the topics ended before it.
        ends = await consumer.end_offsets(tps)
        offsets: dict[str, dict[int, int]] = {}
        for tp, end in ends.items():
            offsets.setdefault(tp.topic, {})[tp.partition] = end
        cursor.inflight = Inflight(records=inflight, offsets=offsets)
        self.cursor_file.save(cursor)
        # 2. Send and wait for every acknowledgement (a failure leaves the page in flight).
        futures = [await producer.send(self.names.physical(o.topic), key=o.key, value=o.value) for o in outputs]
        await asyncio.gather(*futures)
        page = PageReport(produced=valid, dead_lettered=len(outputs) - valid, position=last[0] if last else None)
        if on_page is not None:
            on_page(page)
        # 3. Commit: the page is on the topics.
        cursor.seen.update(inflight)
        cursor.produced += page.produced
        cursor.dead_lettered += page.dead_lettered
        cursor.inflight = None
        if last is not None:
            self._advance(cursor, last)
        self.cursor_file.save(cursor)
        return page

    def _select(self, rows: list[StoredExecution], low: datetime, cursor: Cursor, quota: int | None) -> _Selection:
        """Map the page's new records, oldest first, up to ``quota``; remember the last record handled."""
        sel = _Selection()
        for row in rows:
            ts = parse_ts(row.properties.get("timestamp_utc"))
            if ts is not None and ts < low:
                continue  # inside the slack, before the window: handled by an earlier page
            if row.uuid in cursor.seen or row.uuid in sel.inflight:
                if ts is not None:
                    sel.last = (ts, row.uuid)
                continue
            if quota is not None and len(sel.inflight) >= quota:
                sel.cut = True
                break
            mapped = map_execution(
                row.uuid, row.properties, row.vector, tag_keys=self.tag_keys, max_bytes=self._max_bytes, max_vector_dim=self._max_dim
            )
            if mapped.failure is None:
                sel.outputs.append(Output(EXECUTIONS, mapped.key, mapped.value))
                sel.valid += 1
            else:
                log.warning("VectorWave execution %s is not a valid ExecutionLog (%s): dead-lettered", row.uuid, mapped.failure.error)
                sel.outputs.append(vw.bridge_dead_letter(self._origin, mapped.key, mapped.value, mapped.failure, self._dlq_max))
            sel.inflight[row.uuid] = ts if ts is not None else _NEVER_PRUNED
            if ts is not None:
                sel.last = (ts, row.uuid)
        return sel

    def _advance(self, cursor: Cursor, last: tuple[datetime, str]) -> None:
        if cursor.position_ts is None or last[0] >= cursor.position_ts:
            cursor.position_ts, cursor.position_uuid = last
        horizon = cursor.position_ts - self.overlap
        cursor.seen = {u: ts for u, ts in cursor.seen.items() if ts >= horizon}

    async def _recover(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], cursor: Cursor) -> int:
        """Settle a page left in flight: its records already on the topics count as produced."""
        inflight = cursor.inflight
        assert inflight is not None
        found = await find_uuids(consumer, tps, inflight.offsets, set(inflight.records), self.names)
        arrived_valid = [u for u, topic in found.items() if topic == EXECUTIONS]
        for u in found:
            cursor.seen[u] = inflight.records[u]
        cursor.produced += len(arrived_valid)
        cursor.dead_lettered += len(found) - len(arrived_valid)
        cursor.inflight = None
        self.cursor_file.save(cursor)
        log.info(
            "recovered an interrupted page: %d of its %d records had reached the broker; the rest are sent again",
            len(found),
            len(inflight.records),
        )
        return len(found)


class _HasUuid(msgspec.Struct):
    uuid: str | None = None


def _uuid_of(logical: str, value: bytes | None) -> str | None:
    """The execution UUID carried by a record of vt.executions or by a dead letter of one."""
    if value is None:
        return None
    try:
        if logical == DLQ:
            letter = msgspec.json.decode(value, type=DeadLetter)
            value = base64.b64decode(letter.value_b64)
        return msgspec.json.decode(value, type=_HasUuid).uuid
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None


async def find_uuids(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    offsets: dict[str, dict[int, int]],
    wanted: set[str],
    names: TopicNames,
    idle_timeout: float = 1.0,
) -> dict[str, str]:
    """Which of ``wanted`` appear on the topics from ``offsets`` on: uuid -> logical topic.

    Reading from an earlier offset than needed is harmless (the embedded broker's
    end offsets can be short of the true end), so the recorded offsets are a safe start.
    """
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, offsets.get(tp.topic, {}).get(tp.partition, 0))
    found: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    last_data = loop.time()
    while len(found) < len(wanted):
        batch = await consumer.getmany(timeout_ms=200)
        for tp, records in batch.items():
            logical = names.logical(tp.topic)
            for record in records:
                u = _uuid_of(logical, record.value)
                if u in wanted and found.get(u) != EXECUTIONS:
                    found[u] = logical  # on both (the processor dead-lettered it): it did reach executions
        if batch:
            last_data = loop.time()
            continue
        if loop.time() - last_data < idle_timeout:
            continue
        if await at_highwater(consumer, tps):
            break
    consumer.unsubscribe()
    return found


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO date/time (UTC unless it says otherwise) or an age such as ``90m``, ``24h``, ``7d``."""
    text = text.strip()
    if text and text[-1].lower() in _UNITS and text[:-1].replace(".", "", 1).isdigit():
        return (now or utcnow()) - timedelta(seconds=float(text[:-1]) * _UNITS[text[-1].lower()])
    ts = parse_ts(text)
    if ts is None:
        raise ValueError(f"--since {text!r}: expected an ISO date/time (2026-01-31, 2026-01-31T12:00:00Z) or an age (90m, 24h, 7d)")
    return ts
