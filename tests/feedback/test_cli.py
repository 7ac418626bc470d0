"""``vector-trainer synthesize`` and ``vector-trainer hooks …`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from processors.feedback.ruleset import AddSuffix, ReplacePhrase, StripPrefix
from processors.feedback.versions import VersionStore
from stream.contract.events import HookRelease, HookValidation, utcnow
from stream.contract.hooks.generator import HookScriptGenerator
from stream.contract.hooks.release import build_release
from stream.runtime.kafka import read_topic
from tests.support.cli import vt
from tests.support.feedback import traffic_feedback


def test_synthesize_offline_writes_a_working_hook(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    fbs = traffic_feedback(seed=5, events=4000)["summarize_ticket"]
    pairs.write_text("".join(msgspec.json.encode(f).decode() + "\n" for f in fbs))
    out = tmp_path / "generated_prompt_hook.py"
    res = vt("synthesize", "--pairs", str(pairs), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "strip_prefix" in res.stdout and "replace_phrase" in res.stdout and "held-out exact 0.000→" in res.stdout
    HookScriptGenerator().verify(out.read_text())
    script = (
        "import generated_prompt_hook as h; "
        "print(h.FUNCTION_NAME, h.VERSION, h.apply_output('Hello! Thanks for reaching out. The customer is late.'))"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "summarize_ticket 1 The client is late."

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"bad_output": "a", "fixed_output": "b"}\n{"bad_output": 3}\n')
    res = vt("synthesize", "--pairs", str(bad), "--out", str(tmp_path / "x.py"))
    assert res.returncode == 2 and "bad.jsonl:2" in res.stderr and not (tmp_path / "x.py").exists()


def _store_with_versions(state_dir: Path) -> VersionStore:
    store = VersionStore(state_dir / "hooks")
    gen = HookScriptGenerator()
    v1_rules = [StripPrefix(text="Hello!"), ReplacePhrase(old="customer", new="client", support=12)]
    for version, rules in ((1, v1_rules), (2, [*v1_rules, AddSuffix(text=" -- Bot")])):
        store.put(build_release(gen, function_name="summarize_ticket", version=version, rules=rules,
                                validation=HookValidation(pairs=40, heldout_pairs=8, exact_match_after=0.9, heldout_exact_match_after=0.875),
                                created_at=utcnow(), parent_version=version - 1 or None))
    return store


def test_hooks_list_show_diff_export_from_the_state_dir(tmp_path: Path) -> None:
    _store_with_versions(tmp_path)
    env = {"VT_STATE_DIR": str(tmp_path), "VT_BOOTSTRAP": ""}
    listed = vt("hooks", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("summarize_ticket") == 2 and "0.000 → 0.875" in listed.stdout
    shown = vt("hooks", "show", "summarize_ticket", "--version", "1", env=env)
    assert shown.returncode == 0 and 'Write "client" instead of "customer". (support 12, confidence 1.00, diff)' in shown.stdout
    diff = vt("hooks", "diff", "summarize_ticket", "1", "2", env=env)
    assert diff.returncode == 0 and diff.stdout.splitlines()[0].startswith('+ add_suffix: End the answer with "-- Bot"')
    out = tmp_path / "generated_prompt_hook.py"
    exported = vt("hooks", "export", "summarize_ticket", "--version", "2", "--out", str(out), env=env)
    assert exported.returncode == 0 and "v2" in exported.stdout
    assert HookScriptGenerator().extract(out.read_text()).version == 2
    missing = vt("hooks", "show", "summarize_ticket", "--version", "9", env=env)
    assert missing.returncode == 1 and "no version 9" in missing.stderr
    # A stored release that was tampered with is not exported.
    path = next((tmp_path / "hooks").glob("*/v000001.json"))
    path.write_bytes(path.read_bytes().replace(b'"new":"client"', b'"new":"victim"'))
    assert vt("hooks", "export", "summarize_ticket", "--version", "1", "--out", str(out), env=env).returncode == 1


@pytest.mark.broker
def test_hooks_rollback_publishes_a_new_version(broker, tmp_path: Path) -> None:
    _store_with_versions(tmp_path)
    env = {"VT_STATE_DIR": str(tmp_path), "VT_BOOTSTRAP": broker.bootstrap, "VT_TOPIC_PREFIX": "rb.",
           "VT_HOOK_SIGNING_KEY": "cli-test-signing-key"}
    assert vt("topics", "create", env=env).returncode == 0
    res = vt("hooks", "rollback", "summarize_ticket", "--to", "1", env=env)
    assert res.returncode == 0, res.stderr
    assert "published summarize_ticket v3 with the 2 rules of v1; 1 rule(s) vetoed" in res.stdout
    assert "cli-test-signing-key" not in res.stdout + res.stderr
    import asyncio

    (record,) = asyncio.run(read_topic(broker.bootstrap, "rb.hooks"))
    release = msgspec.json.decode(record.value, type=HookRelease)
    assert (record.key, release.version, release.parent_version, release.rollback_of) == (b"summarize_ticket", 3, 2, 1)
    assert release.signature and [type(r) for r in release.vetoed] == [AddSuffix]
    listed = vt("hooks", "list", "summarize_ticket", env=env)
    assert "rollback to v1" in listed.stdout
    assert json.loads((tmp_path / "hooks" / "manifest.json").read_text())["summarize_ticket"]["versions"]["3"]["signed"] is True
