"""Security: feedback cannot inject code, forged or tampered hook releases are refused, and
API keys never leave the process (logs, events on any topic, errors, metrics)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import msgspec
import pytest

from processors.feedback.processor import FeedbackProcessor
from stream.client.hook_client import HookClient
from stream.contract.config import FeedbackSettings
from stream.contract.events import Feedback, HookRelease
from stream.contract.hooks.generator import TEMPLATE_PATH, HookScriptGenerator
from stream.contract.hooks.release import BAD_MODULE, ReleaseError, build_release, sha256_hex, verify_release
from stream.contract.hooks.rules import ReplacePhrase
from stream.contract.processing import Record
from stream.contract.topics import TopicNames
from stream.runtime.broker import EmbeddedBroker
from stream.tools.traffic import DEMO_FUNCTIONS, TrafficGenerator
from tests.support.fake_openai import FakeOpenAI
from tests.support.faults import ProcessorProcess, figure, send, topic

INJECTIONS = (
    '"""; import os; os.system("touch CANARY") #',
    "'); __import__('os').system('touch CANARY'); ('",
    "{{ open('CANARY', 'w') }} ${open('CANARY')}",
    '\\"; exec("open(\'CANARY\', \'w\')") #\\',
    "\u202eCANARY\x00 \u2028 end",
)


def _pairs() -> list[Feedback]:
    """Corrections that replace one hostile phrase by another, often enough to become rules."""
    out = []
    for i in range(60):
        a, b = INJECTIONS[i % len(INJECTIONS)], INJECTIONS[(i + 1) % len(INJECTIONS)]
        out.append(Feedback(uuid=str(UUID(int=i + 1)), function_name="victim", bad_output=f"Answer {i % 7}: {a} done.",
                            fixed_output=f"Answer {i % 7}: {b} done.", timestamp_utc=datetime(2026, 11, 1, tzinfo=UTC)))
    return out


