"""Partition state in Kafka: snapshots an instance with an empty disk can take a partition over from.

A stateful processor's checkpoint of one input partition (the directory its
``save_state`` wrote, see :mod:`stream.runtime.statestore`) is also copied, from
time to time, to two topics of the processor's own:

* ``state`` (compacted) holds the bytes: the checkpoint's files concatenated and cut
  into chunks of :data:`CHUNK_BYTES`, key ``group/processor/topic/partition/slot/i``
  (state belongs to a consumer group, as the local checkpoints do).  Two
  slots alternate, so writing snapshot n+1 never overwrites a chunk snapshot n still
  needs: a crash half-way leaves the previous snapshot whole.
* ``state.index`` (compacted) holds one small :class:`SnapshotIndex` per snapshot,
  key ``processor/topic/partition``, written after every chunk is acknowledged: the
  input offset the state reflects, the files (size, sha256), the chunks (offset in
  ``state``, size, sha256), and what identifies the input it was built from; key
  ``group/processor/topic/partition``.

Both go to partition p for input partition p (modulo their partition count), so a
new owner of input partition p reads the index partition (small), then seeks straight
to the chunks it names: the bytes read are the snapshot's size, not the topic's.
Every chunk and file is checked against its digest; anything missing or different
makes the snapshot unusable (the partition is then rebuilt from its input).

**Incarnation.**  A checkpoint (on disk or in Kafka) records a :class:`Fingerprint`
of the last input record its state reflects: offset, timestamp and a digest of key
and value, plus the cluster id the broker reports.  Before resuming from it the
runtime reads that record back: if the partition is now shorter than the checkpoint,
or the record at that offset has other bytes, the checkpoint belongs to another
incarnation of the topic (deleted and recreated, another cluster, a restored
backup) and the partition is rebuilt instead.  Topic ids would say the same thing
more cheaply, but aiokafka speaks Metadata up to v5 (no topic ids) and the embedded
broker reports one fixed cluster id (``tansu_cluster``) for every instance, so the
record itself is the evidence.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from stream.contract.topics import STATE, STATE_INDEX, TopicNames

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024  # well under every broker's default message size limit (1 MB)
_IN_FLIGHT = 16  # chunks handed to the producer before waiting for their acknowledgements


class SnapshotError(RuntimeError):
    """A snapshot cannot be read whole (a chunk missing, a digest differs)."""


class Fingerprint(msgspec.Struct, frozen=True):
    """The last input record a state reflects (the state's offset - 1)."""

    offset: int
    timestamp: int
    digest: str


def record_digest(key: bytes | None, value: bytes | None) -> str:
    h = hashlib.sha256()
    for part in (key, value):
        h.update(b"\x00" if part is None else b"\x01" + len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:32]


def fingerprint_of(record: Any) -> Fingerprint:
    return Fingerprint(record.offset, int(record.timestamp), record_digest(record.key, record.value))


class ChunkRef(msgspec.Struct, frozen=True):
    offset: int
    size: int
    sha256: str


class SnapshotIndex(msgspec.Struct, frozen=True):
    """What one snapshot holds and where its bytes are (the value of a ``state.index`` record)."""

    group: str
    processor: str
    topic: str  # physical input topic
    partition: int
    offset: int  # next input offset the state reflects
    snapshot_id: str
    created_at: float
    slot: int
    state_partition: int
    files: list[list[Any]]  # [path, size, sha256]
    chunks: list[ChunkRef]
    fingerprint: Fingerprint | None = None
    cluster_id: str | None = None

    @property
    def size(self) -> int:
        return sum(c.size for c in self.chunks)


def index_key(group: str, processor: str, topic: str, partition: int) -> bytes:
    return f"{group}/{processor}/{topic}/{partition}".encode()


def _chunks(directory: Path, files: list[list[Any]]) -> Iterator[bytes]:
    """The files' bytes, concatenated in ``files`` order, cut into CHUNK_BYTES pieces."""
    buf = bytearray()
    for rel, _size, _sha in files:
        with open(directory / rel, "rb") as fh:
            while block := fh.read(CHUNK_BYTES):
                buf += block
                while len(buf) >= CHUNK_BYTES:
                    yield bytes(buf[:CHUNK_BYTES])
                    del buf[:CHUNK_BYTES]
    if buf:
        yield bytes(buf)


async def state_partitions(consumer: AIOKafkaConsumer, names: TopicNames) -> int:
    """How many partitions the state topics have (created with the others, same count)."""
    from stream.runtime.kafka import partitions

    return len(await partitions(consumer, names.physical(STATE_INDEX), timeout=5.0))


@dataclass(slots=True)
class _Written:
    index: SnapshotIndex
    seconds: float


async def write(
    producer: AIOKafkaProducer,
    names: TopicNames,
    *,
    group: str,
    processor: str,
    topic: str,
    partition: int,
    offset: int,
    directory: Path,
    files: list[list[Any]],
    fingerprint: Fingerprint | None,
    cluster_id: str | None,
    slot: int,
    n_state_partitions: int,
) -> _Written:
    """Copy a checkpoint directory to the state topic (chunks, then the index record); acknowledged."""
    started = time.perf_counter()
    sp = partition % n_state_partitions
    chunk_topic = names.physical(STATE)
    refs: list[ChunkRef] = []
    pending: list[tuple[asyncio.Future[Any], int, str]] = []

    async def drain() -> None:
        for fut, size, sha in pending:
            meta = await fut
            refs.append(ChunkRef(meta.offset, size, sha))
        pending.clear()

    loop = asyncio.get_running_loop()
    it = _chunks(directory, files)
    i = 0
    while True:
        chunk = await loop.run_in_executor(None, next, it, None)
        if chunk is None:
            break
        key = f"{group}/{processor}/{topic}/{partition}/{slot}/{i}".encode()
        fut = await producer.send(chunk_topic, key=key, value=chunk, partition=sp)
        pending.append((fut, len(chunk), hashlib.sha256(chunk).hexdigest()))
        i += 1
        if len(pending) >= _IN_FLIGHT:
            await drain()
    await drain()
    index = SnapshotIndex(
        group=group, processor=processor, topic=topic, partition=partition, offset=offset, snapshot_id=uuid.uuid4().hex,
        created_at=time.time(), slot=slot, state_partition=sp, files=files, chunks=refs,
        fingerprint=fingerprint, cluster_id=cluster_id,
    )
    await producer.send_and_wait(
        names.physical(STATE_INDEX), key=index_key(group, processor, topic, partition), value=msgspec.json.encode(index), partition=sp
    )
    return _Written(index, time.perf_counter() - started)


@contextmanager
def _assigned(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> Iterator[None]:
    """Assign ``tps`` by hand for one read and drop them after it: an assigned partition is fetched
    again and again in the background (about 20 empty fetches a second at a 50 ms wait), for as
    long as the runtime lives."""
    consumer.assign(tps)
    try:
        yield
    finally:
        consumer.unsubscribe()


async def _read_to_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition], idle_timeout: float) -> list[Any]:
    """Every record of ``tps`` (already assigned and positioned) up to the fetch highwater."""
    from stream.runtime.kafka import at_highwater

    out: list[Any] = []
    last = time.monotonic()
    while True:
        batch = await consumer.getmany(*tps, timeout_ms=200)
        for records in batch.values():
            out.extend(records)
        if batch:
            last = time.monotonic()
            continue
        if all(consumer.highwater(tp) is not None for tp in tps) and await at_highwater(consumer, tps):
            return out
        if time.monotonic() - last > idle_timeout:
            return out


