"""Per-partition state checkpoints on local disk, written atomically.

A checkpoint of (processor, topic, partition) is a directory holding whatever the
processor wrote plus ``meta.json`` with the input offset the state reflects (the
next offset to read).  It is built under a temporary name, fsynced, renamed into
place, and only then named by the ``CURRENT`` pointer (itself replaced
atomically), so a crash at any point leaves either the old or the new checkpoint,
never a torn one.  The previous checkpoint is kept as a fallback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_KEEP = 2


@dataclass(frozen=True, slots=True)
class Checkpointed:
    directory: Path  # the processor's files
    offset: int  # next input offset to read
    saved_at: float
    meta: dict[str, Any] = field(default_factory=dict)  # everything meta.json says (files, fingerprint, cluster id)


def describe_files(root: Path) -> list[list[Any]]:
    """``[relative path, size, sha256]`` of every file under ``root``, sorted by path."""
    out: list[list[Any]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                size += len(block)
        out.append([path.relative_to(root).as_posix(), size, digest.hexdigest()])
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb+") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


class CheckpointStore:
    """Checkpoints of every (processor, topic, partition) under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def partition_dir(self, processor: str, topic: str, partition: int) -> Path:
        return self.root / processor / f"{topic}-{partition}"

    def save(
        self,
        processor: str,
        topic: str,
        partition: int,
        offset: int,
        write: Callable[[Path], None],
        extra: dict[str, Any] | None = None,
    ) -> Checkpointed:
        """Let ``write`` fill a fresh directory, then publish it as the current checkpoint."""
        return self.publish(self.stage(processor, topic, partition, write), processor, topic, partition, offset, extra)

    def stage(self, processor: str, topic: str, partition: int, write: Callable[[Path], None]) -> Path:
        """A fresh staging directory whose ``data`` ``write`` filled (removed again if it fails), for :meth:`publish`."""
        staging = self.staging(processor, topic, partition)
        try:
            write(staging / "data")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def staging(self, processor: str, topic: str, partition: int) -> Path:
        """A fresh private directory whose ``data`` the caller fills before :meth:`publish`."""
        base = self.partition_dir(processor, topic, partition)
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{uuid.uuid4().hex}"
        (tmp / "data").mkdir(parents=True)
        return tmp

    def publish(
        self, staging: Path, processor: str, topic: str, partition: int, offset: int, extra: dict[str, Any] | None = None
    ) -> Checkpointed:
        """Describe, fsync and atomically publish a filled staging directory as the current checkpoint."""
        base = self.partition_dir(processor, topic, partition)
        try:
            saved_at = time.time()
            meta = {
                **(extra or {}),
                "offset": offset, "saved_at": saved_at, "processor": processor, "topic": topic, "partition": partition,
                "files": describe_files(staging / "data"),
            }
            (staging / "meta.json").write_text(json.dumps(meta))
            _fsync_tree(staging)
            final = base / f"ckpt-{offset:020d}-{time.time_ns()}"
            os.rename(staging, final)
            pointer_tmp = base / f".CURRENT-{uuid.uuid4().hex}"
            pointer_tmp.write_text(final.name)
            with open(pointer_tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(pointer_tmp, base / "CURRENT")
            _fsync_dir(base)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._prune(base, keep=final.name)
        return Checkpointed(directory=final / "data", offset=offset, saved_at=saved_at, meta=meta)

    @staticmethod
    def verify(ckpt: Checkpointed) -> str | None:
        """Why a checkpoint's files do not match its meta (None: they do).  Checkpoints written before
        files were described carry no list and pass this check."""
        files = ckpt.meta.get("files")
        if files is None:
            return None
        try:
            actual = describe_files(ckpt.directory)
        except OSError as exc:
            return f"unreadable: {exc}"
        if actual != [list(f) for f in files]:
            return "its files differ from the sizes and digests it recorded"
        return None

    def load(self, processor: str, topic: str, partition: int) -> Checkpointed | None:
        """The current checkpoint, or the newest complete one if the pointer is damaged."""
        base = self.partition_dir(processor, topic, partition)
        candidates: list[Path] = []
        pointer = base / "CURRENT"
        if pointer.is_file():
            candidates.append(base / pointer.read_text().strip())
        if base.is_dir():
            candidates.extend(sorted(base.glob("ckpt-*"), reverse=True))
        for path in candidates:
            try:
                meta = json.loads((path / "meta.json").read_text())
                return Checkpointed(directory=path / "data", offset=int(meta["offset"]), saved_at=float(meta["saved_at"]), meta=meta)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        return None

    def _prune(self, base: Path, keep: str) -> None:
        ckpts = sorted(base.glob("ckpt-*"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        survivors = {keep, *(p.name for p in ckpts[:_KEEP])}
        for path in ckpts:
            if path.name not in survivors:
                shutil.rmtree(path, ignore_errors=True)
        for stale in base.glob(".tmp-*"):
            # Left behind by a crash mid-write; older than a minute means nobody is writing it.
            if time.time() - stale.stat().st_mtime > 60:
                shutil.rmtree(stale, ignore_errors=True)
