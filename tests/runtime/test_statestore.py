import json
from pathlib import Path

import pytest

from stream.runtime.statestore import CheckpointStore


def test_save_then_load_returns_files_and_offset(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save("p", "vt.executions", 2, 41, lambda d: (d / "a.bin").write_bytes(b"one"))
    store.save("p", "vt.executions", 2, 97, lambda d: (d / "a.bin").write_bytes(b"two"))
    ck = store.load("p", "vt.executions", 2)
    assert ck is not None and ck.offset == 97 and (ck.directory / "a.bin").read_bytes() == b"two"
    assert store.load("p", "vt.executions", 1) is None


def test_failed_write_leaves_previous_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save("p", "t", 0, 10, lambda d: (d / "x").write_text("old"))

    def broken(d: Path) -> None:
        (d / "x").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.save("p", "t", 0, 20, broken)
    ck = store.load("p", "t", 0)
    assert ck is not None and ck.offset == 10 and (ck.directory / "x").read_text() == "old"
    assert not list(store.partition_dir("p", "t", 0).glob(".tmp-*"))


def test_damaged_pointer_falls_back_to_newest_complete_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save("p", "t", 0, 5, lambda d: None)
    store.save("p", "t", 0, 6, lambda d: None)
    base = store.partition_dir("p", "t", 0)
    (base / "CURRENT").write_text("ckpt-does-not-exist")
    ck = store.load("p", "t", 0)
    assert ck is not None and ck.offset == 6
    meta = json.loads((ck.directory.parent / "meta.json").read_text())
    assert meta["partition"] == 0


def test_old_checkpoints_are_pruned(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for off in range(6):
        store.save("p", "t", 0, off, lambda d: None)
    assert len(list(store.partition_dir("p", "t", 0).glob("ckpt-*"))) == 2
