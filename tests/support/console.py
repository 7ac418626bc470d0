"""A running loop for the console's tests: the processor and the console as their own processes.

``vector-trainer run`` (all three engines) and ``vector-trainer console`` are started
exactly as a user starts them, on the session's embedded broker with a topic prefix of
their own; traffic is the demo's generator plus events made to be hostile:

* ``hostile_fn`` logs whose inputs and outputs carry markup and script (they become
  golden samples), and bad values carrying the same text (they become dead letters);
* ``hooks_fn`` feedback in two phases, so that it has two hook versions to roll back.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from stream.contract import events
from stream.runtime.broker import free_port
from stream.tools.traffic import produce_traffic
from stream.contract.topics import TopicNames
from stream.runtime.kafka import ensure_topics
from stream.tools.traffic import DEMO_FUNCTIONS, Labelled, TrafficGenerator

HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
HOSTILE_FN = "hostile_fn"
HOOKS_FN = "hooks_fn"
TOKEN = "console-test-token-0123456789"


def hostile_logs(n: int = 140, dim: int = 8, seed: int = 3) -> list[Labelled]:
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim)
    out = []
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    for i in range(n):
        v = centre + rng.normal(scale=0.05, size=dim)
        log = events.ExecutionLog(
            uuid=f"hostile-{i:04d}", function_name=HOSTILE_FN, timestamp_utc=t0 + timedelta(seconds=i), status="SUCCESS",
            inputs={"ticket": f"{HOSTILE} ticket {i}"}, return_value=f"answer {i} {HOSTILE}", vector=(v / np.linalg.norm(v)).tolist(),
        )
        out.append(Labelled("executions", HOSTILE_FN.encode(), events.encode(log), log, "hostile"))
    return out


def hostile_bad_values() -> list[Labelled]:
    """Values that are dead-lettered, each carrying markup (one of them replayable and valid once replayed)."""
    return [
        Labelled("executions", b"hostile_fn", f'{{"uuid": "{HOSTILE}", "oops"'.encode(), None, "bad:malformed_json"),
        Labelled("executions", HOSTILE.encode(), json.dumps({"uuid": "u1", "function_name": HOSTILE}).encode(), None, "bad:missing_field"),
    ]


def feedback_phase(phase: int, n: int = 16) -> list[Labelled]:
    """Phase 1 teaches one replacement; phase 2 adds a greeting to strip (a second hook version)."""
    out = []
    t0 = datetime(2026, 11, 3, tzinfo=UTC) + timedelta(hours=phase)
    for i in range(n):
        if phase == 1:
            bad, fixed = f"The customer paid invoice {i} twice.", f"The client paid invoice {i} twice."
        else:
            bad, fixed = f"Greetings friend! The customer asked about order {i}.", f"The client asked about order {i}."
        fb = events.Feedback(uuid=f"fb{phase}-{i:03d}", function_name=HOOKS_FN, bad_output=bad, fixed_output=fixed,
                             timestamp_utc=t0 + timedelta(seconds=i))
        out.append(Labelled("feedback", HOOKS_FN.encode(), events.encode(fb), fb, "feedback"))
    return out


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition", interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = predicate()
            if got:
                return got
        except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


@dataclass
class Stack:
    bootstrap: str
    workdir: Path
    prefix: str = field(default_factory=lambda: f"c{uuid.uuid4().hex[:6]}.")
    token: str | None = TOKEN
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_url: str = ""
    url: str = ""

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.prefix)

    @property
    def state_dir(self) -> Path:
        return self.workdir / "processor"

    def produce(self, items: list[Labelled]) -> int:
        # A thread of its own: Playwright's sync API keeps an event loop running in the test's thread.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, produce_traffic(self.bootstrap, self.names.physical, items)).result(timeout=120)

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
        env.update({"VT_TOPIC_PREFIX": self.prefix, "VT_BOOTSTRAP": self.bootstrap, **extra})
        return env

    def start_processor(self) -> None:
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        env = self._env(
            VT_TRAINING_TRAINER="none", VT_TRAINING_THRESHOLD="15", VT_TRAINING_COOLDOWN_S="5",
            VT_RUNTIME_CHECKPOINT_INTERVAL_S="1", VT_FEEDBACK_DEBOUNCE_S="0.3", VT_FEEDBACK_MAX_DELAY_S="2",
            VT_GROUP_ID=f"g-{self.prefix}",
        )
        cmd = [sys.executable, "-m", "stream.cli", "run", "--state-dir", str(self.state_dir), "--metrics-port", str(port)]
        log = open(self.workdir / "processor.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        wait_until(lambda: httpx.get(self.metrics_url.replace("/metrics", "/ready"), timeout=1).status_code == 200,
                   timeout=90, what="the processor to be ready")

    def start_console(self, *, token: str | None = TOKEN, state_dir: bool = True) -> str:
        port = free_port()
        env = self._env(**({"VT_CONSOLE_TOKEN": token} if token else {}))
        cmd = [sys.executable, "-m", "stream.cli", "console", "--port", str(port)]
        if self.metrics_url:
            cmd += ["--metrics-url", self.metrics_url]
        if state_dir:
            cmd += ["--state-dir", str(self.state_dir)]
        log = open(self.workdir / f"console-{port}.log", "wb")  # noqa: SIM115
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/api/v1/status", timeout=1).status_code == 200, timeout=60, what="the console")
        return url

    def get(self, path: str, url: str | None = None, **params: Any) -> Any:
        resp = httpx.get(f"{url or self.url}{path}", params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def post(self, path: str, body: Any = None, *, token: str | None = TOKEN, url: str | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        h.update(headers or {})
        return httpx.post(f"{url or self.url}{path}", json=body if body is not None else {}, headers=h, timeout=30)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cancel_reached_processor(self, function: str, job_id: str) -> bool:
        """The cancel request file is there for the processor, or the processor has answered it already.

        (A processor that owns the job cancels it; one that does not, e.g. for a job a stand-in
        reported, deletes the request and logs that it has no job in flight.)
        """
        requests = self.state_dir / "training" / "cancel-requests"
        if any(job_id in p.read_text() for p in requests.glob("*.json")):
            return True
        return f"cancel request for {function}: no job in flight here" in (self.workdir / "processor.log").read_text(errors="replace")

    def console_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("console-*.log")))


def build(bootstrap: str, workdir: Path, *, events_: int = 2500, seed: int = 11) -> Stack:
    """Topics, traffic, the processor and the console; returns once hooks_fn has two hook versions."""
    stack = Stack(bootstrap, workdir)
    asyncio.run(ensure_topics(bootstrap, stack.names, 3))
    gen = TrafficGenerator(seed=seed, functions=DEMO_FUNCTIONS, bad_ratio=0.02, feedback_ratio=0.08)
    stack.produce(gen.take(events_) + hostile_logs() + hostile_bad_values() + feedback_phase(1))
    try:
        stack.start_processor()
        stack.url = stack.start_console()
        wait_until(lambda: [v for v in stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks")["versions"]], timeout=90, what="hooks_fn v1")
        stack.produce(feedback_phase(2))
        wait_until(lambda: len(stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks")["versions"]) >= 2, timeout=90, what="hooks_fn v2")
        wait_until(lambda: stack.get(f"/api/v1/functions/{HOSTILE_FN}/golden")["total"] > 0, timeout=90, what="hostile golden samples")
        wait_until(lambda: stack.get("/api/v1/overview")["consumer_lag"] == 0, timeout=120, what="the processor to drain")
        wait_until(lambda: any(f["last_job"] for f in stack.get("/api/v1/functions")["functions"]), timeout=90,
                   what="a training decision (an export: the trainer is 'none')")
    except BaseException:
        stack.stop()
        raise
    return stack


def clustered_logs(function: str, *, clusters: int = 3, per_cluster: int = 25, dim: int = 8, seed: int = 21) -> list[Labelled]:
    """SUCCESS logs of ``function`` in tight clusters (one steady golden sample each) plus two isolated ones."""
    rng = np.random.default_rng(seed)
    centres = [rng.normal(size=dim) for _ in range(clusters)]
    t0 = datetime(2026, 11, 4, tzinfo=UTC)
    out = []
    points = [c + rng.normal(scale=0.05, size=dim) for c in centres for _ in range(per_cluster)]
    points += [rng.normal(size=dim) for _ in range(2)]
    for i, v in enumerate(points):
        log = events.ExecutionLog(
            uuid=f"{function}-{i:04d}", function_name=function, timestamp_utc=t0 + timedelta(milliseconds=200 * i), status="SUCCESS",
            inputs={"ticket": f"ticket {i}"}, return_value=f"answer {i}", vector=(v / np.linalg.norm(v)).tolist(),
        )
        out.append(Labelled("executions", function.encode(), events.encode(log), log, "curation"))
    return out
