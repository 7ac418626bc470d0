"""The optional LLM rule proposer, through the real openai SDK against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from processors.feedback.llm import LLMRuleProposer, parse_proposals
from processors.feedback.pairs import Pair, split
from processors.feedback.processor import FeedbackProcessor
from processors.feedback.ruleset import ReplacePhrase, StripSuffix, rule_key
from processors.feedback.synthesizer import RuleSetSynthesizer
from stream.contract.config import FeedbackSettings
from stream.contract.events import HookRelease, decode, encode
from stream.contract.processing import Record
from tests.support.feedback import feedback_event, uuids
from tests.support.loopback_http import LoopbackServer


class FakeLLM(LoopbackServer):
    """A tiny OpenAI-compatible chat-completions server on loopback; answers with a fixed proposal."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self._serve()

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        if method != "POST" or h.path != "/v1/chat/completions":
            h.send_response(404)
            h.end_headers()
            return
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        self.requests.append(body)
        self.auth.append(h.headers.get("Authorization", ""))
        payload = json.dumps({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": self.answer}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)


# The model proposes one good rule, one harmful rule, one malformed rule and one of an unknown kind.
ANSWER = json.dumps({"rules": [
    {"kind": "replace_phrase", "old": "kindly", "new": "please"},
    {"kind": "replace_phrase", "old": "the", "new": "a"},
    {"kind": "replace_phrase", "old": "", "new": "x"},
    {"kind": "run_python", "code": "__import__('os').system('id')"},
]})


def _pairs() -> list[Pair]:
    # Users fix "kindly" and the garbled word glued to it in one go, so every diff proposal is a different
    # phrase ("kindly-check0" → "please check", ...) with support 1 (the diff cuts edits only where
    # whitespace separates words, and there is none inside "kindly-check0"): only the LLM sees the
    # general rule.
    verbs = ["check", "reply", "wait", "confirm", "retry", "call", "update", "review", "sign", "pay"]
    return [
        Pair(u, f"Please note: the team will kindly-{verbs[i % 10]}{i} now.", f"Please note: the team will please {verbs[i % 10]} now.")
        for i, u in enumerate(uuids(30, tag="llm"))
    ]


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM(ANSWER) as server:
        yield server


def test_proposals_come_through_the_openai_sdk_and_pass_the_same_validation(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-123456")
    proposer = LLMRuleProposer(model="tiny-test-model", base_url=fake_llm.url, timeout_s=10)
    train, _ = split(_pairs(), 0.2)
    proposals = proposer.propose("fn", train)
    # Strictly decoded: the empty phrase and the unknown kind are dropped.
    assert [rule_key(r) for r in proposals] == [rule_key(ReplacePhrase(old="kindly", new="please")), rule_key(ReplacePhrase(old="the", new="a"))]
    assert all(r.origin == "llm" for r in proposals)
    (request,) = fake_llm.requests
    assert request["model"] == "tiny-test-model" and request["temperature"] == 0
    sent = json.loads(request["messages"][1]["content"])
    assert sent["function"] == "fn" and sent["corrections"][0]["corrected"].startswith("Please note")
    assert fake_llm.auth == ["Bearer sk-test-not-a-real-key-123456"]

    without = RuleSetSynthesizer().synthesize(train)
    assert without.rules == []
    result = RuleSetSynthesizer().synthesize(train, extra=proposals)
    assert [rule_key(r) for r in result.rules] == [rule_key(ReplacePhrase(old="kindly", new="please"))]
    harmful = next(s for s in result.candidates if rule_key(s.rule) == rule_key(ReplacePhrase(old="the", new="a")))
    assert harmful.support == 0 and harmful.verdict != "kept"


def test_processor_uses_the_proposer_and_survives_its_failures(fake_llm: FakeLLM, tmp_path: Path) -> None:
    proposer = LLMRuleProposer(model="m", base_url=fake_llm.url, api_key="local", timeout_s=10)
    proc = FeedbackProcessor(FeedbackSettings(), store_dir=tmp_path / "hooks", proposer=proposer, clock=lambda: 0.0)
    proc.load_state("feedback", 0, None)
    fbs = [feedback_event("fn", p.bad, p.fixed, p.uuid, i) for i, p in enumerate(_pairs())]
    proc.process([Record("feedback", 0, i, b"fn", f, encode(f)) for i, f in enumerate(fbs)])
    assert proc.tick(10.0).outputs == [], "the model is asked off the worker thread; synthesis waits for the answer"
    (out,) = _tick_until_output(proc, 10.0)
    release = decode("hooks", out.value)  # type: ignore[arg-type]
    assert isinstance(release, HookRelease) and release.rules[0].origin == "llm"
    v = release.validation
    assert v.worse_pairs == 0 and v.heldout_similarity_after > v.heldout_similarity_before

    # The endpoint goes away: no proposals, no crash, no release of anything new.
    fake_llm.stop()
    more = feedback_event("fn", "Other text here.", "Other text.", "late-1", 99)
    proc.process([Record("feedback", 0, 99, b"fn", more, encode(more))])
    assert proc.tick(20.0).outputs == []
    _wait(lambda: proposer.in_flight == 0)
    assert proc.tick(20.0).outputs == [] and not proc.status()["functions"]["fn"]["pending"], "synthesised without proposals"
    assert proposer.failures == 1


def _wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _tick_until_output(proc: FeedbackProcessor, now: float, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        outputs = [o for o in proc.tick(now).outputs if o.topic == "hooks"]  # (each also goes to hooks.history)
        if outputs or time.monotonic() > deadline:
            return outputs
        time.sleep(0.02)


def test_model_answers_that_are_not_rules_yield_nothing() -> None:
    assert parse_proposals("not json at all") == []
    assert parse_proposals(json.dumps({"rules": "nope"})) == []
    assert [type(r) for r in parse_proposals(json.dumps([{"kind": "strip_suffix", "text": "Bye.", "support": 999}]))] == [StripSuffix]
    assert parse_proposals(json.dumps([{"kind": "strip_suffix", "text": "Bye.", "support": 999}]))[0].support == 0