def _template_shape(source: str) -> str:
    """The module's AST with every string/number constant blanked: code only."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.value = None
    return ast.dump(tree)


def test_hostile_feedback_becomes_data_only_hooks_that_execute_nothing(tmp_path: Path) -> None:
    proc = FeedbackProcessor(FeedbackSettings(min_support=2, debounce_s=0.0, heldout_fraction=0.2), store_dir=tmp_path / "hooks")
    records = [Record("feedback", 0, i, b"victim", fb, msgspec.json.encode(fb)) for i, fb in enumerate(_pairs())]
    result = proc.process(records)
    result.extend(proc.tick(now=1e12))
    releases = [msgspec.json.decode(o.value, type=HookRelease) for o in result.outputs if o.topic == "hooks" and o.value]
    assert releases, "the corrections were consistent enough to release a hook"
    gen = HookScriptGenerator()
    hostile_in_rules = 0
    for release in releases:
        verify_release(release, gen, None)
        assert _template_shape(release.module_source) == _template_shape(TEMPLATE_PATH.read_text()), "only data differs"
        rules_text = json.dumps([msgspec.to_builtins(r) for r in release.rules])
        hostile_in_rules += sum(1 for s in INJECTIONS if json.dumps(s)[1:-1][:12] in rules_text)
        module = tmp_path / f"v{release.version}" / "generated_prompt_hook.py"
        module.parent.mkdir()
        module.write_text(release.module_source)
        script = (
            "import json, sys, generated_prompt_hook as h\n"
            "texts = json.loads(sys.stdin.read())\n"
            "print(json.dumps([h.apply_output(t) for t in texts] + [h.apply_prompt([{'role': 'user', 'content': t}]) for t in texts]))\n"
        )
        texts = [f"Answer 3: {s} done." for s in INJECTIONS]
        run = subprocess.run([sys.executable, "-c", script], cwd=module.parent, input=json.dumps(texts), capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        client = HookClient(None, cache_dir=tmp_path / f"cache{release.version}")
        assert client.offer(release), "the runtime client accepts the genuine release"
        assert json.loads(run.stdout)[: len(texts)] == [client.apply_output("victim", t) for t in texts], "module and client agree"
        assert not (module.parent / "CANARY").exists() and not Path("CANARY").exists()
    assert hostile_in_rules > 0, "the hostile phrases really are in the rules (as data)"
    figure("injection", releases=len(releases), hostile_phrases_in_rules=hostile_in_rules, executed=0)


def test_tampered_forged_and_unsigned_releases_are_refused(tmp_path: Path) -> None:
    gen = HookScriptGenerator()
    genuine = build_release(gen, function_name="fn", version=1, rules=[ReplacePhrase(old="a", new="b")], validation=None,
                            created_at=datetime(2026, 11, 1, tzinfo=UTC), parent_version=None, signing_key="k")
    evil_source = genuine.module_source + "\nimport os\nos.system('touch CANARY')\n"
    tampered = msgspec.structs.replace(genuine, module_source=evil_source, sha256=sha256_hex(evil_source), signature=None)
    with pytest.raises(ReleaseError) as err:
        verify_release(tampered, gen, None)
    assert err.value.reason == BAD_MODULE
    forged = msgspec.structs.replace(genuine, signature="0" * 64)
    wrong_digest = msgspec.structs.replace(genuine, sha256="0" * 64)
    unsigned = msgspec.structs.replace(genuine, signature=None)
    client = HookClient(None, cache_dir=tmp_path / "cache", signing_key="k")
    for bad in (tampered, forged, wrong_digest, unsigned):
        assert not client.offer(bad)
    assert client.version("fn") == 0
    assert client.offer(genuine) and client.version("fn") == 1
    assert not client.offer(msgspec.structs.replace(tampered, version=2)), "still refused after a genuine one"
    assert client.version("fn") == 1 and client.apply_output("fn", "a") == "b"
    assert sum(client.rejected.values()) == 5 and client.rejected[BAD_MODULE] == 2
    assert not Path("CANARY").exists()


@pytest.mark.broker
def test_api_keys_never_appear_in_logs_events_errors_or_metrics(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    key = "sk-vt-secret-" + "7f3a9c" * 6
    with FakeOpenAI(api_key="sk-the-right-one", echo_key_in_errors=True) as provider:
        env = {
            "VT_TRAINING_API_KEY": key, "VT_LOG_LEVEL": "DEBUG", "VT_TRAINING_TRAINER": "openai",
            "VT_TRAINING_OPENAI_BASE_URL": provider.base_url, "VT_TRAINING_THRESHOLD": "15", "VT_TRAINING_POLL_INITIAL_S": "0.05",
        }
        proc = ProcessorProcess(own_broker.bootstrap, "sec.", "sec", tmp_path / "state", tmp_path / "processor.log", env=env).start()
        gen = TrafficGenerator(seed=61, functions=DEMO_FUNCTIONS, bad_ratio=0.02, feedback_ratio=0.1)
        send(own_broker.bootstrap, "sec.", [next(gen.stream()) for _ in range(3000)])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.scrape().total("vt_training_jobs_total", status="failed") < 1:
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics", timeout=5) as resp:  # noqa: S310 - loopback
            metrics_text = resp.read().decode()
        assert proc.stop() == 0
    assert any(not authorized for _m, _p, authorized in provider.requests), "the key was used, and refused"
    assert "failed" in metrics_text and 'status="failed"' in metrics_text
    names = TopicNames("sec.")
    everything = b"".join((r.key or b"") + b"\n" + (r.value or b"") for t in names.all() for r in topic(own_broker.bootstrap, t))
    training = [json.loads(r.value) for r in topic(own_broker.bootstrap, names.physical("training")) if r.value]
    errors = [e["error"] for e in training if e.get("error")]
    assert errors and any("Incorrect API key" in e for e in errors), "the provider's refusal is reported"
    log = (tmp_path / "processor.log").read_text(errors="replace")
    for where, text in (("logs", log), ("topics", everything.decode(errors="replace")), ("metrics", metrics_text), ("errors", "\n".join(errors))):
        assert key not in text, f"the API key leaked into {where}"
        assert key[:20] not in text, f"a prefix of the API key leaked into {where}"
    figure("api-key", log_bytes=len(log), topic_bytes=len(everything), metrics_bytes=len(metrics_text), training_errors=len(errors), leaks=0)
