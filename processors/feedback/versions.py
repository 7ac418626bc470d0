"""The version store: every release seen, as files plus a manifest, under the state dir.

The compacted ``hooks`` topic keeps only the newest release per function; the store
keeps them all, so versions can be listed, compared and rolled back::

    <root>/manifest.json                      {function: {"dir", "versions": {n: summary}}}
    <root>/<slug>/v000003.json                the HookRelease event
    <root>/<slug>/v000003_generated_prompt_hook.py

Files are written to a temporary name and renamed, so a crash never leaves a torn
file.  Writing a version again with the same digest is a no-op (replays); with a
different digest it replaces the file (the topic, which keeps the last write, is
the truth).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from processors.feedback.ruleset import Rule, describe, rule_key
from stream.contract.events import HookRelease
from stream.contract.hooks.release import slug

log = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(HookRelease)
_encoder = msgspec.json.Encoder()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class RuleDiff:
    added: list[Rule]
    removed: list[Rule]
    kept: list[Rule]

    def lines(self) -> list[str]:
        return [f"+ {describe(r)}" for r in self.added] + [f"- {describe(r)}" for r in self.removed] + [
            f"  {describe(r)}" for r in self.kept
        ]


def diff_rules(old: list[Rule], new: list[Rule]) -> RuleDiff:
    """Rules added, removed and kept between two rule sets (support changes alone are 'kept')."""
    old_keys = {rule_key(r) for r in old}
    new_keys = {rule_key(r) for r in new}
    return RuleDiff(
        added=[r for r in new if rule_key(r) not in old_keys],
        removed=[r for r in old if rule_key(r) not in new_keys],
        kept=[r for r in new if rule_key(r) in old_keys],
    )


class VersionStore:
    """All known releases per function; safe to share between threads of one process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- manifest
    def _manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        path = self._manifest_path()
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("hook version manifest %s is unreadable (%s); rebuilding it from the files", path, exc)
            return self._rebuild()
        return data if isinstance(data, dict) else {}

    def _rebuild(self) -> dict[str, Any]:
        manifest: dict[str, Any] = {}
        for file in sorted(self.root.glob("*/v*.json")):
            try:
                release = _decoder.decode(file.read_bytes())
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                continue
            entry = manifest.setdefault(release.function_name, {"dir": file.parent.name, "versions": {}})
            entry["versions"][str(release.version)] = _summary(release)
        return manifest

    # ----------------------------------------------------------------- writing
    def put(self, release: HookRelease) -> bool:
        """Store a release; True when it was new or replaced a different one under its version."""
        with self._lock:
            manifest = self.manifest()
            entry = manifest.setdefault(release.function_name, {"dir": slug(release.function_name), "versions": {}})
            known = entry["versions"].get(str(release.version))
            if known is not None and known.get("sha256") == release.sha256:
                return False
            if known is not None:
                log.warning(
                    "hook %s v%d rewritten with another digest (%s → %s): keeping the newest write",
                    release.function_name, release.version, known.get("sha256", "")[:12], release.sha256[:12],
                )
            directory = self.root / entry["dir"]
            directory.mkdir(parents=True, exist_ok=True)
            _atomic_write(directory / f"v{release.version:06d}_generated_prompt_hook.py", release.module_source.encode("utf-8"))
            _atomic_write(directory / f"v{release.version:06d}.json", _encoder.encode(release))
            entry["versions"][str(release.version)] = _summary(release)
            _atomic_write(self._manifest_path(), json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8"))
            return True

    # ----------------------------------------------------------------- reading
    def functions(self) -> list[str]:
        return sorted(self.manifest())

    def versions(self, function_name: str) -> list[int]:
        entry = self.manifest().get(function_name)
        return sorted(int(v) for v in entry["versions"]) if entry else []

    def latest_version(self, function_name: str) -> int:
        versions = self.versions(function_name)
        return versions[-1] if versions else 0

    def get(self, function_name: str, version: int | None = None) -> HookRelease:
        """One release (the newest when ``version`` is None); KeyError when unknown."""
        entry = self.manifest().get(function_name)
        if not entry or not entry["versions"]:
            raise KeyError(f"no hook versions stored for {function_name!r}")
        if version is None:
            version = max(int(v) for v in entry["versions"])
        if str(version) not in entry["versions"]:
            known = ", ".join(str(v) for v in sorted(int(v) for v in entry["versions"]))
            raise KeyError(f"{function_name!r} has no version {version}; stored: {known}")
        return _decoder.decode((self.root / entry["dir"] / f"v{version:06d}.json").read_bytes())

    def summaries(self, function_name: str) -> list[dict[str, Any]]:
        entry = self.manifest().get(function_name)
        if not entry:
            return []
        return [entry["versions"][v] for v in sorted(entry["versions"], key=int)]

    def diff(self, function_name: str, a: int, b: int) -> RuleDiff:
        return diff_rules(self.get(function_name, a).rules, self.get(function_name, b).rules)


def _summary(release: HookRelease) -> dict[str, Any]:
    v = release.validation
    return {
        "version": release.version,
        "sha256": release.sha256,
        "parent_version": release.parent_version,
        "rollback_of": release.rollback_of,
        "created_at": release.created_at.isoformat(),
        "rules": len(release.rules),
        "signed": release.signature is not None,
        "pairs": v.pairs,
        "heldout_pairs": v.heldout_pairs,
        "exact_match": [v.exact_match_before, v.exact_match_after],
        "similarity": [v.similarity_before, v.similarity_after],
        "heldout_exact_match": [v.heldout_exact_match_before, v.heldout_exact_match_after],
        "heldout_similarity": [v.heldout_similarity_before, v.heldout_similarity_after],
    }
