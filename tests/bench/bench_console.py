"""The web console under load: 100k golden samples over 20 functions, 50 concurrent clients.

The console runs as its own process (uvicorn on loopback, the state filled in memory as if
read from the golden topic); the clients run here. Figures: p95 of the HTML pages and p99 of
the JSON API calls, each also as a ratio to ``/api/v1/status`` (no work) under the same load,
since the machine is noisy.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import socket
import statistics
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

FUNCTIONS = 20
CLIENTS = 50


def _fill(state: Any, samples: int) -> None:
    from stream.contract.events import ChatMessage, GoldenSample, encode

    rng = random.Random(5)
    words = "refund order late broken package customer charged twice please help account password".split()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(samples):
        fn = f"function_{i % FUNCTIONS:02d}"
        text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 40)))
        sample = GoldenSample(
            uuid=f"{i:08d}-0000-4000-8000-000000000000", function_name=fn, strategy="steady" if i % 10 else "anomaly",
            density=rng.uniform(0, 50), source_timestamp=start + timedelta(seconds=i), selected_at=start + timedelta(seconds=i),
            messages=[ChatMessage(role="system", content=f"You are {fn}."), ChatMessage(role="user", content=text),
                      ChatMessage(role="assistant", content=text[::-1])],
        )
        state.apply("golden", SimpleNamespace(key=f"{fn}/{sample.uuid}".encode(), value=encode(sample), partition=0, offset=i))


def _serve(sock: socket.socket, samples: int, ready: Any) -> None:
    import uvicorn

    from stream.contract.config import Settings
    from stream.contract.topics import TopicNames
    from stream.tools.console.app import create_app
    from stream.tools.console.state import ConsoleState

    state = ConsoleState(bootstrap="127.0.0.1:9", names=TopicNames())
    _fill(state, samples)
    app = create_app(state, Settings.load(environ={}), None, follow=False)
    ready.set()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


def _requests(rng: random.Random) -> list[tuple[str, str]]:
    fn = f"function_{rng.randrange(FUNCTIONS):02d}"
    return [
        ("status", "/api/v1/status"),
        ("page", rng.choice(["/", f"/functions/{fn}", f"/functions/{fn}/hooks", f"/functions/{fn}/training", "/dlq"])),
        ("api", rng.choice([
            "/api/v1/functions", "/api/v1/overview", f"/api/v1/functions/{fn}/golden?limit=50&offset={rng.randrange(0, 4000)}",
            f"/api/v1/functions/{fn}/golden?q=refund&limit=50", f"/api/v1/functions/{fn}/golden?strategy=anomaly",
            "/api/v1/dlq", f"/api/v1/functions/{fn}/hooks", f"/api/v1/functions/{fn}/training",
        ])),
    ]


async def _load(url: str, per_client: int) -> dict[str, list[float]]:
    import httpx

    times: dict[str, list[float]] = {"status": [], "page": [], "api": []}
    errors = 0
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            for _ in range(per_client):
                for kind, path in _requests(rng):
                    started = time.perf_counter()
                    response = await client.get(path)
                    times[kind].append(time.perf_counter() - started)
                    errors += response.status_code >= 400

        await asyncio.gather(*(one(i) for i in range(CLIENTS)))
    if errors:
        raise RuntimeError(f"{errors} requests failed")
    return times


def _q(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def run(ctx: Any) -> dict[str, Any]:
    samples = 10_000 if ctx.quick else 100_000
    per_client = 4 if ctx.quick else 10
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    mp = multiprocessing.get_context("fork")
    ready = mp.Event()
    started = time.perf_counter()
    server = mp.Process(target=_serve, args=(sock, samples, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(300):
            raise RuntimeError("the console did not load its state")
        load_s = time.perf_counter() - started
        asyncio.run(_load(url, 1))  # warm up
        times = asyncio.run(_load(url, per_client))
    finally:
        server.terminate()
        server.join(10)
        sock.close()
    status_p95, status_p99 = _q(times["status"], 0.95), _q(times["status"], 0.99)
    page_p95, api_p99 = _q(times["page"], 0.95), _q(times["api"], 0.99)
    return {
        "golden_samples": samples, "functions": FUNCTIONS, "concurrent_clients": CLIENTS,
        "requests": sum(len(v) for v in times.values()), "state_load_s": round(load_s, 2),
        "page_p95_ms": round(page_p95 * 1000, 1), "api_p99_ms": round(api_p99 * 1000, 1),
        "status_p95_ms": round(status_p95 * 1000, 1), "status_p99_ms": round(status_p99 * 1000, 1),
        "page_p95_over_status_p95": round(page_p95 / status_p95, 2), "api_p99_over_status_p99": round(api_p99 / status_p99, 2),
    }
