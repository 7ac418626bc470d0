"""Curation through the console's API on the running loop: reject, pin and clear are events on
``curation``; the processor answers on ``golden`` and the console shows it (tests/support/console.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from stream.contract import events
from stream.runtime.kafka import latest_by_key, read_topic

from tests.support.console import TOKEN, Stack, clustered_logs, wait_until

pytestmark = pytest.mark.broker

FN = "curation_api_fn"


def _records(stack: Stack, logical: str) -> list:
    return asyncio.run(read_topic(stack.bootstrap, stack.names.physical(logical), idle_timeout=0.5))


def _latest(stack: Stack, logical: str) -> dict[bytes, bytes]:
    return latest_by_key(_records(stack, logical))


def _tombstoned(stack: Stack, logical: str, key: bytes) -> bool:
    """The key's last record on the topic is a tombstone."""
    last = [r for r in _records(stack, logical) if r.key == key]
    return bool(last) and last[-1].value is None


def _golden(stack: Stack) -> dict[str, dict]:
    return {s["uuid"]: s for s in stack.get(f"/api/v1/functions/{FN}/golden", limit=500)["items"]}


def test_reject_pin_and_clear_through_the_api_arrive_back_through_kafka(stack: Stack) -> None:
    items = clustered_logs(FN)
    stack.produce(items)
    first = wait_until(lambda: _golden(stack) if len(_golden(stack)) >= 3 else None, timeout=60, what="the golden set of the new function")
    victim = max((s for s in first.values() if s["strategy"] == "steady"), key=lambda s: s["density"])["uuid"]
    path = f"/api/v1/functions/{FN}/golden/{victim}/reject"

    assert stack.post(path, token=None).status_code == 401
    assert stack.post(path, token="wrong-token").status_code == 401
    assert stack.post(path, headers={"Origin": "http://evil.example"}).status_code == 403
    assert stack.post(f"/api/v1/functions/{'x' * 300}/golden/{victim}/reject").status_code == 422

    resp = stack.post(path, {"reason": "wrong answer"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["decision"] == "reject"
    decision = events.decode("curation", _latest(stack, "curation")[f"{FN}/{victim}".encode()])  # type: ignore[arg-type]
    assert (decision.decision, decision.reason, decision.by) == ("reject", "wrong answer", "console")

    # The processor withdraws it: a tombstone on golden, and the console's list no longer shows it.
    key = f"{FN}/{victim}".encode()
    wait_until(lambda: _tombstoned(stack, "golden", key), timeout=30, what="the tombstone")
    wait_until(lambda: victim not in _golden(stack), timeout=15, what="the console to drop the rejected sample")
    cur = stack.get(f"/api/v1/functions/{FN}/curation")["items"]
    assert [(d["uuid"], d["decision"], d["reason"]) for d in cur] == [(victim, "reject", "wrong answer")]

    # Pin a log that is not golden: it enters, marked pinned.
    golden_now = _golden(stack)
    low = next(i.event.uuid for i in items if i.event.uuid not in golden_now and i.event.uuid != victim)  # type: ignore[union-attr]
    assert stack.post(f"/api/v1/functions/{FN}/golden/{low}/pin").status_code == 202
    pinned = wait_until(lambda: _golden(stack).get(low), timeout=30, what="the pinned log to enter")
    assert pinned["pinned"] is True
    sample = events.decode("golden", _latest(stack, "golden")[f"{FN}/{low}".encode()])  # type: ignore[arg-type]
    assert sample.pinned

    # Clearing both: the rejected sample is selected again, the pinned one leaves.
    for uuid in (victim, low):
        resp = httpx.delete(f"{stack.url}/api/v1/functions/{FN}/golden/{uuid}/curation", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert resp.status_code == 202 and resp.json()["decision"] is None
    wait_until(lambda: victim in _golden(stack) and low not in _golden(stack), timeout=30, what="plain selection again")
    assert stack.get(f"/api/v1/functions/{FN}/curation")["items"] == []
    assert _tombstoned(stack, "curation", f"{FN}/{victim}".encode())
