"""Operator actions behind ``vector-trainer hooks …`` and ``vector-trainer synthesize``.

The CLI stays thin: it parses options and prints; the work is here.  What comes
from Kafka (the records of the hooks topic) is handed in by the caller
(:mod:`stream.tools.hooks` reads and publishes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from processors.feedback.ruleset import Rule, rule_key
from stream.contract.config import FeedbackSettings
from stream.contract.events import HookRelease, utcnow
from stream.contract.hooks.generator import HookScriptGenerator
from stream.contract.hooks.release import ReleaseError, build_release, verify_release
from stream.contract.processing import TopicRecord

from .pairs import Pair, pair_uuid, split
from .synthesizer import RuleSetSynthesizer, Synthesis
from .validation import ValidationReport, validate
from .versions import VersionStore

_decoder = msgspec.json.Decoder(HookRelease)


class PairsFileError(ValueError):
    """A line of a pairs file is not a feedback pair."""


def sync_from_records(records: Iterable[TopicRecord], store: VersionStore, signing_key: str | None) -> tuple[int, int]:
    """Copy every trusted release among the hooks topic's records into the store; (stored, refused)."""
    stored = refused = 0
    generator = HookScriptGenerator()
    for record in records:
        if record.value is None:
            continue
        try:
            release = _decoder.decode(record.value)
            verify_release(release, generator, signing_key)
        except (msgspec.DecodeError, msgspec.ValidationError, ReleaseError):
            refused += 1
            continue
        stored += store.put(release)
    return stored, refused


def _unique(rules: Iterable[Rule]) -> list[Rule]:
    seen: set[tuple[object, ...]] = set()
    out = []
    for rule in rules:
        key = rule_key(rule)
        if key not in seen:
            seen.add(key)
            out.append(rule)
    return out


def rollback_release(store: VersionStore, function_name: str, to_version: int, signing_key: str | None) -> HookRelease:
    """A new release (next version) carrying the rules of ``to_version``.

    The rules the rolled-back versions added are *vetoed*: the processor will not
    synthesise them again.  Rules of the restored version are un-vetoed.  The new
    release is rendered with the *current* hook template, whatever template version
    ``to_version`` was published with (its rules are data every later template applies).
    """
    target = store.get(function_name, to_version)
    latest = store.get(function_name)
    if latest.version == to_version:
        raise ValueError(f"{function_name!r} is already at version {to_version}")
    restored = {rule_key(r) for r in target.rules}
    vetoed = _unique(r for r in [*latest.vetoed, *latest.rules] if rule_key(r) not in restored)
    return build_release(
        HookScriptGenerator(),
        function_name=function_name,
        version=latest.version + 1,
        rules=list(target.rules),
        validation=target.validation,
        created_at=utcnow(),
        parent_version=latest.version,
        vetoed=vetoed,
        rollback_of=to_version,
        signing_key=signing_key,
    )


def read_pairs(path: Path) -> tuple[list[Pair], set[str]]:
    """Pairs from a JSON-lines file of ``{"bad_output", "fixed_output"[, "uuid", "function_name"]}``."""
    pairs: list[Pair] = []
    functions: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                raise PairsFileError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("bad_output"), str) or not isinstance(obj.get("fixed_output"), str):
                raise PairsFileError(f"{path}:{n}: expected an object with string bad_output and fixed_output")
            uuid = obj.get("uuid") if isinstance(obj.get("uuid"), str) and obj.get("uuid") else pair_uuid(obj["bad_output"], obj["fixed_output"], n)
            pairs.append(Pair(uuid, obj["bad_output"], obj["fixed_output"]))
            if isinstance(obj.get("function_name"), str):
                functions.add(obj["function_name"])
    return pairs, functions


@dataclass(slots=True)
class OfflineResult:
    synthesis: Synthesis
    report: ValidationReport
    module_source: str | None  # None when validation refused the rules


def synthesize_offline(pairs: list[Pair], function_name: str, settings: FeedbackSettings) -> OfflineResult:
    """The seed's batch use: pairs in, a validated ``generated_prompt_hook.py`` (version 1) out."""
    synthesizer = RuleSetSynthesizer(
        min_support=settings.min_support, min_confidence=settings.min_confidence, max_rules=settings.max_rules
    )
    train, _heldout = split(pairs, settings.heldout_fraction)
    synthesis = synthesizer.synthesize(train)
    report = validate(synthesis.rules, [], pairs, settings.heldout_fraction)
    source = HookScriptGenerator().render(function_name, 1, synthesis.rules) if report.ok else None
    return OfflineResult(synthesis, report, source)
