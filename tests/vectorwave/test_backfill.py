"""Backfill of stored VectorWave executions: each produced exactly once, across interruptions."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from stream.contract import events
from stream.runtime.kafka import read_topic
from stream.vectorwave_bridge.backfill import Backfill, CursorError, CursorFile, VectorWaveExecutions, parse_since
from tests.support import ROOT
from tests.support.vectorwave import LiteStore, hashing_vector

pytestmark = pytest.mark.broker

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _execution(i: int, ts: datetime, fn: str = "summarize") -> tuple[str, dict, list[float]]:
    """An execution as VectorWave's tracer stores it (return value JSON-encoded, inputs top-level)."""
    text = f"ticket {i % 7} about invoice {i}"
    props = {
        "trace_id": str(uuid.uuid4()), "span_id": str(uuid.uuid4()), "parent_span_id": None,
        "function_name": fn, "function_uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, fn)),
        "timestamp_utc": ts.isoformat(), "duration_ms": 10.0 + i, "status": "SUCCESS",
        "error_message": None, "error_code": None, "return_value": json.dumps(f"summary {i}"),
        "exec_source": "REALTIME", "ticket": text, "n": i,
    }
    return str(uuid.uuid4()), props, hashing_vector(text)


def _store(lite: LiteStore, rows: list[tuple[str, dict, list[float]]]) -> None:
    before = len(lite.executions())
    for u, props, vec in rows:
        lite.add_execution(u, props, vec)
    assert len(lite.wait_executions(before + len(rows))) == before + len(rows)


def _dataset() -> list[tuple[str, dict, list[float]]]:
    rows = [_execution(i, T0 + timedelta(seconds=i)) for i in range(150)]
    rows += [_execution(1000 + i, T0 + timedelta(seconds=40)) for i in range(60)]  # 60 share one timestamp
    u, bad, vec = _execution(5000, T0 + timedelta(seconds=70), fn="bad/name")  # not a valid function name
    rows.append((u, bad, vec))
    return rows


async def _topic_uuids(settings, topics) -> tuple[Counter, Counter]:
    execs = await read_topic(settings.bootstrap, topics.physical("executions"))
    logs = [msgspec.json.decode(r.value, type=events.ExecutionLog) for r in execs]
    letters = [msgspec.json.decode(r.value, type=events.DeadLetter) for r in await read_topic(settings.bootstrap, topics.physical("dlq"))]
    import base64

    dead = Counter(json.loads(base64.b64decode(d.value_b64))["uuid"] for d in letters)
    return Counter(log.uuid for log in logs), dead


def _backfill(settings, topics, lite: LiteStore, cursor: Path, **kw) -> Backfill:
    source = VectorWaveExecutions.configured()
    return Backfill(
        source, CursorFile(cursor), bootstrap=settings.bootstrap, names=topics, since=kw.pop("since", T0 - timedelta(hours=1)),
        page_size=kw.pop("page_size", 25), overlap_s=kw.pop("overlap_s", 30.0), **kw,
    )


class Interrupted(Exception):
    pass


async def test_backfill_produces_each_execution_once_across_interruptions(make_settings, topics, lite: LiteStore, tmp_path: Path) -> None:
    settings = make_settings()
    rows = _dataset()
    _store(lite, rows)
    cursor = tmp_path / "cursor.json"

    # Run 1 dies at the worst moment: page 3 acknowledged by the broker, cursor not yet advanced.
    pages = 0

    def die_on_third(_page) -> None:
        nonlocal pages
        pages += 1
        if pages == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        await _backfill(settings, topics, lite, cursor).run(on_page=die_on_third)
    saved = CursorFile(cursor).load()
    # (A page holds at most 25 new records; fewer when ties on one timestamp come back in another order.)
    assert saved is not None and saved.inflight is not None and 0 < len(saved.inflight.records) <= 25
    in_flight = len(saved.inflight.records)

    # Run 2 settles the page in flight (all of it had arrived), then stops at --limit.
    r2 = await _backfill(settings, topics, lite, cursor, since=None).run(limit=40)
    assert r2.resumed and r2.recovered == in_flight and r2.produced + r2.dead_lettered == 40 and not r2.finished

    # Run 3 finishes.
    r3 = await _backfill(settings, topics, lite, cursor, since=None).run()
    assert r3.finished

    produced, dead = await _topic_uuids(settings, topics)
    valid = {u for u, p, _ in rows if "/" not in p["function_name"]}
    assert set(produced) == valid and max(produced.values()) == 1, "an execution is missing or duplicated"
    assert list(dead.elements()) == [rows[-1][0]]  # the bad record: dead-lettered once, not dropped
    final = CursorFile(cursor).load()
    assert final.inflight is None and final.produced == len(valid) and final.dead_lettered == 1

    # The mapping carried the stored vector and decoded the return value.
    logs = {msgspec.json.decode(r.value, type=events.ExecutionLog).uuid: msgspec.json.decode(r.value, type=events.ExecutionLog)
            for r in await read_topic(settings.bootstrap, topics.physical("executions"))}
    u, props, vec = rows[0]
    assert logs[u].return_value == "summary 0" and logs[u].inputs == {"ticket": props["ticket"], "n": 0}
    assert logs[u].vector == pytest.approx(vec, abs=1e-6)

    # Later: a late write behind the cursor (inside the overlap) and new executions arrive.
    late = [_execution(7000, T0 + timedelta(seconds=140))]
    newer = [_execution(8000 + i, T0 + timedelta(seconds=200 + i)) for i in range(10)]
    _store(lite, late + newer)
    r4 = await _backfill(settings, topics, lite, cursor, since=None).run()
    assert r4.produced == 11 and r4.finished
    produced, _ = await _topic_uuids(settings, topics)
    assert set(produced) == valid | {u for u, _, _ in late + newer} and max(produced.values()) == 1


