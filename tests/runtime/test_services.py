"""The runtime's generic extensions: background services, tombstones on compacted inputs, the partitioner."""

from __future__ import annotations

import asyncio
import threading
from typing import ClassVar

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from stream.contract.processing import Output, Processor, Record, Result, Service, ServiceContext
from stream.runtime.kafka import read_topic
from stream.runtime.partitioning import function_partition, function_partitioner
from tests.support.runtime import metric, running, wait_for


class Collector(Processor):
    """Remembers golden records (tombstones included) and the thread each call ran on."""

    name: ClassVar[str] = "collector"
    inputs: ClassVar[tuple[str, ...]] = ("golden",)

    def __init__(self, service: Service | None = None) -> None:
        self.seen: list[tuple[bytes | None, bool]] = []
        self.threads: set[str] = set()
        self._service = service

    def process(self, records: list[Record]) -> Result:
        self.threads.add(threading.current_thread().name)
        self.seen.extend((r.key, r.value is None) for r in records)
        return Result()

    def announce(self, n: int) -> Result:
        self.threads.add(threading.current_thread().name)
        return Result(outputs=[Output("training", b"svc", f'{{"n": {n}}}'.encode())])

    def services(self):
        return (self._service,) if self._service else ()


class Announcer(Service):
    """Emits through ``apply`` three times, crashes once, then idles until asked to stop."""

    name: ClassVar[str] = "announcer"

    def __init__(self) -> None:
        self.proc: Collector | None = None
        self.runs = 0
        self.stopped_cleanly = False
        self.call_thread: str | None = None

    async def run(self, ctx: ServiceContext) -> None:
        self.runs += 1
        assert self.proc is not None
        if self.runs == 1:
            for n in range(3):
                await ctx.apply(self.proc.announce, n)
            self.call_thread = await ctx.call(lambda: threading.current_thread().name)
            raise RuntimeError("a bug in a service")
        await ctx.stopping.wait()
        self.stopped_cleanly = True


@pytest.mark.broker
async def test_services_emit_through_the_worker_thread_restart_after_a_crash_and_stop(make_settings, topics) -> None:
    settings = make_settings()
    service = Announcer()
    proc = Collector(service)
    service.proc = proc
    async with running(settings, [proc]) as rt:
        await wait_for(lambda: service.runs >= 2, timeout=30, what="the service to be restarted")
        assert metric(rt, "vt_service_crashes_total", service="announcer") == 1
        assert metric(rt, "vt_events_produced_total", topic="training") == 3
    assert service.stopped_cleanly
    assert proc.threads == {service.call_thread} and service.call_thread.startswith("vt-worker")
    recs = await read_topic(settings.bootstrap, topics.physical("training"), idle_timeout=0.5)
    assert sorted(r.value for r in recs) == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']


@pytest.mark.broker
async def test_tombstones_on_a_compacted_input_reach_the_processor(make_settings, topics) -> None:
    settings = make_settings()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, partitioner=function_partitioner)
    await producer.start()
    await producer.send_and_wait(topics.physical("golden"), key=b"fn/u1", value=b'{"not": "checked here"}')
    await producer.send_and_wait(topics.physical("golden"), key=b"fn/u1", value=None)
    await producer.stop()
    proc = Collector()
    async with running(settings, [proc]) as rt:
        await wait_for(lambda: metric(rt, "vt_events_consumed_total") >= 2, what="both records")
        await asyncio.sleep(0.2)
        # The first value is not a GoldenSample: dead-lettered; the tombstone is handed over.
        assert metric(rt, "vt_dead_letters_total", topic="golden") == 1
    assert proc.seen == [(b"fn/u1", True)]


def test_function_partitioner_keeps_a_functions_keys_together_and_matches_kafka_for_plain_keys() -> None:
    default = DefaultPartitioner()
    parts = list(range(6))
    for fn in (b"summarize", b"classify_intent", b"x", "függvény".encode()):
        assert function_partitioner(fn, parts, parts) == default(fn, parts, parts)
        assert {function_partitioner(fn + b"/" + str(i).encode(), parts, parts) for i in range(50)} == {
            function_partition(fn, 6)
        }
    assert function_partitioner(None, parts, [2]) == 2
