"""Moving a partition to an instance with an empty disk: restore from the state topic against replaying
the partition's input, for a partition holding N indexed 384-d logs (one function), on the embedded broker.

* replay: read the input partition from its start (bytes read), decode, index every log again;
* restore: read the state index partition, then the snapshot's chunks (bytes read), verify them,
  write the files, load the engine from them;
* snapshot: save_state, then write the chunks and the index record (bytes written);
* normal processing: a real runtime (density only) over the same input with the default snapshot
  policy except a 1 s interval, so the ratio (input since the last snapshot >= its size) governs:
  bytes written to the state topic per input byte.

Inputs use ``vector_b64`` (2.5 KB a log; JSON floats would be 8.5 KB and make the replay read 3.4x more).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from processors.density import DensityProcessor
from stream.contract import events
from stream.contract.config import RuntimeSettings, Settings
from stream.contract.processing import Record
from stream.contract.topics import TopicNames
from stream.runtime import kafka, snapshots
from stream.runtime.broker import EmbeddedBroker
from stream.runtime.loop import Runtime
from stream.runtime.partitioning import function_partition
from stream.runtime.statestore import describe_files
from stream.tools.traffic import TrafficGenerator, produce_traffic


def _items(n: int) -> list:
    gen = TrafficGenerator(seed=5, feedback_ratio=0.0, dim_override=384, vector_encoding="b64")
    fn = gen.functions[0]
    out = []
    while len(out) < n:
        item = gen.execution(fn)
        if item.event is not None and item.event.status == "SUCCESS" and item.value is not None:
            out.append(item)
    return out


async def _read_partition(settings: Settings, tp: TopicPartition) -> tuple[list[Any], float]:
    reader = kafka.state_reader(settings)
    await reader.start()
    try:
        started = time.perf_counter()
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        records = await snapshots._read_to_end(reader, [tp], idle_timeout=5.0)  # noqa: SLF001
        return records, time.perf_counter() - started
    finally:
        await reader.stop()


def _index(proc: DensityProcessor, partition: int, raws: list[Any]) -> None:
    batch: list[Record] = []
    for r in raws:
        batch.append(Record("executions", partition, r.offset, r.key, events.decode("executions", r.value), r.value, r.timestamp))
        if len(batch) == 500:
            proc.process(batch)
            batch = []
    if batch:
        proc.process(batch)


async def _one(n: int, scratch: Path, normal: bool) -> dict[str, Any]:
    items = _items(n)
    prefix = f"bst{n}."
    names = TopicNames(prefix)
    with EmbeddedBroker(log_file=scratch / f"broker-{n}.log") as broker:
        rt = RuntimeSettings(checkpoint_interval_s=1.0, state_snapshot_interval_s=1.0, session_timeout_ms=6000)
        settings = Settings(bootstrap=broker.bootstrap, topic_prefix=prefix, group_id=f"g{n}", state_dir=scratch / f"state-{n}",
                            metrics_port=0, partitions=3, runtime=rt)
        await kafka.ensure_topics(broker.bootstrap, names, 3)
        await produce_traffic(broker.bootstrap, names.physical, items)
        partition = function_partition(items[0].key, 3)
        tp = TopicPartition(names.physical("executions"), partition)

        # Replay: what an empty instance does without the state topic.
        raws, read_s = await _read_partition(settings, tp)
        assert len(raws) == n, (len(raws), n)
        input_bytes = sum(len(r.value) + len(r.key or b"") for r in raws)
        started = time.perf_counter()
        proc = DensityProcessor(settings.density)
        proc.load_state("executions", partition, None)
        _index(proc, partition, raws)
        replay_index_s = time.perf_counter() - started

        # Snapshot: save the state, copy it to the state topic.
        ckdir = scratch / f"ckpt-{n}"
        shutil.rmtree(ckdir, ignore_errors=True)
        ckdir.mkdir(parents=True)
        started = time.perf_counter()
        proc.save_state("executions", partition, ckdir)
        save_s = time.perf_counter() - started
        files = describe_files(ckdir)
        producer = kafka.output_producer(settings)
        await producer.start()
        try:
            written = await snapshots.write(
                producer, names, group="bench", processor="density", topic=tp.topic, partition=partition, offset=n,
                directory=ckdir, files=files, fingerprint=snapshots.fingerprint_of(raws[-1]), cluster_id=None, slot=0,
                n_state_partitions=3,
            )
        finally:
            await producer.stop()

        # Restore on an "empty instance": index partition, chunks, verify, files, load.
        dest = scratch / f"restored-{n}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        reader = kafka.state_reader(settings)
        await reader.start()
        try:
            started = time.perf_counter()
            indexes = await snapshots.latest_indexes(reader, names, {partition % 3})
            index = indexes[snapshots.index_key("bench", "density", tp.topic, partition)]
            index_s = time.perf_counter() - started
            fetched = await snapshots.fetch(reader, names, index, dest)
            fetch_s = time.perf_counter() - started
        finally:
            await reader.stop()
        index_records, _ = await _read_partition(settings, TopicPartition(names.physical("state.index"), partition % 3))
        index_bytes = sum(len(r.value or b"") + len(r.key or b"") for r in index_records)
        started = time.perf_counter()
        fresh = DensityProcessor(settings.density)
        fresh.load_state("executions", partition, dest)
        load_s = time.perf_counter() - started
        assert fresh.golden() == proc.golden()

        # Normal processing through the runtime: bytes written to the state topic per input byte
        # (measured on the smaller size only: at 100k it is another full indexing of the input).
        from prometheus_client import CollectorRegistry

        if not normal:
            return _figures(n, input_bytes, written, read_s, replay_index_s, fetched, index_bytes, index, index_s, fetch_s, load_s, save_s, None)

        registry = CollectorRegistry()
        runtime = Runtime(settings, [DensityProcessor(settings.density)], registry=registry, serve_metrics=False)
        task = asyncio.create_task(runtime.run())
        deadline = time.monotonic() + 900
        consumed = 0.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            consumed = registry.get_sample_value("vt_events_consumed_total", {"topic": "executions"}) or 0.0
            if consumed >= n:
                break
        runtime.stop()
        await asyncio.wait_for(task, timeout=300)
        snap_bytes = registry.get_sample_value("vt_state_snapshot_bytes_total", {"processor": "density"}) or 0.0
        snaps = registry.get_sample_value("vt_state_snapshots_total", {"processor": "density"}) or 0.0
    return _figures(n, input_bytes, written, read_s, replay_index_s, fetched, index_bytes, index, index_s, fetch_s, load_s, save_s,
                    {"policy": "state_snapshot_ratio=1.0, interval 1 s, plus one at shutdown", "snapshots": int(snaps),
                     "state_bytes_written": int(snap_bytes), "state_bytes_per_input_byte": round(snap_bytes / input_bytes, 3)})


def _figures(n, input_bytes, written, read_s, replay_index_s, fetched, index_bytes, index, index_s, fetch_s, load_s, save_s, normal):  # type: ignore[no-untyped-def]
    replay_s = read_s + replay_index_s
    restore_s = fetch_s + load_s
    out = {
        "logs": n,
        "input_bytes": input_bytes,
        "state_bytes": written.index.size,
        "state_bytes_per_log": round(written.index.size / n),
        "replay": {"bytes_read": input_bytes, "read_s": round(read_s, 2), "index_s": round(replay_index_s, 2), "total_s": round(replay_s, 2)},
        "restore": {
            "bytes_read": fetched + index_bytes, "chunks": len(index.chunks), "index_s": round(index_s, 3),
            "fetch_s": round(fetch_s, 2), "load_s": round(load_s, 2), "total_s": round(restore_s, 2),
        },
        "restore_speedup_over_replay": round(replay_s / restore_s, 1),
        "snapshot": {"save_s": round(save_s, 2), "write_s": round(written.seconds, 2), "bytes_written": written.index.size},
    }
    if normal is not None:
        out["normal_processing"] = normal
    print(json.dumps(out), flush=True)
    return out


def run(ctx: Any) -> dict[str, Any]:
    sizes = (2_000, 10_000) if ctx.quick else (10_000, 100_000)
    out: dict[str, Any] = {"vector_dim": 384, "encoding": "vector_b64"}
    for n in sizes:
        out[f"logs_{n}"] = asyncio.run(_one(n, ctx.scratch, normal=n == sizes[0]))
    return out
