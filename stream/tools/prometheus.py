"""A local Prometheus (Debian's ``prometheus`` package) next to a processor: for ``make demo`` and the tests.

It scrapes the given targets every ``scrape_interval`` with the given rule files
loaded, keeps its data in ``workdir``, and answers PromQL through its HTTP API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from stream.runtime.broker import free_port


class PrometheusError(RuntimeError):
    """Prometheus is missing, exited or never became ready (its log's tail is in the message)."""


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


class PrometheusServer:
    """``prometheus`` scraping ``targets`` every ``scrape_interval``, with ``rule_files`` loaded."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        rule_files: tuple[Path, ...] | list[Path] = (),
        job: str = "vector-trainer",
        scrape_interval: str = "1s",
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = "\n".join(f"  - {p}" for p in rule_files)
        config = (
            f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n"
            + (f"rule_files:\n{rules}\n" if rule_files else "")
            + f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(targets)}\n"
        )
        (workdir / "prometheus.yml").write_text(config)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 30) -> PrometheusServer:
        binary = prometheus_binary()
        if binary is None:
            raise PrometheusError("prometheus is not installed (apt-get install prometheus; .ci/run does it)")
        log = self._log = open(self.workdir / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [binary, f"--config.file={self.workdir / 'prometheus.yml'}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise PrometheusError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus did not become ready within {timeout}s")

    def wait_scraped(self, timeout: float = 30) -> None:
        """Block until every target was scraped successfully (Prometheus' discovery takes ~5 s to hand them over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.api("targets").get("data", {}).get("activeTargets", [])
            if targets and all(t.get("health") == "up" for t in targets):
                return
            time.sleep(0.25)
        raise PrometheusError(f"prometheus did not scrape its targets within {timeout}s: {self.api('targets')}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET an API path; returns the decoded body even for 4xx errors (they carry the PromQL error)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """Instant query (at Unix time ``at``, default now); the API's decoded answer, errors included."""
        return self.api("query", query=expr, **({"time": f"{at:.3f}"} if at is not None else {}))

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
