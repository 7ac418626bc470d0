"""Support for the fault-injection tests: a real ``vector-trainer run`` process, traffic, and
what the topics hold afterwards.

The processor runs as its own OS process so that ``kill -9`` is a real crash (no
``finally``, no final checkpoint, no commit), and its CPU time and resident memory
can be read from ``/proc``.  Every figure a test measures is printed as one
``FIGURE name: key=value ...`` line (``pytest -s`` or the captured output shows it).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.contract.events import DeadLetter
from stream.contract.topics import TopicNames
from stream.runtime.broker import free_port
from stream.runtime.kafka import latest_by_key, read_topic
from stream.tools.scrape import Scrape
from stream.tools.traffic import Labelled, produce_traffic

CLK_TCK = os.sysconf("SC_CLK_TCK")
INPUTS = ("executions", "feedback")


def figure(name: str, **values: object) -> str:
    line = f"FIGURE {name}: " + " ".join(f"{k}={v}" for k, v in values.items())
    print(line, flush=True)
    return line


@dataclass
class ProcessorProcess:
    """``vector-trainer run`` as a child process on a given broker, prefix, group and state dir."""

    bootstrap: str
    prefix: str
    group: str
    state_dir: Path
    log_file: Path
    sets: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    starts: int = 0

    def start(self, timeout: float = 90.0) -> ProcessorProcess:
        self.port = free_port()
        settings = ("runtime.session_timeout_ms=3000", "runtime.checkpoint_interval_s=1", "runtime.commit_interval_s=0.2", *self.sets)
        cmd = [
            sys.executable, "-m", "stream.cli", "run", "--bootstrap", self.bootstrap, "--topic-prefix", self.prefix,
            "--group-id", self.group, "--state-dir", str(self.state_dir), "--metrics-port", str(self.port),
        ]
        for s in settings:
            cmd += ["-c", s]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n===== start {self.starts + 1} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        self.starts += 1
        atexit.register(self._kill_if_running, self.proc)  # a failed or timed-out test leaves no processor behind
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the processor exited with {self.proc.returncode} while starting; see {self.log_file}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=1) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"the processor was not ready within {timeout}s; see {self.log_file}")

    @staticmethod
    def _kill_if_running(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful: final checkpoint and commit); the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the processor did not stop within {timeout}s of SIGTERM") from None

    def scrape(self) -> Scrape:
        return Scrape.fetch(f"http://127.0.0.1:{self.port}/metrics")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")


class Producer:
    """Sends labelled events at a rate from a background thread (its own event loop)."""

    def __init__(self, bootstrap: str, prefix: str, events: Iterable[Labelled], rate: float) -> None:
        self.sent = 0
        self.error: BaseException | None = None
        self._args = (bootstrap, prefix, list(events), rate)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        bootstrap, prefix, events, rate = self._args
        try:
            self.sent = asyncio.run(produce_traffic(bootstrap, lambda t: f"{prefix}{t}", events, rate=rate))
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def start(self) -> Producer:
        self._thread.start()
        return self

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 300.0) -> int:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error
        return self.sent


def send(bootstrap: str, prefix: str, events: Iterable[Labelled]) -> int:
    return asyncio.run(produce_traffic(bootstrap, lambda t: f"{prefix}{t}", events))


async def _committed(bootstrap: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    # A consumer that never joins: OffsetFetch only (aiokafka's admin OffsetFetch version does not decode on Tansu).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for t, n in tps:
            offset = await consumer.committed(TopicPartition(t, n))
            out[(t, n)] = -1 if offset is None else offset
        return out
    finally:
        await consumer.stop()


def committed(bootstrap: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offsets of ``tps`` (-1: none)."""
    return asyncio.run(_committed(bootstrap, group, tps))


def topic(bootstrap: str, name: str) -> list:
    return asyncio.run(read_topic(bootstrap, name, idle_timeout=1.0))


def highwater(records: list) -> dict[tuple[str, int], int]:
    """Per partition, the offset after the last record read (the true end; Tansu's ListOffsets is short)."""
    out: dict[tuple[str, int], int] = {}
    for r in records:
        out[(r.topic, r.partition)] = max(out.get((r.topic, r.partition), 0), r.offset + 1)
    return out


def wait_drained(p: ProcessorProcess, names: TopicNames, timeout: float = 240.0) -> dict[tuple[str, int], int]:
    """Wait until the group's committed offsets reach the end of every input partition; return the ends."""
    ends: dict[tuple[str, int], int] = {}
    for logical in INPUTS:
        ends.update(highwater(topic(p.bootstrap, names.physical(logical))))
    deadline = time.monotonic() + timeout
    last: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        assert p.alive(), f"the processor died; see {p.log_file}"
        last = committed(p.bootstrap, p.group, list(ends))
        if all(last.get(tp, -1) >= end for tp, end in ends.items()):
            return ends
        time.sleep(0.5)
    behind = {f"{t}[{n}]": (last.get((t, n)), end) for (t, n), end in ends.items() if last.get((t, n), -1) < end}
    raise AssertionError(f"not drained within {timeout}s (committed, end): {behind}")


@dataclass(frozen=True)
class Outputs:
    """What an output topic holds: every record (key, value) in order, and the compacted view."""

    records: list[tuple[bytes, bytes | None]]
    latest: dict[bytes, bytes]

    @property
    def duplicates(self) -> int:
        return len(self.records) - len(set(self.records))


def outputs(bootstrap: str, physical: str) -> Outputs:
    recs = topic(bootstrap, physical)
    return Outputs([(r.key, r.value) for r in recs], latest_by_key(recs))


def dead_letters(bootstrap: str, physical: str) -> set[tuple[str, int, int, str]]:
    """(source topic, partition, offset, reason) of every dead letter, replays collapsed."""
    return {
        (d.source_topic, d.partition, d.offset, d.error_type)
        for d in (msgspec.json.decode(r.value, type=DeadLetter) for r in topic(bootstrap, physical) if r.value is not None)
    }
