"""Hook template versions: releases of an older template keep verifying after the template changed."""

from __future__ import annotations

import tomllib
from datetime import datetime

import pytest

from stream.contract.events import HookValidation, decode, encode
from stream.contract.hooks import template
from stream.contract.hooks.generator import (
    TEMPLATE_PATH,
    TEMPLATES_DIR,
    HookModuleError,
    HookScriptGenerator,
    frozen_template,
    template_version_of,
)
from stream.contract.hooks.release import BAD_MODULE, ReleaseError, build_release, sha256_hex, verify_release
from stream.contract.hooks.rules import FixCase, ReplacePhrase, RewriteToken, When
from tests.support import ROOT


def _release(gen: HookScriptGenerator, rules, version: int = 3, key: str | None = None):  # type: ignore[no-untyped-def]
    return build_release(gen, function_name="fn", version=version, rules=rules, validation=HookValidation(pairs=1),
                         created_at=datetime(2026, 1, 1), parent_version=version - 1, signing_key=key)


def test_current_template_is_frozen_byte_for_byte_and_names_its_version() -> None:
    assert template.TEMPLATE_VERSION == 2
    assert TEMPLATE_PATH.read_bytes() == (TEMPLATES_DIR / "v2.py.txt").read_bytes()
    assert HookScriptGenerator().template_version == 2
    v1 = frozen_template(1)
    assert v1 is not None and template_version_of(v1) == 1 and "rewrite_token" not in v1
    assert frozen_template(99) is None
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "templates/*.py.txt" in data["stream.contract.hooks"]


def test_a_release_of_template_v1_still_verifies_and_still_applies() -> None:
    gen = HookScriptGenerator()
    old = _release(gen.for_version(1), [ReplacePhrase(old="customer", new="client")], key="k")
    assert "TEMPLATE_VERSION" not in old.module_source
    verify_release(old, gen, "k")
    verify_release(decode("hooks", encode(old)), gen, "k")
    # Its rules mean the same under the current applier.
    assert template.apply_rules_to_output(template.parse_rules([{"kind": "replace_phrase", "old": "customer", "new": "client"}]),
                                          "The customer.") == "The client."
    # Tampering with the old module is still caught.
    forged = old.__class__(**{**{f: getattr(old, f) for f in old.__struct_fields__},
                              "module_source": old.module_source.replace("MAX_RULES = 200", "MAX_RULES = 201")})
    forged.sha256 = sha256_hex(forged.module_source)
    with pytest.raises(ReleaseError) as err:
        verify_release(forged, gen, None)
    assert err.value.reason == BAD_MODULE


def test_new_rule_kinds_need_the_new_template() -> None:
    gen = HookScriptGenerator()
    rules = [RewriteToken(token="number", out="#{text}", after="Ticket"), FixCase(word="VectorWave"),
             ReplacePhrase(old="a", new="b", when=When(language="de"))]
    new = _release(gen, rules)
    assert "\nTEMPLATE_VERSION = 2\n" in new.module_source
    verify_release(new, gen, None)
    # The same rules in a module of template v1 (which cannot apply them) are refused.
    old = _release(gen.for_version(1), rules)
    with pytest.raises(ReleaseError, match="version 1 hook template") as err:
        verify_release(old, gen, None)
    assert err.value.reason == BAD_MODULE


def test_an_unknown_template_version_is_refused() -> None:
    gen = HookScriptGenerator()
    release = _release(gen, [ReplacePhrase(old="a", new="b")])
    release.module_source = release.module_source.replace("\nTEMPLATE_VERSION = 2\n", "\nTEMPLATE_VERSION = 7\n")
    release.sha256 = sha256_hex(release.module_source)
    with pytest.raises(ReleaseError, match="unknown hook template version 7"):
        verify_release(release, gen, None)
    with pytest.raises(HookModuleError):
        gen.for_version(7)
