"""Real-time mirror: every execution VectorWave writes is also sent to ``vt.executions``.

VectorWave hands each execution record to its batch writer
(``WeaviateBatchManager.add_object``), from the decorated call's thread unless
``ASYNC_LOGGING`` is on.  :func:`mirror_executions` wraps that one method, so every
path that logs an execution (normal calls, errors, cache hits) is covered without
touching the user's functions.  The wrapper only

1. gives the record a UUID when VectorWave did not (VectorWave's store would pick a
   random one; choosing it here lets ``vt.executions`` and the store agree, which the
   golden write-back relies on),
2. calls VectorWave's own ``add_object`` unchanged,
3. offers ``(uuid, properties, vector)`` to a bounded queue with ``put_nowait``.

So the decorated function never waits for Kafka: when the queue is full the record
is dropped from the mirror (VectorWave still stores it, and ``vector-trainer import
vectorwave`` can backfill it) and ``vt_vectorwave_mirror_dropped_total{reason}``
counts it.  A daemon thread maps, validates and produces the queued records; a
record that cannot become a valid ``ExecutionLog`` goes to ``vt.dlq`` with the
reason the processor would have given.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from stream.contract.config import Settings
from stream.contract.processing import Output
from stream.contract.topics import EXECUTIONS, TopicNames
from stream.runtime import kafka

from . import vw
from .mapping import map_execution

log = logging.getLogger(__name__)

_Item = tuple[str, dict[str, Any], Any]

_lock = threading.Lock()
_active: ExecutionMirror | None = None


class MirrorMetrics:
    """The mirror's metrics, in the service's registry (Prometheus' default one unless told)."""

    def __init__(self, registry: CollectorRegistry, depth: Callable[[], float]) -> None:
        self.registry = registry
        self.forwarded = Counter(
            "vt_vectorwave_mirror_forwarded_total", "VectorWave executions acknowledged on the executions topic", registry=registry
        )
        self.dead_lettered = Counter(
            "vt_vectorwave_mirror_dead_lettered_total",
            "VectorWave executions that are not valid ExecutionLogs, sent to the dead-letter topic",
            ["reason"],
            registry=registry,
        )
        self.dropped = Counter(
            "vt_vectorwave_mirror_dropped_total",
            "VectorWave executions not mirrored (queue full, sender failing at shutdown, internal error)",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            "vt_vectorwave_mirror_send_retries_total", "Batches re-sent because Kafka did not acknowledge them", registry=registry
        )
        self.queue_depth = Gauge("vt_vectorwave_mirror_queue_depth", "Executions waiting to be mirrored", registry=registry)
        self.queue_depth.set_function(depth)
        self._all = (self.forwarded, self.dead_lettered, self.dropped, self.retries, self.queue_depth)

    def unregister(self) -> None:
        for collector in self._all:
            try:
                self.registry.unregister(collector)
            except KeyError:
                pass


class ExecutionMirror:
    """Forwards VectorWave's execution records to Kafka from a background thread."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "vt.",
        queue_size: int = 10_000,
        batch_size: int = 500,
        registry: CollectorRegistry | None = None,
        max_message_bytes: int = 1_048_576,
        max_vector_dim: int = 8192,
        dlq_value_max_bytes: int = 65_536,
        retry_backoff_s: float = 0.5,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be >= 1")
        self.bootstrap = bootstrap
        self.names = TopicNames(topic_prefix)
        self.batch_size = batch_size
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self.metrics = MirrorMetrics(registry if registry is not None else REGISTRY, lambda: float(self._queue.qsize()))
        self._max_bytes = max_message_bytes
        self._max_dim = max_vector_dim
        self._dlq_max = dlq_value_max_bytes
        self._backoff = retry_backoff_s
        self._stop = threading.Event()
        # flush() waits until every record queued so far is handled (acked, dead-lettered or dropped).
        self._count_lock = threading.Lock()
        self._offered = 0  # queued records, under _count_lock
        self._handled = 0  # written by the sender thread only
        self._thread: threading.Thread | None = None
        self._original: Callable[..., Any] | None = None
        self._collection = "VectorWaveExecutions"
        self._tag_keys: frozenset[str] = frozenset()
        self._source = vw.Source(f"vectorwave:{self._collection}")

    # ------------------------------------------------------------------ wiring
    def install(self) -> ExecutionMirror:
        """Wrap VectorWave's batch writer and start the sender thread."""
        vw.require()
        from vectorwave.batch import batch as vw_batch

        settings = vw.settings()
        self._collection = settings.EXECUTION_COLLECTION_NAME
        self._source = vw.Source(f"vectorwave:{self._collection}")
        self._tag_keys = vw.tag_keys()
        cls = vw_batch.WeaviateBatchManager
        original = cls.add_object
        if getattr(original, "_vt_mirror", None) is not None:
            raise RuntimeError("a VectorWave mirror is already installed in this process (use mirror_executions())")
        mirror = self

        def add_object(
            manager: Any, collection: str, properties: dict, uuid: str | None = None, vector: Any = None
        ) -> Any:
            if collection != mirror._collection:
                return original(manager, collection, properties, uuid, vector)
            if uuid is None:
                uuid = str(uuid_mod.uuid4())
            result = original(manager, collection, properties, uuid, vector)
            mirror.offer(uuid, properties, vector)
            return result

        add_object.__wrapped__ = original  # type: ignore[attr-defined]
        add_object._vt_mirror = self  # type: ignore[attr-defined]
        add_object.__doc__ = original.__doc__
        cls.add_object = add_object  # type: ignore[method-assign]
        self._original = original
        self._thread = threading.Thread(target=self._run, name="vt-vectorwave-mirror", daemon=True)
        self._thread.start()
        log.info("mirroring VectorWave executions (%s) to %s on %s", self._collection, self.names.physical(EXECUTIONS), self.bootstrap)
        return self

    def offer(self, uuid: str, properties: dict[str, Any], vector: Any) -> bool:
        """Queue one record without blocking; False (and counted) when it had to be dropped."""
        try:
            if self._stop.is_set():
                self.metrics.dropped.labels("closed").inc()
                return False
            with self._count_lock:  # held for a put_nowait only: never waits on Kafka
                self._queue.put_nowait((uuid, dict(properties), vector))
                self._offered += 1
            return True
        except queue.Full:
            self.metrics.dropped.labels("queue_full").inc()
            return False
        except Exception:  # never let the mirror break the user's call
            self.metrics.dropped.labels("error").inc()
            log.exception("could not queue a VectorWave execution for mirroring")
            return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is acknowledged (or dead-lettered/dropped)."""
        with self._count_lock:
            target = self._offered
        deadline = time.monotonic() + timeout
        while self._handled < target:
            if time.monotonic() >= deadline or self._thread is None:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Restore VectorWave's batch writer, send what is queued (for at most ``timeout`` s), stop."""
        global _active
        if self._original is not None:
            from vectorwave.batch import batch as vw_batch

            vw_batch.WeaviateBatchManager.add_object = self._original  # type: ignore[method-assign]
            self._original = None
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 5.0)
            self._thread = None
        left = 0
        while True:
            try:
                self._queue.get_nowait()
                left += 1
            except queue.Empty:
                break
        if left:
            self.metrics.dropped.labels("shutdown").inc(left)
            log.warning("VectorWave mirror closed with %d executions unsent (backfill can recover them)", left)
        self.metrics.unregister()
        with _lock:
            if _active is self:
                _active = None

    # ------------------------------------------------------------------ sender
    _deadline: float = float("inf")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("VectorWave mirror sender stopped")

    def _take(self) -> list[_Item]:
        items: list[_Item] = []
        while len(items) < self.batch_size:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _encode(self, items: Iterable[_Item]) -> list[tuple[Output, str | None]]:
        """Map each record; pair each output with its dead-letter reason (None = a valid ExecutionLog)."""
        outputs: list[tuple[Output, str | None]] = []
        for uuid, properties, vector in items:
            try:
                mapped = map_execution(
                    uuid, properties, vector, tag_keys=self._tag_keys, max_bytes=self._max_bytes, max_vector_dim=self._max_dim
                )
            except Exception:  # a bug in mapping must not stop the mirror; count it and say so loudly
                log.exception("mapping VectorWave execution %s failed", uuid)
                self.metrics.dropped.labels("error").inc()
                continue
            if mapped.failure is None:
                outputs.append((Output(EXECUTIONS, mapped.key, mapped.value), None))
            else:
                log.warning("VectorWave execution %s is not a valid ExecutionLog (%s): dead-lettered", uuid, mapped.failure.error)
                letter = vw.bridge_dead_letter(self._source, mapped.key, mapped.value, mapped.failure, self._dlq_max)
                outputs.append((letter, mapped.failure.error_type))
        return outputs

    async def _main(self) -> None:
        producer = kafka.producer(
            self.bootstrap, client_id="vt-vectorwave-mirror", max_request_size=max(1_048_576, self._max_bytes + 65_536)
        )
        backoff = self._backoff
        while True:
            try:
                await producer.start()
                break
            except KafkaError as exc:
                if self._stop.is_set():
                    return
                log.warning("VectorWave mirror cannot reach Kafka yet (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        try:
            while True:
                items = self._take()
                if not items:
                    if self._stop.is_set():
                        return
                    await asyncio.sleep(0.02)
                    continue
                sent = await self._send(producer, self._encode(items))
                if not sent:
                    self.metrics.dropped.labels("shutdown").inc(len(items))
                self._handled += len(items)
                if not sent:
                    return
        finally:
            await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, outputs: list[tuple[Output, str | None]]) -> bool:
        """Send and await acks, retrying; False when the close deadline passed first."""
        backoff = self._backoff
        while True:
            try:
                futures = [await producer.send(self.names.physical(o.topic), key=o.key, value=o.value) for o, _ in outputs]
                await asyncio.gather(*futures)
                break
            except KafkaError as exc:
                self.metrics.retries.inc()
                if self._stop.is_set() and time.monotonic() >= self._deadline:
                    return False
                log.warning("VectorWave mirror: Kafka did not acknowledge %d records (%s); retrying", len(outputs), exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        for _o, reason in outputs:
            if reason is None:
                self.metrics.forwarded.inc()
            else:
                self.metrics.dead_lettered.labels(reason).inc()
        return True


def mirror_executions(
    bootstrap: str | None = None,
    *,
    settings: Settings | None = None,
    registry: CollectorRegistry | None = None,
) -> ExecutionMirror:
    """The one-line opt-in: ``mirror_executions("kafka:9092")`` in the service that uses VectorWave.

    Bootstrap, topic prefix, queue size and limits default to vector-trainer's
    settings (``VT_BOOTSTRAP``, ``VT_TOPIC_PREFIX``, ``VT_VECTORWAVE_MIRROR_QUEUE_SIZE``
    ...).  Idempotent: a second call returns the mirror already installed.  It is
    closed (queued records sent, for up to 5 s) at interpreter exit.
    """
    global _active
    with _lock:
        if _active is not None:
            return _active
        s = settings if settings is not None else Settings.load()
        target = bootstrap or s.bootstrap
        if not target:
            raise ValueError("mirror_executions needs a Kafka bootstrap address (argument or VT_BOOTSTRAP)")
        mirror = ExecutionMirror(
            target,
            topic_prefix=s.topic_prefix,
            queue_size=s.vectorwave.mirror_queue_size,
            batch_size=s.vectorwave.mirror_batch_size,
            registry=registry,
            max_message_bytes=s.runtime.max_message_bytes,
            max_vector_dim=s.runtime.max_vector_dim,
            dlq_value_max_bytes=s.runtime.dlq_value_max_bytes,
        )
        mirror.install()
        _active = mirror
    atexit.register(mirror.close)
    return mirror
