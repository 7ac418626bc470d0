"""The runtime hook client cannot die: verification is safe in many threads, one bad record
(whatever it raises) is counted and skipped, consumer errors reconnect, health is visible."""

from __future__ import annotations

import ast
import asyncio
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from stream.contract.hooks import generator as hookgen
from stream.contract.hooks.generator import HookScriptGenerator
from stream.contract.hooks.release import BAD_MODULE, ReleaseError, build_release, sha256_hex, verify_release
from stream.client import hook_client as hook_client_module
from stream.contract.events import HookRelease, HookValidation, encode
from stream.client.hook_client import CALLBACK_ERROR, INTERNAL_ERROR, HookClient
from aiokafka import AIOKafkaConsumer

from stream.contract.hooks.rules import AddSuffix, ReplacePhrase

from stream.tools.hooks import publish_release
from tests.support.runtime import wait_for

KEY = "client-test-signing-key"


def _release(version: int, suffix: str, *, function_name: str = "fn", key: str | None = KEY) -> HookRelease:
    return build_release(
        HookScriptGenerator(), function_name=function_name, version=version,
        rules=[ReplacePhrase(old="customer", new="client"), AddSuffix(text=suffix)],
        validation=HookValidation(pairs=1), created_at=datetime(2026, 1, 1), parent_version=version - 1 or None,
        signing_key=key,
    )


