"""Per-partition state checkpoints on local disk, written atomically.

A checkpoint of (processor, topic, partition) is a directory holding whatever the
processor wrote plus ``meta.json`` with the input offset the state reflects (the
next offset to read).  It is built under a temporary name, fsynced, renamed into
place, and only then named by the ``CURRENT`` pointer (itself replaced
atomically), so a crash at any point leaves either the old or the new checkpoint,
never a torn one.  The previous checkpoint is kept as a fallback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_KEEP = 2


@dataclass(frozen=True, slots=True)
class Checkpointed:
    directory: Path  # the processor's files
    offset: int  # next input offset to read
    saved_at: float


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
        self, processor: str, topic: str, partition: int, offset: int, write: Callable[[Path], None]
    ) -> Path:
        """Let ``write`` fill a fresh directory, then publish it as the current checkpoint."""
        base = self.partition_dir(processor, topic, partition)
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{uuid.uuid4().hex}"
        data = tmp / "data"
        data.mkdir(parents=True)
        try:
            write(data)
            meta = {"offset": offset, "saved_at": time.time(), "processor": processor, "topic": topic, "partition": partition}
            (tmp / "meta.json").write_text(json.dumps(meta))
            _fsync_tree(tmp)
            final = base / f"ckpt-{offset:020d}-{time.time_ns()}"
            os.rename(tmp, final)
            pointer_tmp = base / f".CURRENT-{uuid.uuid4().hex}"
            pointer_tmp.write_text(final.name)
            with open(pointer_tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(pointer_tmp, base / "CURRENT")
            _fsync_dir(base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(base, keep=final.name)
        return final

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
                return Checkpointed(directory=path / "data", offset=int(meta["offset"]), saved_at=float(meta["saved_at"]))
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
