"""Engine 2 on the real embedded broker: releases on vt.hooks, the runtime hook client, recovery."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from processors.feedback.processor import FeedbackProcessor
from processors.feedback.ruleset import AddSuffix, ReplacePhrase
from stream.client.hook_client import HookClient
from stream.contract import events
from stream.contract.config import FeedbackSettings
from stream.contract.hooks.generator import HookScriptGenerator
from stream.contract.hooks.release import build_release
from stream.runtime.kafka import read_topic
from stream.runtime.sensors import PrometheusSensors
from stream.tools.hooks import publish_release
from stream.tools.traffic import Labelled, TrafficGenerator, produce_traffic
from tests.support.feedback import feedback_event, uuids
from tests.support.runtime import metric, running, wait_for

pytestmark = pytest.mark.broker

KEY = "broker-test-signing-key"
FAST = FeedbackSettings(debounce_s=0.3, max_delay_s=2.0)


def _feedback(seed: int, events_: int) -> list[Labelled]:
    return [item for item in TrafficGenerator(seed=seed, feedback_ratio=0.1).take(events_) if item.topic == "feedback"]


async def _produce(settings, items) -> int:  # type: ignore[no-untyped-def]
    return await produce_traffic(settings.bootstrap, lambda t: f"{settings.topic_prefix}{t}", items)


def _processor(settings, registry: CollectorRegistry | None = None) -> FeedbackProcessor:  # type: ignore[no-untyped-def]
    sensor = PrometheusSensors(registry).feedback if registry is not None else None
    return FeedbackProcessor(settings.feedback, store_dir=settings.state_dir / "hooks", signing_key=KEY, sensor=sensor)


async def test_releases_reach_the_client_which_hot_swaps_and_refuses_forgeries(make_settings, topics, tmp_path: Path) -> None:
    settings = make_settings(feedback=FAST)
    registry = CollectorRegistry()
    proc = _processor(settings, registry)  # its sensor reports into the runtime's ``registry``
    client = HookClient(settings.bootstrap, topic=topics.physical("hooks"), cache_dir=tmp_path / "cache", signing_key=KEY).start()

    @client.hook("summarize_ticket")
    async def summarize(messages: list[dict[str, str]]) -> str:
        assert messages[0]["role"] == "system"  # the client added the instructions
        return "Hello! Thanks for reaching out. The customer was double charged."

    try:
        await _produce(settings, _feedback(seed=21, events_=3000))
        async with running(settings, [proc], registry=registry) as rt:
            await wait_for(lambda: client.version("summarize_ticket") >= 1, timeout=60, what="v1 at the client")
            assert await summarize([{"role": "user", "content": "ticket"}]) == "The client was double charged."
            assert metric(rt, "vt_hook_version", function="summarize_ticket") == 1
            assert metric(rt, "vt_feedback_pairs_total") > 100

            # A new release arrives on the topic: the client swaps to it while the service runs.
            v1 = proc.current("summarize_ticket")
            assert v1 is not None
            v2 = build_release(HookScriptGenerator(), function_name="summarize_ticket", version=2,
                               rules=[*v1.rules, AddSuffix(text=" (auto-summary)")], validation=v1.validation,
                               created_at=v1.created_at, parent_version=1, signing_key=KEY)
            await publish_release(settings.bootstrap, topics, v2)
            await wait_for(lambda: client.version("summarize_ticket") == 2, timeout=30, what="v2 at the client")
            assert await summarize([{"role": "user", "content": "ticket"}]) == "The client was double charged. (auto-summary)"
            await wait_for(lambda: metric(rt, "vt_hook_version", function="summarize_ticket") == 2, what="processor adopts v2")

            # Forgeries: a wrong digest and a wrong signature are refused by the client and dead-lettered by the processor.
            bad_digest = build_release(HookScriptGenerator(), function_name="summarize_ticket", version=3,
                                       rules=[ReplacePhrase(old="client", new="victim")], validation=v1.validation,
                                       created_at=v1.created_at, parent_version=2, signing_key=KEY)
            bad_digest.sha256 = "0" * 64
            bad_key = build_release(HookScriptGenerator(), function_name="summarize_ticket", version=3,
                                    rules=[ReplacePhrase(old="client", new="victim")], validation=v1.validation,
                                    created_at=v1.created_at, parent_version=2, signing_key="attacker-key")
            await publish_release(settings.bootstrap, topics, bad_digest)
            await publish_release(settings.bootstrap, topics, bad_key)
            await wait_for(lambda: client.rejected["bad_sha256"] == 1 and client.rejected["bad_signature"] == 1, what="refusals")
            await wait_for(lambda: metric(rt, "vt_dead_letters_total", topic="hooks", reason="invalid_value") == 2, what="2 dead letters")
            assert client.version("summarize_ticket") == 2
            assert proc.current("summarize_ticket").version == 2  # type: ignore[union-attr]
    finally:
        client.close()

    letters = [msgspec.json.decode(r.value, type=events.DeadLetter) for r in await read_topic(settings.bootstrap, topics.physical("dlq"))]
    assert sorted("bad_sha256" in d.error or "bad_signature" in d.error for d in letters) == [True, True]
    assert all(KEY not in d.error and "attacker-key" not in d.error for d in letters)

    # Offline: a new client without any broker serves the last version it cached.
    offline = HookClient(None, cache_dir=tmp_path / "cache", signing_key=KEY)
    assert offline.version("summarize_ticket") == 2 and offline.version("answer_faq") >= 1
    assert offline.apply_output("summarize_ticket", "The customer left.") == "The client left. (auto-summary)"
    # ...and a cache it cannot verify (another key) is not trusted.
    assert HookClient(None, cache_dir=tmp_path / "cache", signing_key="other").version("summarize_ticket") == 0


async def test_a_new_instance_with_another_state_dir_continues_the_version_line(make_settings, topics, tmp_path: Path) -> None:
    """The partitions move to an instance without checkpoints: it rebuilds from the topics, versions stay monotonic."""
    first = make_settings(feedback=FAST)
    await _produce(first, _feedback(seed=22, events_=2500))
    proc = _processor(first)
    async with running(first, [proc]):
        await wait_for(lambda: all(proc.current(fn) for fn in ("summarize_ticket", "answer_faq", "translate_ko_en")),
                       timeout=60, what="v1 of every function")
        await asyncio.sleep(0.5)
    # New systematic correction for one function, read by an instance that has no state at all.
    extra = [feedback_event("answer_faq", f"Your ticket {i} is closed. I hope this helps! Let me know if you have any other questions.",
                            f"Your case {i} is closed. -- Support Team", u, minute=900 + i)
             for i, u in enumerate(uuids(25, tag="five"))]
    await _produce(first, [Labelled("feedback", b"answer_faq", events.encode(f), f, "feedback") for f in extra])
    second = first.replace(state_dir=tmp_path / "elsewhere")
    proc2 = _processor(second)
    async with running(second, [proc2]):
        await wait_for(lambda: getattr(proc2.current("answer_faq"), "version", 0) >= 2, timeout=60, what="v2 of answer_faq")
    release = proc2.current("answer_faq")
    assert release is not None and release.parent_version == 1 and release.version == 2
    assert any(isinstance(r, ReplacePhrase) and (r.old, r.new) == ("ticket", "case") for r in release.rules)
    assert proc2.current("summarize_ticket").version == 1  # type: ignore[union-attr]  # learnt from the topic, not re-released
    hooks = await read_topic(first.bootstrap, topics.physical("hooks"))
    versions = sorted((r.key, msgspec.json.decode(r.value)["version"]) for r in hooks)
    assert versions.count((b"answer_faq", 1)) == 1 and versions.count((b"answer_faq", 2)) == 1


def test_client_swaps_atomically_under_concurrent_calls(tmp_path: Path) -> None:
    """Each call sees one version's rules, never a mix, while releases are swapped under it."""
    gen = HookScriptGenerator()
    client = HookClient(None, signing_key=None)
    releases = [
        build_release(gen, function_name="fn", version=v, rules=[ReplacePhrase(old="body", new=f"body{v}"), AddSuffix(text=f" S{v}")],
                      validation=events.HookValidation(pairs=1), created_at=events.utcnow(), parent_version=None)
        for v in range(1, 41)
    ]

    @client.hook("fn")
    def call(messages: list[dict[str, str]]) -> str:
        return "the body"

    results: list[str] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            results.append(call([{"role": "user", "content": "x"}]))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for release in releases:
        assert client.offer(events.encode(release))
    stop.set()
    for t in threads:
        t.join()
    assert client.version("fn") == 40 and not client.offer(releases[5])  # older versions are ignored
    assert len(results) > 40
    for out in results:
        if out == "the body":
            continue  # before the first release
        words = out.split()
        # Both rules come from the same version: "the body7 S7", never "the body7 S8".
        assert words[1] == f"body{words[2][1:]}", out


def test_a_tombstone_removes_the_hook_from_client_and_processor(tmp_path: Path) -> None:
    gen = HookScriptGenerator()
    release = build_release(gen, function_name="fn", version=1, rules=[ReplacePhrase(old="a", new="b")],
                            validation=events.HookValidation(pairs=1), created_at=events.utcnow(), parent_version=None)
    client = HookClient(None, cache_dir=tmp_path / "cache", signing_key=None)
    assert client.offer(events.encode(release)) and client.version("fn") == 1
    client.forget("fn")
    assert client.version("fn") == 0 and client.apply_output("fn", "a") == "a"
    assert HookClient(None, cache_dir=tmp_path / "cache", signing_key=None).version("fn") == 0

    from stream.contract.processing import Record

    proc = FeedbackProcessor(FeedbackSettings(), store_dir=tmp_path / "hooks")
    proc.load_state("hooks", 0, None)
    proc.process([Record("hooks", 0, 0, b"fn", release, events.encode(release))])
    assert proc.current("fn") is not None
    assert proc.process([Record("hooks", 0, 1, b"fn", None, None)]).rejected == []
    assert proc.current("fn") is None
