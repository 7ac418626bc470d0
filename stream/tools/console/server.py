"""Serving the console: uvicorn on a socket of our own (so ``--port 0`` can say which port it got)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from stream.contract.config import Settings
from stream.contract.topics import TopicNames
from .app import TOKEN_ENV, create_app
from .state import ConsoleState

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    metrics_urls: list[str] | None = None,
    state_dir: Path | None = None,
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the console until SIGINT/SIGTERM."""
    import uvicorn

    assert settings.bootstrap is not None
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    state = ConsoleState(
        bootstrap=settings.bootstrap, names=TopicNames(settings.topic_prefix), metrics_urls=list(metrics_urls or []),
        state_dir=state_dir,
    )
    app = create_app(state, settings, token)
    sock = bind(host, port)
    if on_ready is not None:
        on_ready(url_of(sock))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