async def test_interrupted_page_that_never_reached_the_broker_is_sent_again(make_settings, topics, lite: LiteStore, tmp_path: Path) -> None:
    settings = make_settings()
    rows = [_execution(i, T0 + timedelta(seconds=i)) for i in range(30)]
    _store(lite, rows)
    cursor = CursorFile(tmp_path / "cursor.json")
    backfill = _backfill(settings, topics, lite, cursor.path, page_size=10)

    # Simulate a crash between the write-ahead and the send: the page is recorded, nothing sent.
    await backfill.run(limit=10)
    state = cursor.load()
    page = {u: T0 + timedelta(seconds=i) for i, (u, _, _) in enumerate(rows[10:20], start=10)}
    from stream.vectorwave_bridge.backfill import Inflight

    ends = {topics.physical("executions"): {p: 0 for p in range(3)}, topics.physical("dlq"): {p: 0 for p in range(3)}}
    state.inflight = Inflight(records=page, offsets=ends)
    cursor.save(state)

    report = await _backfill(settings, topics, lite, cursor.path, since=None, page_size=10).run()
    assert report.recovered == 0 and report.finished
    produced, _ = await _topic_uuids(settings, topics)
    assert set(produced) == {u for u, _, _ in rows} and max(produced.values()) == 1


async def test_cursor_refuses_another_since_or_store(make_settings, topics, lite: LiteStore, tmp_path: Path) -> None:
    settings = make_settings()
    _store(lite, [_execution(0, T0)])
    cursor = tmp_path / "cursor.json"
    await _backfill(settings, topics, lite, cursor).run()
    with pytest.raises(CursorError, match="--since"):
        _backfill(settings, topics, lite, cursor, since=T0 - timedelta(days=3)).open_cursor()
    other = Backfill(
        VectorWaveExecutions(VectorWaveExecutions.configured().store, "Elsewhere"), CursorFile(cursor),
        bootstrap=settings.bootstrap, names=topics, since=None,
    )
    with pytest.raises(CursorError, match="belongs to"):
        other.open_cursor()
    fresh = _backfill(settings, topics, lite, cursor, since=T0 - timedelta(days=3), restart=True)
    assert fresh.open_cursor()[1] is False


def test_parse_since() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_since("2026-01-31T12:00:00+02:00") == datetime(2026, 1, 31, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("last tuesday")


def _cli(settings, lite: LiteStore, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "stream.cli", "import", "vectorwave", "--bootstrap", settings.bootstrap,
        "--topic-prefix", settings.topic_prefix, "--state-dir", str(settings.state_dir), "--lite-path", str(lite.path), *args,
    ]


async def test_cli_import_killed_mid_run_then_resumed_produces_each_once(make_settings, topics, lite: LiteStore, tmp_path: Path) -> None:
    settings = make_settings()
    rows = [_execution(i, T0 + timedelta(milliseconds=250 * i)) for i in range(400)]
    _store(lite, rows)
    cursor = CursorFile(settings.state_dir / "vectorwave" / "import-cursor.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    # First run: SIGKILL (no chance to clean up) once it is well under way.
    proc = subprocess.Popen(_cli(settings, lite, "--since", "2026-03-01", "--page-size", "7"), env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        state = cursor.load() if cursor.path.exists() else None
        if state is not None and state.produced >= 60:
            break
        await asyncio.sleep(0.02)
    assert proc.poll() is None, f"the import ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = cursor.load()
    assert 60 <= killed_at.produced < 400

    # Second run: --limit stops it part-way; third run: same command, no --since, finishes.
    second = subprocess.run(_cli(settings, lite, "--since", "2026-03-01", "--limit", "100"), env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resuming at" in second.stderr and "stopped after --limit 100" in second.stdout
    third = subprocess.run(_cli(settings, lite), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert "caught up" in third.stdout

    produced, dead = await _topic_uuids(settings, topics)
    assert set(produced) == {u for u, _, _ in rows} and max(produced.values()) == 1, "an execution is missing or duplicated"
    assert not dead
    assert cursor.load().produced == 400

    # A different --since without --restart is refused with a clear message (exit 2).
    other = subprocess.run(_cli(settings, lite, "--since", "2025-01-01"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "--restart" in other.stderr
