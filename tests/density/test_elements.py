"""Elements: member lists only for shared elements, hashes in sorted arrays (issue 20's memory work)."""

from __future__ import annotations

import numpy as np

from processors.density.elements import SLOT_BITS, Elements


def _label(slot: int, gen: int = 0) -> int:
    return slot | gen << SLOT_BITS


def _columns(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.uint64)


def test_a_plain_element_is_its_creator_and_a_second_log_gets_a_member_list() -> None:
    live, elem = _columns(8)
    e = Elements()
    for slot in (0, 1, 2):
        e.create(_label(slot), vector_hash=100 + slot)
        live[slot], elem[slot] = True, _label(slot)
    e.merge()
    assert e.count == 3 and e.members(_label(1)) == [1] and e.shared() == {}
    e.join(_label(1), 5)  # slot 5 has slot 1's vector
    live[5], elem[5] = True, _label(1)
    assert e.members(_label(1)) == [1, 5] and e.count == 3
    # the creator leaves: the element stays with slot 5, under the creator's label
    assert e.leave(_label(1), {1}) is False
    live[1] = False
    assert e.members(_label(1)) == [5]
    assert e.alive(np.array([_label(0), _label(1), _label(2), _label(3)], np.uint64), live, elem).tolist() == [True, True, True, False]
    assert e.leave(_label(1), {5}) is True and e.count == 2
    live[5] = False
    assert e.alive(np.array([_label(1)], np.uint64), live, elem).tolist() == [False]


def test_an_element_whose_creator_is_its_last_log_again_is_plain() -> None:
    e = Elements()
    e.create(_label(3), 7)
    e.join(_label(3), 4)
    assert e.leave(_label(3), {4}) is False
    assert e.shared() == {} and e.members(_label(3)) == [3]


def test_a_reused_slot_does_not_revive_an_element_of_its_former_log() -> None:
    live, elem = _columns(4)
    e = Elements()
    e.create(_label(2, gen=0), 1)
    live[2], elem[2] = True, _label(2, 0)
    assert e.leave(_label(2, 0), {2}) is True
    e.create(_label(2, gen=1), 2)  # the slot's next log: a new element under a new label
    elem[2] = _label(2, 1)
    assert e.alive(np.array([_label(2, 0), _label(2, 1)], np.uint64), live, elem).tolist() == [False, True]


def test_hashes_find_every_element_with_that_hash_in_creation_order_across_merges() -> None:
    e = Elements()
    e.create(_label(0), 50)
    e.create(_label(1), 10)
    assert e.with_hash(50) == [_label(0)]  # before the merge too
    e.merge()
    e.create(_label(2), 50)  # another vector with the same hash (a collision)
    assert e.with_hash(50) == [_label(0), _label(2)]
    e.merge()
    assert e.with_hash(50) == [_label(0), _label(2)] and e.with_hash(10) == [_label(1)] and e.with_hash(11) == []
    e.forget_hash(50, _label(0))
    assert e.with_hash(50) == [_label(2)]  # before the merge too
    e.merge()
    assert e.with_hash(50) == [_label(2)]
    e.create(_label(3), 60)
    e.forget_hash(60, _label(3))  # created and deleted within one batch
    e.merge()
    assert e.with_hash(60) == [] and e.nbytes() == 2 * 16


def test_of_rebuilds_members_from_the_columns_as_the_running_index_had_them() -> None:
    running = Elements()
    live, elem = _columns(6)
    for slot in (0, 1, 2):
        running.create(_label(slot), slot)
        live[slot], elem[slot] = True, _label(slot)
    running.join(_label(0), 4)
    live[4], elem[4] = True, _label(0)
    running.join(_label(1), 5)
    live[5], elem[5] = True, _label(1)
    running.leave(_label(1), {1})
    live[1] = False
    loaded = Elements.of(np.flatnonzero(live), elem)
    assert loaded.count == running.count == 3
    assert loaded.shared() == running.shared() == {_label(0): [0, 4], _label(1): [5]}
