"""Burst: ten times the sustained rate for a minute.

The consumer loop holds no queue of its own: it fetches (aiokafka's bounded
prefetch), processes, waits for the outputs' acknowledgements and only then fetches
again.  Under a burst the backlog therefore waits on the broker as consumer lag,
consumption runs at the processor's own pace, and resident memory grows with the
density index only, not with the burst.  Sampled every half second from /proc and
/metrics.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.tools.traffic import TrafficGenerator
from tests.support.faults import INPUTS, ProcessorProcess, Producer, figure, wait_drained

pytestmark = [pytest.mark.broker, pytest.mark.faults, pytest.mark.timeout(900)]

SUSTAINED = 100.0  # events/s (the demo sends 150)
BURST = 10 * SUSTAINED
WARM_S, BURST_S = 20.0, 60.0


@dataclass
class Sampler:
    proc: ProcessorProcess
    samples: list[tuple[float, int, float, float]] = field(default_factory=list)  # t, rss, lag, consumed
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(0.5):
            try:
                s = self.proc.scrape()
                consumed = sum(s.by("vt_events_consumed_total", "topic").get(t, 0.0) for t in INPUTS)
                self.samples.append((time.monotonic() - t0, self.proc.rss_bytes(), s.total("vt_consumer_lag_records"), consumed))
            except OSError:
                continue

    def start(self) -> Sampler:
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def test_ten_times_the_sustained_rate_for_a_minute(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    gen = TrafficGenerator(seed=53, feedback_ratio=0.05, bad_ratio=0.002)
    warm = list(itertools.islice(gen.stream(), int(SUSTAINED * WARM_S)))
    burst = list(itertools.islice(gen.stream(), int(BURST * BURST_S)))
    b = own_broker.bootstrap
    names = TopicNames("burst.")
    proc = ProcessorProcess(b, "burst.", "burst", tmp_path / "state", tmp_path / "processor.log").start()
    sampler = Sampler(proc).start()

    Producer(b, "burst.", warm, SUSTAINED).start().join()
    time.sleep(2.0)
    rss_warm = proc.rss_bytes()
    started = time.monotonic()
    sent = Producer(b, "burst.", burst, BURST).start().join()
    burst_s = time.monotonic() - started
    ends = wait_drained(proc, names, timeout=600)
    drained_s = time.monotonic() - started
    time.sleep(1.0)
    sampler.stop()
    rss_end = proc.rss_bytes()
    indexed = proc.scrape().total("vt_density_index_logs")
    assert proc.stop() == 0, "no crash: a clean shutdown after the burst"

    assert sum(ends.values()) == len(warm) + len(burst) == len(warm) + sent
    samples = sampler.samples
    assert samples, "the sampler read the processor"
    rss_max = max(s[1] for s in samples)
    lag_max = max(s[2] for s in samples)
    # Throughput while a backlog existed: consumption continued at the processor's own pace.
    backlog = [s for s in samples if s[2] > 0]
    rate_under_backlog = (backlog[-1][3] - backlog[0][3]) / (backlog[-1][0] - backlog[0][0]) if len(backlog) > 1 else 0.0
    growth_per_log = (rss_end - rss_warm) / max(1.0, indexed - len(warm))
    assert rss_max <= rss_end + 256 * 2**20, "no transient buffering of the burst in memory beyond the index's own growth"
    assert growth_per_log < 16_384, f"memory grew {growth_per_log:.0f} B per indexed log"
    figure(
        "burst", sustained_eps=SUSTAINED, burst_target_eps=BURST, burst_sent=sent, burst_achieved_eps=round(sent / burst_s),
        lag_max=int(lag_max), consumed_eps_under_backlog=round(rate_under_backlog), seconds_to_drain_from_burst_start=round(drained_s, 1),
        rss_mb_warm=round(rss_warm / 2**20), rss_mb_max=round(rss_max / 2**20), rss_mb_end=round(rss_end / 2**20),
        indexed_logs=int(indexed), rss_growth_bytes_per_indexed_log=round(growth_per_log),
    )
