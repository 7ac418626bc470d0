"""Engine 2: generated_prompt_hook.py is the template plus data, whatever the feedback says."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from processors.feedback.pairs import Pair
from processors.feedback.ruleset import (
    AddPrefix,
    AddSuffix,
    DeletePhrase,
    ReplacePhrase,
    StripPrefix,
    StripSuffix,
    apply_output,
    to_data,
)
from processors.feedback.synthesizer import RuleSetSynthesizer
from stream.contract.events import HookValidation, decode, encode
from stream.contract.hooks.generator import TEMPLATE_PATH, HookModuleError, HookScriptGenerator, rules_json
from stream.contract.hooks.release import (
    BAD_MODULE,
    BAD_SHA256,
    BAD_SIGNATURE,
    UNSIGNED,
    ReleaseError,
    build_release,
    verify_release,
)
from tests.support.feedback import uuids

NASTY = [
    'say "hi"',
    "it's",
    '"""; import os; os.system("touch PWNED"); """',
    "'''; __import__('os').system('touch PWNED'); '''",
    "back\\slash \\n not a newline \\",
    "line one\nline two\r\n\ttabbed",
    "__import__('os').system('touch PWNED')",
    "김민수 고객님, 감사합니다 — ünïcödé 😀",
    "\x00 nul and \u2028 separator",
    "{}\" + __import__(\"os\").getcwd() + \"",
]


def _nasty_rules() -> list:  # type: ignore[type-arg]
    rules = []
    for i, s in enumerate(NASTY):
        rules.append(ReplacePhrase(old=f"{s} {i}", new=f"{s}!{i}"))
        rules.append(AddSuffix(text=f" {s}"))
    return rules + [DeletePhrase(old=NASTY[2]), StripPrefix(text=NASTY[3]), AddPrefix(text=NASTY[7] + " "), StripSuffix(text=NASTY[4])]


def _blank(source: str) -> str:
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in (
            "FUNCTION_NAME", "VERSION", "_RULES_JSON"
        ):
            node.value = ast.Constant(None)
    return ast.dump(tree)


def test_module_is_only_the_template_code_plus_a_data_literal() -> None:
    gen = HookScriptGenerator()
    rules = _nasty_rules()
    source = gen.render('fn "quoted" \'name\' 😀', 7, rules)
    assert _blank(source) == _blank(TEMPLATE_PATH.read_text())
    # Only the three data lines differ from the template's text.
    changed = [(a, b) for a, b in zip(TEMPLATE_PATH.read_text().splitlines(), source.splitlines(), strict=True) if a != b]
    assert [b.split(" = ", 1)[0] for _a, b in changed] == ["FUNCTION_NAME", "VERSION", "_RULES_JSON"]
    assert source.isascii()
    # The data reads back exactly, without executing anything.
    data = gen.extract(source)
    assert (data.function_name, data.version) == ('fn "quoted" \'name\' 😀', 7)
    assert gen.rules_of(source) == rules


def test_nasty_feedback_round_trips_exactly_and_executes_nothing(tmp_path: Path) -> None:
    rules = _nasty_rules()
    (tmp_path / "generated_prompt_hook.py").write_text(HookScriptGenerator().render("fn", 1, rules))
    (tmp_path / "expected.json").write_text(json.dumps(to_data(rules)))
    script = """
