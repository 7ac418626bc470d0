"""A read-only numpy view of an hnswlib index's level-0 block, without copying it.

hnswlib's Python API reads the level-0 block (every element's links, vector and
label) only through ``__getstate__``, which copies all of it: ~1.7 KB per 384-d
element, taken once per insert or eviction for the orphan scan and the first-k hints.
At 100k elements that copy was the largest part of ``extract``'s peak memory.  This
module finds the block's address inside the C++ object instead and maps it as a numpy
array, so the bytes are read where hnswlib keeps them.

Nothing here is trusted blindly: the object layout is the one of hnswlib 0.8.0's
``HierarchicalNSW`` behind pybind11's simple instance, and it is used only after
(1) a probe index built once per process, whose every pointer is checked to lead into
readable memory before it is followed, shows that the view gives the very bytes
``__getstate__`` copies, and (2) every call finds the index's own sizes (capacity,
element count, M, ef_construction, ef, dimension, offsets) where the layout says they
are.  Any mismatch gives None, and callers take the copy as before.

A view is valid until hnswlib changes the index: ``resize_index`` moves the block
(the view would then point at freed memory) and ``add_items``/``mark_deleted`` write
into it.  Callers drop it whenever the graph changes; one index is never used from
two threads at once.
"""

from __future__ import annotations

import ctypes
import functools

import hnswlib
import numpy as np

_WORD = ctypes.sizeof(ctypes.c_size_t)
# pybind11 instance: PyObject header (refcount, type), then the value pointer.
_VALUE_PTR = 2
# hnswlib 0.8.0 python bindings' Index<float>: std::string space_name (4 words), int dim, ...,
# HierarchicalNSW<float>* appr_alg at word 9.
_INDEX_DIM, _INDEX_ALG = 4, 9
# HierarchicalNSW<float>: vtable, then max_elements_, cur_element_count, size_data_per_element_,
# size_links_per_element_, num_deleted_, M_, maxM_, maxM0_, ef_construction_, ef_ (words 1-10);
# enterpoint_node_ (26), size_links_level0_, offsetData_, offsetLevel0_, label_offset_ (27-30),
# data_level0_memory_ (31).
_ALG_WORDS = 32


def _words(address: int, n: int) -> list[int]:
    return list((ctypes.c_size_t * n).from_address(address))


def _readable(address: int, size: int) -> bool:
    """``size`` bytes at ``address`` lie in one readable mapping of this process (Linux; else False)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                span, perms = line.split(None, 2)[:2]
                low, high = (int(x, 16) for x in span.split("-"))
                if low <= address and address + size <= high:
                    return perms.startswith("r")
    except OSError:
        pass
    return False


def _fields(index: hnswlib.Index, check_pointers: bool = False) -> list[int] | None:
    """The HierarchicalNSW words of ``index`` when they hold its own sizes where the layout says.

    With ``check_pointers`` (the probe: the layout is not confirmed yet), every pointer is
    checked to lead into readable memory before it is followed, so that another layout
    gives None instead of a crash.
    """
    value, words = _words(id(index), _VALUE_PTR + 1)[_VALUE_PTR], max(_INDEX_DIM, _INDEX_ALG) + 1
    if value == 0 or (check_pointers and not _readable(value, _WORD * words)):
        return None
    head = _words(value, words)
    if head[_INDEX_DIM] & 0xFFFFFFFF != index.dim or head[_INDEX_ALG] == 0:
        return None
    if check_pointers and not _readable(head[_INDEX_ALG], _WORD * _ALG_WORDS):
        return None
    w = _words(head[_INDEX_ALG], _ALG_WORDS)
    dim = index.dim
    max_m0 = w[8]
    links = 4 + 4 * max_m0  # a level-0 link list: its count, then max_m0 ids; the vector and the label follow
    expected = {
        1: index.get_max_elements(), 2: index.get_current_count(), 3: links + 4 * dim + 8, 6: index.M, 8: 2 * index.M,
        9: index.ef_construction, 10: index.ef, 27: links, 28: links, 29: 0, 30: links + 4 * dim,
    }
    if any(w[i] != v for i, v in expected.items()) or w[31] == 0:
        return None
    return w


def _view_of(index: hnswlib.Index, check_pointers: bool = False) -> tuple[np.ndarray, int, int, int, int] | None:
    w = _fields(index, check_pointers)
    if w is None:
        return None
    count, per = w[2], w[3]
    if count == 0 or (check_pointers and not _readable(w[31], count * per)):
        return None
    buffer = (ctypes.c_uint8 * (count * per)).from_address(w[31])
    block = np.frombuffer(buffer, dtype=np.uint8).reshape(count, per)
    block.flags.writeable = False
    return block, w[28], w[30], w[8], w[26] & 0xFFFFFFFF


def level0_copy(index: hnswlib.Index) -> tuple[np.ndarray, int, int, int, int]:
    """What :func:`level0_view` gives, copied from hnswlib's pickling state (any hnswlib layout)."""
    state = index.__getstate__()[0]
    count, per = int(state["cur_element_count"]), int(state["size_data_per_element"])
    block = np.asarray(state["data_level0"]).view(np.uint8)[: count * per].reshape(count, per)
    return block, int(state["offset_data"]), int(state["label_offset"]), int(state["max_M0"]), int(state["enterpoint_node"])


@functools.cache
def _layout_confirmed() -> bool:
    """Once per process: a small index read both ways gives the same bytes and fields."""
    rng = np.random.default_rng(7)
    probe = hnswlib.Index(space="ip", dim=12)
    probe.init_index(max_elements=64, M=6, ef_construction=40, random_seed=3, allow_replace_deleted=True)
    probe.add_items(rng.standard_normal((41, 12)).astype(np.float32), np.arange(41, dtype=np.uint64) * 7 + 5, num_threads=1)
    probe.mark_deleted(12)
    probe.resize_index(90)
    got = _view_of(probe, check_pointers=True)
    if got is None:
        return False
    block, *fields = got
    copied, *copied_fields = level0_copy(probe)
    return block.shape == copied.shape and bool(np.array_equal(block, copied)) and fields == copied_fields


def level0_view(index: hnswlib.Index) -> tuple[np.ndarray, int, int, int, int] | None:
    """``(block, offset_data, label_offset, max_m0, entry)`` read in place, or None.

    ``block`` is a read-only ``elements x bytes`` uint8 view of hnswlib's own memory,
    valid until the index is next changed.  None when this hnswlib's layout is not the
    one this module reads, or the index is empty.
    """
    if not _layout_confirmed():
        return None
    return _view_of(index)
