"""schemathesis against the console's /openapi.json: generated requests to every operation find no server error.

The application runs in-process (ASGI), over a state filled from the running stack's
topics, once read-only (POSTs generated too, refused after validation) and once with a
token (POSTs with a wrong token: they must validate and refuse, never fail).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.testclient import TestClient

from stream.contract.config import Settings
from stream.tools.console.app import create_app
from stream.tools.console.state import FOLLOWED, ConsoleState
from stream.runtime.kafka import read_topic

from tests.support.console import Stack

pytestmark = pytest.mark.broker


def _filled_state(stack: Stack) -> ConsoleState:
    state = ConsoleState(bootstrap=stack.bootstrap, names=stack.names, state_dir=stack.state_dir)

    async def read() -> dict[str, list[Any]]:
        return {t: await read_topic(stack.bootstrap, stack.names.physical(t), idle_timeout=0.5) for t in FOLLOWED}

    with ThreadPoolExecutor(1) as pool:
        records = pool.submit(asyncio.run, read()).result(timeout=120)
    for topic, recs in records.items():
        for r in recs:
            state.apply(topic, r)
    return state


@pytest.mark.parametrize("mode", ["read-only", "token"])
def test_schemathesis_finds_no_server_error(stack: Stack, mode: str) -> None:
    state = _filled_state(stack)
    assert state.golden and state.hooks and state.dlq
    token = None if mode == "read-only" else "fuzz-token-never-sent"
    app = create_app(state, Settings(bootstrap=stack.bootstrap, topic_prefix=stack.prefix), token, follow=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    calls: dict[str, int] = {}
    client = TestClient(app, raise_server_exceptions=False)
    for op in operations:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            # Sent with Starlette's (httpx-based) test client: schemathesis' own requests transport trips over
            # urllib3-future, which grafana-client's niquests installs in urllib3's place.
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            body = {k: kwargs[k] for k in ("json", "data") if kwargs.get(k) is not None}
            response = client.request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                      headers=kwargs.get("headers"), **body)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            assert response.status_code < 500, (case.method, kwargs["url"], kwargs.get("params"), body, response.text[:300])

        run()
    assert set(calls) == {op.label for op in operations} and sum(calls.values()) >= 13 * 5, calls