import json, pathlib
import generated_prompt_hook as hook
expected = json.loads(pathlib.Path("expected.json").read_text())
assert hook.RULES == expected, "rules differ"
assert hook.VERSION == 1 and hook.FUNCTION_NAME == "fn"
text = expected[0]["old"] + " and more"
print(json.dumps({"out": hook.apply_output(text), "sys": hook.apply_prompt([{"role": "user", "content": "q"}])[0]["content"]}))
"""
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    text = to_data(rules)[0]["old"] + " and more"
    assert f"{NASTY[0]}!0 and more" in got["out"]
    assert got["out"] == apply_output(rules, text)  # the module runs exactly the processor's applier
    assert NASTY[2].strip() in got["sys"] or json.dumps(NASTY[2])[1:-1] in got["sys"]
    assert not (tmp_path / "PWNED").exists()


def test_a_module_with_extra_code_is_not_a_hook_module() -> None:
    gen = HookScriptGenerator()
    source = gen.render("fn", 1, [ReplacePhrase(old="a", new="b")])
    for tampered in (
        source + "\nimport os\n",
        source.replace('VERSION = 1', 'VERSION = __import__("os").getpid()'),
        source.replace("def apply_output(text: Any) -> Any:", "def apply_output(text: Any, x=print('hi')) -> Any:"),
        source.replace("_RULES_JSON = ", "_RULES_JSON = str() + "),
        source + "\n# a comment\n",
    ):
        with pytest.raises(HookModuleError):
            gen.verify(tampered)
    gen.verify(source)


def test_hook_decorator_wraps_sync_and_async_calls(tmp_path: Path) -> None:
    rules = [ReplacePhrase(old="customer", new="client"), AddSuffix(text=" -- Support Team")]
    path = tmp_path / "generated_prompt_hook.py"
    path.write_text(HookScriptGenerator().render("summarize", 2, rules))
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # our own render, in the test only
    hook = namespace["hook"]
    seen: list[list[dict[str, str]]] = []

    @hook  # type: ignore[operator]
    def llm(messages: list[dict[str, str]]) -> str:
        seen.append(messages)
        return "The customer is happy."

    @hook(messages_arg="prompt")  # type: ignore[operator]
    async def allm(prompt: list[dict[str, str]], temperature: float = 0.0) -> str:
        seen.append(prompt)
        return "The Customer is happy."

    assert llm([{"role": "user", "content": "x"}]) == "The client is happy. -- Support Team"
    assert asyncio.run(allm(prompt=[{"role": "system", "content": "Be brief."}])) == "The Client is happy. -- Support Team"
    assert seen[0][0]["role"] == "system" and "Write \"client\"" in seen[0][0]["content"]
    assert seen[1][0]["content"].startswith("Be brief.\n\nFollow these rules")
    assert llm.__name__ == "llm" and asyncio.iscoroutinefunction(allm)


def _release(**kw):  # type: ignore[no-untyped-def]
    return build_release(
        HookScriptGenerator(), function_name="fn", version=3, rules=[ReplacePhrase(old="a", new="b")],
        validation=HookValidation(pairs=1), created_at=datetime(2026, 1, 1), parent_version=2, **kw,
    )


def test_release_digest_signature_and_consistency_are_verified() -> None:
    gen = HookScriptGenerator()
    release = _release(signing_key="k3y-for-tests")
    verify_release(release, gen, "k3y-for-tests")
    verify_release(decode("hooks", encode(release)), gen, "k3y-for-tests")  # survives the topic
    verify_release(_release(), gen, None)

    def reason(rel, key):  # type: ignore[no-untyped-def]
        with pytest.raises(ReleaseError) as err:
            verify_release(rel, gen, key)
        assert "k3y-for-tests" not in str(err.value)
        return err.value.reason

    assert reason(_release(), "k3y-for-tests") == UNSIGNED
    assert reason(_release(signing_key="another-key"), "k3y-for-tests") == BAD_SIGNATURE
    tampered = _release(signing_key="k3y-for-tests")
    tampered.module_source = tampered.module_source.replace('"new":"b"', '"new":"c"')
    assert reason(tampered, None) == BAD_SHA256
    swapped = _release(signing_key="k3y-for-tests")
    swapped.rules = [ReplacePhrase(old="a", new="EVIL")]
    assert reason(swapped, None) == BAD_MODULE  # rules must be the ones the digest covers
    bumped = _release(signing_key="k3y-for-tests")
    bumped.version = 9
    assert reason(bumped, None) == BAD_MODULE
    resigned = _release(signing_key="k3y-for-tests")
    resigned.parent_version = 1
    assert reason(resigned, "k3y-for-tests") == BAD_SIGNATURE  # the signature covers the lineage


def test_rendering_is_deterministic_and_rules_json_is_canonical() -> None:
    assert encode(_release()) == encode(_release())
    rules = RuleSetSynthesizer(min_support=1).synthesize([Pair(u, f"Hi. x{i}", f"x{i}") for i, u in enumerate(uuids(3))]).rules
    assert rules and rules_json(rules).isascii()
    assert json.loads(rules_json(rules)) == to_data(rules)
