"""The console's JSON API against a running processor on the real broker (tests/support/console.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from stream.contract import events
from stream.tools.scrape import Scrape
from stream.runtime.kafka import latest_by_key, read_topic
from stream.tools.traffic import Labelled

from tests.support.console import HOOKS_FN, HOSTILE, HOSTILE_FN, TOKEN, Stack, wait_until

pytestmark = pytest.mark.broker


def _topic(stack: Stack, logical: str) -> list:
    return asyncio.run(read_topic(stack.bootstrap, stack.names.physical(logical), idle_timeout=0.5))


def test_openapi_describes_the_versioned_api(stack: Stack) -> None:
    spec = stack.get("/openapi.json")
    paths = set(spec["paths"])
    for p in ("/api/v1/functions", "/api/v1/functions/{name}/golden", "/api/v1/functions/{name}/golden.jsonl",
              "/api/v1/functions/{name}/hooks", "/api/v1/functions/{name}/hooks/diff", "/api/v1/functions/{name}/hooks/rollback",
              "/api/v1/functions/{name}/training", "/api/v1/functions/{name}/training/cancel", "/api/v1/dlq", "/api/v1/dlq/replay"):
        assert p in paths, p
    assert all(p.startswith("/api/v1/") for p in paths), "pages are not part of the API"
    assert set(spec["paths"]["/api/v1/functions/{name}/hooks/rollback"]) == {"post"}


def test_functions_overview_matches_the_topics_and_metrics(stack: Stack) -> None:
    def golden_on_topic() -> dict[str, dict[str, int]]:
        golden: dict[str, dict[str, int]] = {}
        for raw in latest_by_key(_topic(stack, "golden")).values():
            s = events.decode("golden", raw)
            golden.setdefault(s.function_name, {"steady": 0, "anomaly": 0})[s.strategy] += 1
        return golden

    def counts_match() -> bool:  # the golden set may still move (idle evaluation): compare one settled state
        golden = golden_on_topic()
        shown = {f["name"]: f for f in stack.get("/api/v1/functions")["functions"]}
        return bool(golden) and all(
            (shown[fn]["golden_steady"], shown[fn]["golden_anomaly"]) == (c["steady"], c["anomaly"]) for fn, c in golden.items()
        ) and golden == golden_on_topic()

    wait_until(counts_match, timeout=30, what="golden counts equal to the golden topic's")
    assert {HOSTILE_FN, "summarize_ticket"} <= set(golden_on_topic())

    # The console scrapes every 2 s: its figure equals a fresh scrape's once the index is still.
    def same_as_metrics() -> bool:
        fresh = Scrape.fetch(stack.metrics_url).by("vt_density_index_logs", "function")["summarize_ticket"]
        shown = next(f for f in stack.get("/api/v1/functions")["functions"] if f["name"] == "summarize_ticket")["logs_indexed"]
        return shown == fresh > 0

    wait_until(same_as_metrics, timeout=20, what="logs_indexed equal to the processor's /metrics")
    o = stack.get("/api/v1/overview")
    by_name = {f["name"]: f for f in o["functions"]}
    assert by_name[HOOKS_FN]["hook_version"] >= 2
    assert o["consumer_lag"] == 0 and o["consumed_total"] >= 2500
    assert o["dead_letters_by_reason"]["malformed_json"] >= 1 and o["dead_letters_seen"] >= 10
    assert any(f["last_job"] and f["last_job"]["status"] == "exported" for f in o["functions"])
    assert o["status"]["read_only"] is False and o["status"]["missing_topics"] == []
    assert [f["name"] for f in stack.get("/api/v1/functions")["functions"]] == [f["name"] for f in o["functions"]]


def test_golden_search_paging_and_chatml_download(stack: Stack) -> None:
    fn = "route_ticket"
    whole = stack.get(f"/api/v1/functions/{fn}/golden", limit=500)
    assert whole["total"] == whole["golden"] == len(whole["items"]) > 5
    pages = [stack.get(f"/api/v1/functions/{fn}/golden", offset=o, limit=4)["items"] for o in range(0, whole["total"], 4)]
    assert [s["uuid"] for p in pages for s in p] == [s["uuid"] for s in whole["items"]], "pages tile the list"
    selected = [s["selected_at"] for s in whole["items"]]
    assert selected == sorted(selected, reverse=True), "newest selection first"
    needle = whole["items"][0]["messages"][-1]["content"].split()[0]
    found = stack.get(f"/api/v1/functions/{fn}/golden", q=needle.upper(), limit=500)
    assert 0 < found["total"] <= whole["total"]
    assert all(any(needle.casefold() in m["content"].casefold() for m in s["messages"]) or needle.casefold() in s["uuid"] for s in found["items"])
    assert stack.get(f"/api/v1/functions/{fn}/golden", q="no-such-text-anywhere-42")["total"] == 0
    steady = stack.get(f"/api/v1/functions/{fn}/golden", strategy="steady", limit=500)
    assert all(s["strategy"] == "steady" for s in steady["items"])

    resp = httpx.get(f"{stack.url}/api/v1/functions/{fn}/golden.jsonl", timeout=10)
    assert resp.status_code == 200 and "attachment" in resp.headers["content-disposition"]
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert len(lines) == whole["total"]
    assert lines[0] == {"messages": whole["items"][0]["messages"]}
    assert all(msg["role"] in ("system", "user", "assistant") for line in lines for msg in line["messages"])

    hostile = stack.get(f"/api/v1/functions/{HOSTILE_FN}/golden", q="onerror")
    assert hostile["total"] > 0 and HOSTILE in hostile["items"][0]["messages"][-2]["content"], "hostile text kept verbatim as data"


def test_hooks_diff_and_rollback_arrives_back_through_kafka(stack: Stack) -> None:
    versions = stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks")["versions"]
    assert [v["version"] for v in versions][:2] == [1, 2]
    assert [r["kind"] for r in versions[0]["rules"]] == ["replace_phrase"]
    for rule in (r for v in versions for r in v["rules"]):  # synthesised: measured, with its confidence
        assert rule["support"] > 0 and rule["confidence"] == pytest.approx(rule["support"] / (rule["support"] + rule["against"]))
    d = stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks/diff", a=1, b=2)
    assert [r["kind"] for r in d["added"]] == ["strip_prefix"] and d["removed"] == [] and len(d["kept"]) == 1
    assert httpx.get(f"{stack.url}/api/v1/functions/{HOOKS_FN}/hooks/diff", params={"a": 1, "b": 99}).status_code == 404

    path = f"/api/v1/functions/{HOOKS_FN}/hooks/rollback"
    assert stack.post(path, {"to": 1}, token=None).status_code == 401
    assert stack.post(path, {"to": 1}, token="wrong-token").status_code == 401
    assert stack.post(path, {"to": 1}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert stack.post(path, {"to": 999}).status_code == 404
    latest = versions[-1]["version"]
    assert stack.post(path, {"to": latest}).status_code == 409, "already at that version"

    resp = stack.post(path, {"to": 1})
    assert resp.status_code == 202, resp.text
    new = resp.json()["version"]
    assert new == latest + 1
    # It shows once read back from the hooks topic, and the processor adopts it.
    got = wait_until(lambda: next((v for v in stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks")["versions"] if v["version"] == new), None),
                     timeout=30, what="the rollback read back from the topic")
    assert got["rollback_of"] == 1 and got["parent_version"] == latest
    assert [r["kind"] for r in got["rules"]] == ["replace_phrase"]
    assert "strip_prefix" in [r["kind"] for r in got["vetoed"]]
    on_topic = events.decode("hooks", latest_by_key(_topic(stack, "hooks"))[HOOKS_FN.encode()])
    assert on_topic.version == new and on_topic.rollback_of == 1
    wait_until(lambda: Scrape.fetch(stack.metrics_url).total("vt_hook_version", function=HOOKS_FN) == new, timeout=30,
               what="the processor to adopt the rollback")


def test_dead_letters_browse_and_replay(stack: Stack) -> None:
    page = stack.get("/api/v1/dlq", reason="malformed_json", limit=500)
    assert page["total"] == page["by_reason"]["malformed_json"] and all(x["error_type"] == "malformed_json" for x in page["items"])
    hostile = next(x for x in page["items"] if HOSTILE in x["preview"] and x["key"] == HOSTILE_FN)
    assert hostile["key"] == HOSTILE_FN and hostile["source_topic"] == stack.names.physical("executions")
    assert stack.get("/api/v1/dlq", since="2000-01-01T00:00:00Z")["total"] == stack.get("/api/v1/dlq")["total"]
    assert httpx.get(f"{stack.url}/api/v1/dlq", params={"since": "yesterday-ish"}).status_code == 422
    assert httpx.get(f"{stack.url}/api/v1/dlq", params={"reason": "<b>"}).status_code == 422

    assert stack.post("/api/v1/dlq/replay", {"ids": [hostile["id"]]}, token=None).status_code == 401
    assert stack.post("/api/v1/dlq/replay", {}).status_code == 422, "a filter is required"
    null = stack.get("/api/v1/dlq", reason="null_value")["items"][0]
    value = base64.b64decode(base64.b64encode(hostile["preview"].encode()))
    before = sum(1 for r in _topic(stack, "executions") if r.value == value)
    seen = stack.get("/api/v1/dlq")["seen"]
    resp = stack.post("/api/v1/dlq/replay", {"ids": [hostile["id"], null["id"]]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["replayed"] == [hostile["id"]] and [s["id"] for s in body["skipped"]] == [null["id"]]
    # The value is on its source topic again, with its key; still malformed, it is dead-lettered again.
    again = [r for r in _topic(stack, "executions") if r.value == value]
    assert len(again) == before + 1 and again[-1].key == HOSTILE_FN.encode()
    wait_until(lambda: stack.get("/api/v1/dlq")["seen"] == seen + 1, timeout=30, what="the replayed value dead-lettered again")


def test_dlq_replay_command(stack: Stack) -> None:
    env = {"VT_BOOTSTRAP": stack.bootstrap, "VT_TOPIC_PREFIX": stack.prefix, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "stream.cli", "dlq", "replay"]
    dry = subprocess.run([*cmd, "--reason", "missing_field", "--since", "1d", "--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr
    n = stack.get("/api/v1/dlq", reason="missing_field")["total"]
    assert f"{n} dead letter(s) matched; would replay {n}" in dry.stdout
    seen = stack.get("/api/v1/dlq")["seen"]
    real = subprocess.run([*cmd, "--reason", "missing_field"], capture_output=True, text=True, env=env, timeout=120)
    assert real.returncode == 0 and f"replayed {n}, skipped 0" in real.stdout, real.stdout + real.stderr
    wait_until(lambda: stack.get("/api/v1/dlq")["seen"] >= seen + n, timeout=30, what="replayed values dead-lettered again")
    bad = subprocess.run([*cmd, "--reason", "not_a_reason"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "unknown reason" in bad.stderr
    assert subprocess.run([*cmd], capture_output=True, text=True, env=env, timeout=60).returncode == 2


def test_training_jobs_and_cancel(stack: Stack) -> None:
    overview = stack.get("/api/v1/functions")["functions"]
    fn = next(f["name"] for f in overview if f["last_job"])
    t = stack.get(f"/api/v1/functions/{fn}/training")
    job = t["jobs"][0]
    assert job["status"] == "exported" and job["n_train"] > 0 and job["est_tokens"] > 0 and job["est_cost_usd"] >= 0
    assert t["golden"] == next(f for f in overview if f["name"] == fn)["golden_steady"] + next(f for f in overview if f["name"] == fn)["golden_anomaly"]
    assert stack.post(f"/api/v1/functions/{fn}/training/cancel").status_code == 404, "no job in flight"

    # A job in flight (as a trainer reports it on vt.training), with a loss curve.
    at = datetime.now(UTC)
    evs = [events.TrainingEvent(job_id="job-live-1", function_name="train_fn", trainer="openai", base_model="gpt-4o-mini",
                                status="running", at=at, n_train=40, n_val=5, est_tokens=9000, est_cost_usd=0.027,
                                metrics=events.TrainingMetrics(step=s, train_loss=2.0 / s, valid_loss=2.2 / s)) for s in (1, 2, 3)]
    stack.produce([Labelled("training", b"train_fn", events.encode(e), None, "training") for e in evs])  # type: ignore[arg-type]
    got = wait_until(lambda: [j for j in stack.get("/api/v1/functions/train_fn/training")["jobs"] if j["active"]], timeout=30,
                     what="the running job")
    assert [p["step"] for p in got[0]["loss"]] == [1, 2, 3] and got[0]["loss"][1]["train_loss"] == 1.0
    assert stack.post("/api/v1/functions/train_fn/training/cancel", token=None).status_code == 401
    resp = stack.post("/api/v1/functions/train_fn/training/cancel")
    assert resp.status_code == 202 and resp.json()["job_id"] == "job-live-1"
    wait_until(lambda: stack.cancel_reached_processor("train_fn", "job-live-1"), timeout=20, what="the cancel request")


def test_read_only_console_says_so_and_changes_nothing(stack: Stack) -> None:
    url = stack.start_console(token=None, state_dir=False)
    status = stack.get("/api/v1/status", url=url)
    assert status["read_only"] is True and status["state_dir"] is False
    resp = stack.post(f"/api/v1/functions/{HOOKS_FN}/hooks/rollback", {"to": 1}, url=url)
    assert resp.status_code == 403 and "read-only" in resp.json()["detail"]
    assert stack.post("/api/v1/dlq/replay", {"reason": "oversize"}, url=url).status_code == 403
    assert "read-only" in httpx.get(f"{url}/", timeout=10).text
    assert httpx.get(f"{url}/api/v1/functions/{HOSTILE_FN}/map", timeout=10).status_code == 409


def test_bad_input_never_crashes_the_console(stack: Stack) -> None:
    weird = ["%00", "..%2F..%2Fetc", "é" * 300, "<script>", "a" * 5000, " ", "%F0%9F%92%A5"]
    for name in weird:
        for sub in ("golden", "golden.jsonl", "hooks", "training", "map"):
            r = httpx.get(f"{stack.url}/api/v1/functions/{name}/{sub}", timeout=10)
            assert r.status_code < 500, (name, sub, r.status_code)
        r = stack.post(f"/api/v1/functions/{name}/hooks/rollback", {"to": 1})
        assert r.status_code in (404, 422), (name, r.status_code)
    for params in ({"limit": 0}, {"limit": "x"}, {"offset": -1}, {"strategy": "weird"}, {"q": "x" * 600}):
        assert httpx.get(f"{stack.url}/api/v1/functions/{HOSTILE_FN}/golden", params=params).status_code == 422
    raw = httpx.post(f"{stack.url}/api/v1/dlq/replay", content=b"{not json", timeout=10,
                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert raw.status_code == 422
    assert stack.post(f"/api/v1/functions/{HOOKS_FN}/hooks/rollback", {"to": "one"}).status_code == 422
    assert stack.get("/api/v1/status")["caught_up"], "still serving"
    page = httpx.get(f"{stack.url}/functions/%3Cscript%3Ealert(1)%3Cb%3E", timeout=10)
    assert page.status_code == 200 and "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)" in page.text
    assert "Content-Security-Policy" in page.headers
    assert TOKEN not in stack.console_log(), "the token never reaches the log"
    assert msgspec.json.decode(httpx.get(f"{stack.url}/openapi.json").content)["info"]["version"] == "1.0.0"
