"""Runtime metrics and the HTTP endpoint that serves them.

Names follow Prometheus conventions: a ``vt_`` namespace, base units in the name,
``_total`` for counters.  Label values are bounded: topics and partitions are ours,
dead-letter reasons come from a fixed vocabulary, processors are our own names.
Each runtime gets its own registry so several can live in one test process.

Counters whose label values are known up front (input topics x dead-letter
reasons, processors, training statuses ...) are created at 0 when the label set
becomes known, so ``rate()`` and alert expressions see a series before the first
event instead of nothing.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

# Fine around 0.1-0.25 s, where the record-latency objective (p99 < 250 ms) is decided.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RuntimeMetrics:
    """The consumer loop's own metrics."""

    def __init__(self, registry: CollectorRegistry | None = None, version: str = "0") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.info = Info("vt_build", "vector-trainer build information", registry=r)
        self.info.info({"version": version})
        self.up = Gauge("vt_up", "1 while the processor process is running", registry=r)
        self.ready = Gauge("vt_ready", "1 once the processor has joined its group and is consuming", registry=r)
        self.consumed = Counter("vt_events_consumed_total", "Input records processed (their outputs acknowledged)", ["topic"], registry=r)
        self.produced = Counter("vt_events_produced_total", "Records acknowledged on output topics", ["topic"], registry=r)
        self.dead_letters = Counter(
            "vt_dead_letters_total", "Input records sent to the dead-letter topic", ["topic", "reason"], registry=r
        )
        self.batch_seconds = Histogram(
            "vt_batch_processing_seconds",
            "Time to process one fetched batch of one partition, outputs acknowledged included",
            ["processor"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.record_latency = Histogram(
            "vt_record_latency_seconds",
            "From a record's broker timestamp to its outputs being acknowledged",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "vt_consumer_lag_records", "Records not yet processed (highwater - position)", ["topic", "partition"], registry=r
        )
        self.assigned = Gauge("vt_assigned_partitions", "Input partitions owned by this instance", ["topic"], registry=r)
        self.commits = Counter("vt_offset_commits_total", "Offset commits to the broker", registry=r)
        self.checkpoints = Counter("vt_checkpoints_total", "State checkpoints written", ["processor"], registry=r)
        self.checkpoint_seconds = Histogram(
            "vt_checkpoint_duration_seconds", "Time to write one state checkpoint", ["processor"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.snapshots = Counter(
            "vt_state_snapshots_total", "Partition state snapshots written to the state topic", ["processor"], registry=r
        )
        self.snapshot_bytes = Counter(
            "vt_state_snapshot_bytes_total", "Bytes of partition state written to the state topic", ["processor"], registry=r
        )
        self.restores = Counter(
            "vt_state_restores_total",
            "Partitions taken over, by where their state came from: local (verified disk cache), kafka "
            "(the state topic), none (rebuilt by replaying the input)",
            ["processor", "topic", "source"],
            registry=r,
        )
        self.restore_bytes = Counter(
            "vt_state_restore_bytes_total", "Bytes of partition state read from the state topic", ["processor"], registry=r
        )
        self.restore_seconds = Histogram(
            "vt_state_restore_seconds", "Time to find, verify and load one partition's state", ["processor"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.foreign_checkpoints = Counter(
            "vt_state_foreign_checkpoints_total",
            "Checkpoints refused because they belong to another incarnation of the input topic or another cluster",
            ["processor"],
            registry=r,
        )
        self.send_retries = Counter(
            "vt_send_retries_total", "Output batches re-sent because the broker did not acknowledge them", registry=r
        )
        self.processing_errors = Counter(
            "vt_processing_errors_total", "Batches on which a processor raised (records were retried one by one)", ["processor"], registry=r
        )
        self.service_crashes = Counter(
            "vt_service_crashes_total", "Background services that raised and were restarted", ["service"], registry=r
        )
        self.last_batch = Gauge(
            "vt_last_batch_timestamp_seconds", "Unix time of the last processed batch", registry=r
        )

    def initialise(
        self, input_topics: Iterable[str], output_topics: Iterable[str], processors: Iterable[str], reasons: Iterable[str]
    ) -> None:
        """Create the known counter and histogram series at 0 (see the module docstring)."""
        reasons = tuple(reasons)
        for topic in output_topics:
            self.produced.labels(topic)
        for topic in input_topics:
            self.consumed.labels(topic)
            self.record_latency.labels(topic)  # a run shorter than a scrape interval still shows a rate
            for reason in reasons:
                self.dead_letters.labels(topic, reason)
        for name in processors:
            self.processing_errors.labels(name)
            self.foreign_checkpoints.labels(name)
            self.batch_seconds.labels(name)


class MetricsServer:
    """``/metrics`` (Prometheus text), ``/healthz`` (process alive) and ``/ready``."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, is_ready: Callable[[], bool]) -> None:
        self.registry = registry
        self._is_ready = is_ready
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(server.registry), CONTENT_TYPE_LATEST, 200
                elif path == "/healthz":
                    body, ctype, code = b"ok\n", "text/plain", 200
                elif path == "/ready":
                    ok = server._is_ready()
                    body, ctype, code = (b"ready\n", "text/plain", 200) if ok else (b"not ready\n", "text/plain", 503)
                else:
                    body, ctype, code = b"try /metrics, /healthz or /ready\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return  # scrapes every few seconds would drown the log

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vt-metrics", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics at %s", self.url)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class BoundedLabels:
    """Caps the distinct values of a user-derived label (function names).

    The first ``limit`` values seen keep their name; later ones are reported as
    ``_other`` so a producer sending many function names cannot blow up the
    number of time series.
    """

    OTHER = "_other"

    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._known:
            return value
        with self._lock:
            if value in self._known:
                return value
            if len(self._known) < self.limit:
                self._known.add(value)
                return value
        return self.OTHER


_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, BoundedLabels] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def function_labels(registry: CollectorRegistry, limit: int = 200) -> BoundedLabels:
    """The one :class:`BoundedLabels` of ``registry``'s ``function`` label.

    Every engine bound to a runtime's registry shares it, so a function past the cap
    is ``_other`` in all of them and dashboards can join engines by function.  The
    first caller's ``limit`` wins (all engines pass ``density.metric_functions``).
    """
    with _SHARED_LOCK:
        labels = _SHARED.get(registry)
        if labels is None:
            labels = _SHARED[registry] = BoundedLabels(limit)
        return labels
