"""Building and checking ``HookRelease`` events: digest, signature, consistency.

A release is trusted only if ``sha256`` is the digest of ``module_source``, the
module is a rendering of the hook template, the rules it embeds are exactly the
release's ``rules`` (so the digest covers what clients apply) and, when a signing
key is configured, its HMAC-SHA256 signature matches.  The signing key is never
logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime

from stream.contract.events import HookRelease, HookValidation
from stream.contract.hooks.generator import HookModuleError, HookScriptGenerator, rules_json
from stream.contract.hooks.rules import V1_KINDS, Rule, kind_of

SIGNING_KEY_ENV = "VT_HOOK_SIGNING_KEY"

# Why a release was not trusted: a bounded vocabulary (a metric label in the client).
BAD_SHA256 = "bad_sha256"
BAD_SIGNATURE = "bad_signature"
UNSIGNED = "unsigned"
BAD_MODULE = "bad_module"


class ReleaseError(ValueError):
    """A release failed verification; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def slug(function_name: str) -> str:
    """The file name of a function's releases (version store, hook client cache): readable, unique by its digest."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", function_name)[:60].lstrip(".") or "_"
    return f"{safe}-{hashlib.sha256(function_name.encode('utf-8')).hexdigest()[:10]}"


def history_key(function_name: str, version: int) -> bytes:
    """The key of a release on ``hooks.history``: ``function/version`` (function names never hold a ``/``,
    and the partitioner hashes the part before it, so a function's history shares its partition)."""
    return f"{function_name}/{version:09d}".encode()


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def signing_payload(release: HookRelease) -> bytes:
    """What the signature covers: identity, lineage, the module digest (hence the rules) and the vetoes."""
    vetoed = sha256_hex(rules_json(release.vetoed))
    fields = (
        "vector-trainer-hook-v1",
        release.function_name,
        str(release.version),
        release.sha256,
        str(release.parent_version or ""),
        str(release.rollback_of or ""),
        vetoed,
    )
    return "\n".join(fields).encode("utf-8")


def sign(release: HookRelease, key: str) -> str:
    return hmac.new(key.encode("utf-8"), signing_payload(release), hashlib.sha256).hexdigest()


def build_release(
    generator: HookScriptGenerator,
    *,
    function_name: str,
    version: int,
    rules: list[Rule],
    validation: HookValidation,
    created_at: datetime,
    parent_version: int | None,
    vetoed: list[Rule] | None = None,
    rollback_of: int | None = None,
    signing_key: str | None = None,
) -> HookRelease:
    """A complete release; deterministic for its inputs, so a replay rewrites the same bytes."""
    source = generator.render(function_name, version, rules)
    release = HookRelease(
        function_name=function_name,
        version=version,
        rules=list(rules),
        module_source=source,
        sha256=sha256_hex(source),
        validation=validation,
        created_at=created_at,
        parent_version=parent_version,
        vetoed=list(vetoed or []),
        rollback_of=rollback_of,
    )
    if signing_key:
        release.signature = sign(release, signing_key)
    return release


def verify_release(release: HookRelease, generator: HookScriptGenerator, signing_key: str | None) -> None:
    """Raise :class:`ReleaseError` unless the release is intact (and signed, when a key is set)."""
    if sha256_hex(release.module_source) != release.sha256:
        raise ReleaseError(BAD_SHA256, f"sha256 of module_source does not match the release's sha256 ({release.sha256[:12]}…)")
    # Template code only (`hooks export` writes module_source to a file users import), and the
    # data lines must hold exactly this release's function, version and rules, so the digest
    # covers what clients apply.  A text comparison: no parser runs on received bytes.
    # Each release is checked against the frozen template version its module names (v1 modules
    # have no TEMPLATE_VERSION line), so releases published before a template change still verify.
    try:
        generator = generator.for_source(release.module_source)
    except HookModuleError as exc:
        raise ReleaseError(BAD_MODULE, f"module_source: {exc}") from None
    if not generator.is_rendering_of(release.module_source, release.function_name, release.version, rules_json(release.rules)):
        raise ReleaseError(BAD_MODULE, _module_mismatch(release, generator))
    if generator.template_version == 1 and any(kind_of(rule) not in V1_KINDS for rule in release.rules):
        raise ReleaseError(BAD_MODULE, "module_source is a version 1 hook template, which cannot apply these rule kinds")
    if signing_key:
        if not release.signature:
            raise ReleaseError(UNSIGNED, "release is not signed but a signing key is configured")
        if not hmac.compare_digest(release.signature, sign(release, signing_key)):
            raise ReleaseError(BAD_SIGNATURE, "HMAC signature does not match")


def _module_mismatch(release: HookRelease, generator: HookScriptGenerator) -> str:
    """Why a module is not the template rendered with the release's data (first differing line)."""
    expected = generator.render_text(release.function_name, release.version, rules_json(release.rules)).splitlines()
    got = release.module_source.splitlines()
    for number, (want, have) in enumerate(zip(expected, got, strict=False), start=1):
        if want != have:
            name = want.split(" = ", 1)[0] if " = " in want else ""
            where = f"its {name} line" if name in ("FUNCTION_NAME", "VERSION", "_RULES_JSON") else "template code"
            return f"module_source is not the hook template rendered with the release's data: {where} differs (line {number})"
    return f"module_source is not the hook template rendered with the release's data: {len(got)} lines, expected {len(expected)}"