def _poison_version_2(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """The client's verification raises ``error`` (not a ReleaseError) for every version-2 release."""
    real_verify = hook_client_module.verify_release

    def verify_or_blow_up(release: HookRelease, *a: Any) -> None:
        if release.version == 2:
            raise error
        real_verify(release, *a)

    monkeypatch.setattr(hook_client_module, "verify_release", verify_or_blow_up)


def test_verification_needs_no_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the client runs on received bytes never calls ast.parse (CPython 3.11's parser is not thread-safe)."""
    good, forged = _release(1, " (a)"), _release(1, " (a)")
    forged.module_source = forged.module_source.replace("def apply_output", "def apply_output_evil")
    forged.sha256 = sha256_hex(forged.module_source)  # a consistent digest: only the code gives it away
    gen = HookScriptGenerator()

    def no_parse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("ast.parse called while verifying a release")

    refused: ReleaseError | None = None
    with monkeypatch.context() as patched:  # undone before pytest itself parses anything
        patched.setattr(ast, "parse", no_parse)
        verify_release(good, gen, KEY)
        try:
            verify_release(forged, gen, None)
        except ReleaseError as exc:
            refused = exc
    assert refused is not None and refused.reason == BAD_MODULE and "template code differs" in str(refused)


def test_verification_and_rendering_from_eight_threads_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 threads verify (good and forged) while 4 more render modules: all answers right, parses never overlap."""
    real_parse = ast.parse
    inside = 0
    most_inside = 0
    count_lock = threading.Lock()

    def counting_parse(*a: Any, **k: Any) -> Any:
        nonlocal inside, most_inside
        with count_lock:
            inside += 1
            most_inside = max(most_inside, inside)
        try:
            return real_parse(*a, **k)
        finally:
            with count_lock:
                inside -= 1

    monkeypatch.setattr(hookgen.ast, "parse", counting_parse)
    gen = HookScriptGenerator()
    good = [_release(v, f" (v{v})") for v in range(1, 6)]
    forged = []
    for v in range(1, 6):
        bad = _release(v, f" (v{v})")
        bad.rules = [ReplacePhrase(old="customer", new="victim")]  # rules the digest does not cover
        forged.append(bad)
    failures: list[BaseException] = []
    verified = rendered = 0
    tally = threading.Lock()

    def verifier(seed: int) -> None:
        nonlocal verified
        done = 0
        try:
            for i in range(2000):
                verify_release(good[(seed + i) % 5], gen, KEY)
                try:
                    verify_release(forged[(seed + i) % 5], gen, None)
                except ReleaseError as exc:
                    assert exc.reason == BAD_MODULE
                else:
                    raise AssertionError("a forged release was accepted")
                done += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        with tally:
            verified += done

    def renderer(seed: int) -> None:
        nonlocal rendered
        done = 0
        try:
            for i in range(120):
                version = 10 + seed * 1000 + i
                source = gen.render("fn", version, [AddSuffix(text=f" #{i}")])
                assert gen.extract(source).version == version
                done += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        with tally:
            rendered += done

    threads = [threading.Thread(target=verifier, args=(n,)) for n in range(8)]
    threads += [threading.Thread(target=renderer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert verified == 8 * 2000 and rendered == 4 * 120
    assert most_inside == 1, "two ast.parse calls ran at the same time"


def test_a_poisoned_record_is_counted_and_the_next_good_release_still_applies(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _poison_version_2(monkeypatch, SystemError("AST constructor recursion depth mismatch (before=54, after=28)"))
    client = HookClient(None, signing_key=KEY)
    assert client.offer(encode(_release(1, " (v1)")))
    with caplog.at_level(logging.ERROR, logger=hook_client_module.log.name):
        for _ in range(3):  # the same poison again and again: counted each time, logged once
            assert client.offer(encode(_release(2, " (v2)"))) is False
    assert len([r for r in caplog.records if "SystemError" in r.getMessage()]) == 1, caplog.text
    assert client.offer(encode(_release(3, " (v3)")))
    assert client.version("fn") == 3 and client.apply_output("fn", "The customer.") == "The client. (v3)"
    assert client.rejected == {INTERNAL_ERROR: 3}
    assert client.last_error is not None and "SystemError" in client.last_error and "v2" in client.last_error
    assert KEY not in client.last_error


def test_a_failing_callback_is_counted_and_the_release_stays_applied() -> None:
    def on_update(_hook: Any) -> None:
        raise RuntimeError("the service's callback broke")

    client = HookClient(None, signing_key=KEY, on_update=on_update)
    assert client.offer(_release(1, " (v1)"))
    assert client.version("fn") == 1 and client.rejected == {CALLBACK_ERROR: 1}


def test_a_broken_cache_file_does_not_stop_the_client(tmp_path: Path) -> None:
    HookClient(None, signing_key=KEY, cache_dir=tmp_path).offer(_release(1, " (v1)"))
    (tmp_path / "zz-broken.json").write_bytes(b"\xff\xfe not json")
    client = HookClient(None, signing_key=KEY, cache_dir=tmp_path)
    assert client.version("fn") == 1 and client.rejected == {"decode_error": 1}


@pytest.mark.broker
async def test_following_survives_poison_and_consumer_errors_and_reports_health(
    make_settings, topics, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """On a real broker: a poisoned record between two good ones, then the consumer itself fails once."""
    settings = make_settings()

    _poison_version_2(monkeypatch, KeyError("unexpected"))
    fail_next = threading.Event()

    class FlakyConsumer(AIOKafkaConsumer):  # type: ignore[misc]
        async def getmany(self, *a: Any, **k: Any) -> Any:
            if fail_next.is_set():
                fail_next.clear()
                raise RuntimeError("consumer fell over")
            return await super().getmany(*a, **k)

    monkeypatch.setattr(hook_client_module, "AIOKafkaConsumer", FlakyConsumer)
    client = HookClient(settings.bootstrap, topic=topics.physical("hooks"), signing_key=KEY)
    assert client.healthy is False and client.health().connected is False
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop, retry_s=0.2))
    try:
        for version in (1, 2, 3):
            await publish_release(settings.bootstrap, topics, _release(version, f" (v{version})"))
        await wait_for(lambda: client.version("fn") == 3, timeout=30, what="v3 after the poisoned v2")
        assert client.rejected == {INTERNAL_ERROR: 1} and client.healthy
        health = client.health()
        assert health.versions == {"fn": 3} and health.last_record_at is not None and "KeyError" in (health.last_error or "")
        # The consumer itself raises (not a KafkaError): the client reconnects and keeps following.
        fail_next.set()
        await wait_for(lambda: client.reconnects >= 1, timeout=10, what="a reconnect after the consumer failure")
        assert "consumer fell over" in (client.last_error or "")
        await publish_release(settings.bootstrap, topics, _release(4, " (v4)"))
        await wait_for(lambda: client.version("fn") == 4, timeout=30, what="v4 after the reconnect")
        await wait_for(lambda: client.healthy, timeout=10, what="healthy again")
        assert client.rejected == {INTERNAL_ERROR: 2}  # v2 once more: the new consumer re-read the topic
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def test_a_release_of_the_first_template_is_verified_without_a_parser_and_hot_swapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A version-1 release published before the template changed still verifies (against the frozen
    v1 template, without ast.parse) and applies; a later version-2 release with a token rule replaces it."""
    gen = HookScriptGenerator()
    old = build_release(
        gen.for_version(1), function_name="fn", version=1, rules=[ReplacePhrase(old="customer", new="client")],
        validation=HookValidation(pairs=1), created_at=datetime(2026, 1, 1), parent_version=None, signing_key=KEY,
    )
    client = HookClient(None, signing_key=KEY)

    def no_parse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("ast.parse called while verifying a release")

    with monkeypatch.context() as patched:
        patched.setattr(ast, "parse", no_parse)
        assert client.offer(encode(old))
    assert client.apply_output("fn", "The customer.") == "The client."
    from stream.contract.hooks.rules import RewriteToken

    new = build_release(
        gen, function_name="fn", version=2, rules=[RewriteToken(token="number", out="#{text}", after="Ticket")],
        validation=HookValidation(pairs=1), created_at=datetime(2026, 1, 2), parent_version=1, signing_key=KEY,
    )
    assert client.offer(encode(new))
    assert client.apply_output("fn", "Ticket 12 for the customer.") == "Ticket #12 for the customer."