async def latest_indexes(consumer: AIOKafkaConsumer, names: TopicNames, state_partitions_: set[int]) -> dict[bytes, SnapshotIndex]:
    """The newest snapshot index per key in these partitions of ``state.index`` (compacted: last write wins)."""
    if not state_partitions_:
        return {}
    tps = [TopicPartition(names.physical(STATE_INDEX), p) for p in sorted(state_partitions_)]
    with _assigned(consumer, tps):
        await consumer.seek_to_beginning(*tps)
        records = await _read_to_end(consumer, tps, idle_timeout=2.0)
    out: dict[bytes, SnapshotIndex] = {}
    for r in records:
        if r.key is None:
            continue
        if r.value is None:
            out.pop(r.key, None)
            continue
        try:
            out[r.key] = msgspec.json.decode(r.value, type=SnapshotIndex)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring an unreadable state index record at %s[%d]@%d: %s", r.topic, r.partition, r.offset, exc)
    return out


async def fetch(consumer: AIOKafkaConsumer, names: TopicNames, index: SnapshotIndex, dest: Path, timeout: float = 60.0) -> int:
    """Write a snapshot's files into ``dest`` from its chunks; the bytes read.  SnapshotError when it is not whole."""
    if not index.chunks:
        _write_files(dest, index.files, iter(()))
        return 0
    tp = TopicPartition(names.physical(STATE), index.state_partition)
    wanted = {c.offset: c for c in index.chunks}
    last_offset = max(wanted)
    got: dict[int, bytes] = {}
    with _assigned(consumer, [tp]):
        consumer.seek(tp, min(wanted))
        deadline = time.monotonic() + timeout
        read = 0
        done = False
        while not done:
            if time.monotonic() > deadline:
                raise SnapshotError(f"chunks of snapshot {index.snapshot_id} not read within {timeout:.0f}s ({len(got)}/{len(wanted)})")
            batch = await consumer.getmany(tp, timeout_ms=500)
            for r in batch.get(tp, []):
                if r.offset in wanted and r.value is not None:
                    ref = wanted[r.offset]
                    if len(r.value) != ref.size or hashlib.sha256(r.value).hexdigest() != ref.sha256:
                        raise SnapshotError(f"chunk at offset {r.offset} of snapshot {index.snapshot_id} does not match its digest")
                    got[r.offset] = r.value
                    read += len(r.value)
                if r.offset >= last_offset:
                    done = True
                    break
            if not batch:
                high = consumer.highwater(tp)
                if high is not None and high <= last_offset:
                    raise SnapshotError(f"the state topic ends at {high}, before the snapshot's last chunk ({last_offset})")
    missing = [o for o in wanted if o not in got]
    if missing:
        raise SnapshotError(f"{len(missing)} chunk(s) of snapshot {index.snapshot_id} are gone (e.g. offset {missing[0]})")
    _write_files(dest, index.files, (got[c.offset] for c in index.chunks))
    return read


