"""Which logs share each HNSW element, and the elements by the hash of their vector.

An element (see :mod:`.index`) holds one vector for every live log with exactly that
vector, under the label of the log that created it.  Nearly every element has one log,
its creator, so only the others are written down: a plain element's one log is the slot in
its label, and only elements that have ever had a second log get a member list.  The
vector hashes sit in two sorted numpy arrays, merged once per batch.  At 100k logs of one
function this holds ~2 MB where dicts of lists held ~35 MB (issue 20).
"""

from __future__ import annotations

import numpy as np

SLOT_BITS = 32  # an hnswlib label is slot | generation << 32, so a reused slot never reuses a label
SLOT_MASK = np.uint64((1 << SLOT_BITS) - 1)  # an element's label: the slot of the log that created it


class Elements:
    """Elements of one index in HNSW mode (or being built for it): members and vector hashes.

    ``live`` and ``elem`` are the index's per-slot columns (read only here): whether a
    slot holds a live log, and the label of the element holding its vector.  Callers pass
    them in each time because the index replaces them as it grows.
    """

    def __init__(self) -> None:
        self.count = 0  # live elements
        self._shared: dict[int, list[int]] = {}  # label -> live slots, joining order: elements ever joined by a second log
        self._hash_keys = np.empty(0, dtype=np.int64)  # sorted
        self._hash_labels = np.empty(0, dtype=np.uint64)
        self._added: dict[int, list[int]] = {}  # hash -> labels created since the last merge
        self._removed: list[tuple[int, int]] = []  # (hash, label) deleted since the last merge

    @classmethod
    def of(cls, live_slots: np.ndarray, elem: np.ndarray) -> Elements:
        """The members of a loaded index (hashes: :meth:`remember_hash`); each element's logs in slot order."""
        out = cls()
        labels = elem[live_slots]
        order = np.argsort(labels, kind="stable")
        uniq, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
        out.count = len(uniq)
        creators = (uniq & SLOT_MASK).astype(np.int64)
        first = live_slots[order][starts]
        for i in np.flatnonzero((sizes > 1) | (first != creators)).tolist():
            out._shared[int(uniq[i])] = live_slots[order][starts[i] : starts[i] + sizes[i]].tolist()
        return out

    # ------------------------------------------------------------------ members
    @staticmethod
    def creator(label: int) -> int:
        return label & int(SLOT_MASK)

    def members(self, label: int) -> list[int]:
        """Live slots of a live element, in joining order."""
        shared = self._shared.get(label)
        return shared if shared is not None else [self.creator(label)]

    def create(self, label: int, vector_hash: int) -> None:
        """A new element, its creator (the slot in ``label``) its only log."""
        self.count += 1
        self.remember_hash(vector_hash, label)

    def join(self, label: int, slot: int) -> None:
        """Another log with the vector of an existing element."""
        shared = self._shared.get(label)
        if shared is None:
            self._shared[label] = [self.creator(label), slot]
        else:
            shared.append(slot)

    def leave(self, label: int, gone: set[int]) -> bool:
        """Take the slots in ``gone`` out of an element; True when it has no log left (then it is deleted)."""
        members = [s for s in self.members(label) if s not in gone]
        if members == [self.creator(label)]:
            self._shared.pop(label, None)  # plain again
            return False
        if members:
            self._shared[label] = members
            return False
        self._shared.pop(label, None)
        self.count -= 1
        return True

    def alive(self, labels: np.ndarray, live: np.ndarray, elem: np.ndarray) -> np.ndarray:
        """Whether each label is a live element."""
        labels = np.asarray(labels, dtype=np.uint64)
        slots = (labels & SLOT_MASK).astype(np.int64)
        inside = slots < len(live)
        slots = np.where(inside, slots, 0)
        plain = inside & live[slots] & (elem[slots] == labels)  # its creator is live and still holds it
        if not self._shared:
            return plain
        return plain | np.isin(labels, np.fromiter(self._shared, dtype=np.uint64, count=len(self._shared)))

    def labels(self, live_slots: np.ndarray, elem: np.ndarray) -> np.ndarray:
        """Every live element's label (ascending)."""
        return np.unique(elem[live_slots])

    # ------------------------------------------------------------------ hashes
    def with_hash(self, vector_hash: int) -> list[int]:
        """Labels of live elements whose vector has this hash (creation order within a batch)."""
        keys = self._hash_keys
        lo = int(keys.searchsorted(vector_hash, side="left")) if len(keys) else 0
        found: list[int] = []
        if lo < len(keys) and keys[lo] == vector_hash:
            hi = int(keys.searchsorted(vector_hash, side="right"))
            found = self._hash_labels[lo:hi].tolist()
            if self._removed:
                gone = {label for h, label in self._removed if h == vector_hash}
                found = [label for label in found if label not in gone]
        return found + self._added.get(vector_hash, [])

    def remember_hash(self, vector_hash: int, label: int) -> None:
        """An existing element's hash (loading; call :meth:`merge` after the last)."""
        self._added.setdefault(vector_hash, []).append(label)

    def forget_hash(self, vector_hash: int, label: int) -> None:
        """A deleted element's hash (call :meth:`merge` once the batch is done)."""
        added = self._added.get(vector_hash)
        if added is not None and label in added:
            added.remove(label)
            if not added:
                del self._added[vector_hash]
            return
        self._removed.append((vector_hash, label))

    def merge(self) -> None:
        """Fold a batch's new and deleted hashes into the sorted arrays (one copy per batch)."""
        keys, labels = self._hash_keys, self._hash_labels
        if self._removed:
            drop = np.zeros(len(keys), dtype=bool)
            for h, label in self._removed:
                lo, hi = int(np.searchsorted(keys, h, side="left")), int(np.searchsorted(keys, h, side="right"))
                drop[lo + np.flatnonzero(labels[lo:hi] == np.uint64(label))] = True
            keys, labels = keys[~drop], labels[~drop]
            self._removed = []
        if self._added:
            new_keys = np.array([h for h, ls in self._added.items() for _ in ls], dtype=np.int64)
            new_labels = np.array([label for ls in self._added.values() for label in ls], dtype=np.uint64)
            order = np.argsort(new_keys, kind="stable")
            new_keys, new_labels = new_keys[order], new_labels[order]
            at = np.searchsorted(keys, new_keys, side="right")  # after equal hashes: creation order kept
            keys, labels = np.insert(keys, at, new_keys), np.insert(labels, at, new_labels)
            self._added = {}
        self._hash_keys, self._hash_labels = keys, labels

    def shared(self) -> dict[int, list[int]]:
        """Elements that have had more than one log: label -> live slots (a copy)."""
        return {label: list(members) for label, members in self._shared.items()}

    def __eq__(self, other: object) -> bool:
        """Same elements, members and hashes (between batches: nothing left to merge)."""
        if not isinstance(other, Elements):
            return NotImplemented
        return (
            self.count == other.count and self._shared == other._shared
            and np.array_equal(self._hash_keys, other._hash_keys) and np.array_equal(self._hash_labels, other._hash_labels)
            and self._added == other._added and self._removed == other._removed
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def nbytes(self) -> int:
        """Roughly: the sorted arrays plus the member lists of shared elements."""
        return int(self._hash_keys.nbytes + self._hash_labels.nbytes) + 120 * len(self._shared)