def _write_files(dest: Path, files: list[list[Any]], chunks: Iterator[bytes]) -> None:
    """Cut the concatenated chunks back into files, checking each file's size and sha256."""
    buf = bytearray()
    source = iter(chunks)
    for rel, size, sha in files:
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        remaining = int(size)
        with open(path, "wb") as fh:
            while remaining > 0:
                if not buf:
                    nxt = next(source, None)
                    if nxt is None:
                        raise SnapshotError(f"snapshot ends inside {rel}")
                    buf += nxt
                piece = bytes(buf[:remaining])
                del buf[: len(piece)]
                fh.write(piece)
                digest.update(piece)
                remaining -= len(piece)
        if digest.hexdigest() != sha:
            raise SnapshotError(f"{rel} does not match its digest")
    if buf or next(source, None) is not None:
        raise SnapshotError("snapshot has bytes after its last file")


class Probe(msgspec.Struct, frozen=True):
    """What is at an offset of an input partition: the record there (or the next one left by
    compaction), or that the offset lies before the partition's start or past its end."""

    record: Any = None
    before_start: bool = False
    past_end: bool = False


async def probe(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, timeout: float = 5.0) -> Probe:
    """Read the first record at or after ``offset`` of ``tp`` (the consumer resets no offsets by itself)."""
    from aiokafka.errors import OffsetOutOfRangeError

    with _assigned(consumer, [tp]):
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                batch = await consumer.getmany(tp, timeout_ms=300, max_records=1)
            except OffsetOutOfRangeError:
                start = (await consumer.beginning_offsets([tp]))[tp]
                return Probe(before_start=offset < start, past_end=offset >= start)
            records = batch.get(tp, [])
            if records:
                return Probe(record=records[0])
            high = consumer.highwater(tp)
            if high is not None and high <= offset:
                return Probe(past_end=True)
        return Probe()
