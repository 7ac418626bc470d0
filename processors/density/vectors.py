"""Vectors as the index stores them, and similarities as densities add them up.

Two decisions here make streaming densities equal the exact batch computation,
whatever the batching and whatever the order of a replay:

* every vector is stored once, as the float32 of its float64 L2-normalisation, and
  cosine similarity is then a plain dot product of two stored vectors;
* a similarity is added to a density as a 64-bit fixed-point integer (units of
  2**-32), so sums are associative: the same neighbours give bit-identical
  densities in any order, and a tie between two logs stays a tie.

A pair's similarity must be the same integer whichever computation produced it
(a matrix product whose blocking depends on the batch, on insert and again on
eviction).  :func:`settle` gives that for float64 matrix products: the canonical
value is ``rint(fsum(a*b) * 2**32)`` (the dot product correctly rounded to float64,
then to fixed point); a float64 product is provably within :func:`dot_margin` of
it, so only the pairs that close to a rounding edge (or to the radius) are
recomputed with ``math.fsum``.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

# Fixed-point scale of similarities inside densities: a float32 similarity in [2**-8, 1]
# is an exact multiple of 2**-32, so the conversion loses nothing there.
SCALE = float(2**32)


def normalise(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows (float32) and a mask of rows that could be normalised (finite, non-zero).

    Each row is handled on its own (float64 norm, then one rounding to float32), so a
    vector is stored identically whichever batch it arrives in.
    """
    m64 = np.asarray(matrix, dtype=np.float64)
    if m64.ndim != 2:
        raise ValueError(f"expected a 2-d matrix of vectors, got shape {m64.shape}")
    finite = np.isfinite(m64).all(axis=1)
    safe = np.where(finite[:, None], m64, 0.0)
    # Scale by the largest component first: squares of tiny or huge values would under/overflow.
    peak = np.abs(safe).max(axis=1) if safe.shape[1] else np.zeros(len(safe))
    ok = finite & (peak > 0)
    out = np.zeros(m64.shape, dtype=np.float32)
    if ok.any():
        scaled = safe[ok] / peak[ok, None]
        norms = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        out[ok] = (scaled / norms[:, None]).astype(np.float32)
    return out, ok


def to_fixed(similarities: np.ndarray) -> np.ndarray:
    """Similarities (any float dtype) as int64 fixed point."""
    return np.rint(np.asarray(similarities, dtype=np.float64) * SCALE).astype(np.int64)


def from_fixed(values: np.ndarray | int) -> np.ndarray | float:
    """Fixed-point densities back to floats (for output and metrics)."""
    if isinstance(values, (int, np.integer)):
        return float(values) / SCALE
    return np.asarray(values, dtype=np.float64) / SCALE


def exact_dots(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise float64 dot products of two equally long lists of stored vectors.

    Computed pair by pair (no matrix product whose blocking depends on the batch), so
    the value of a pair never depends on what else is in the call.
    """
    return np.einsum("ij,ij->i", np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64))


def uid_hash(uuid: str) -> int:
    """A stable 63-bit hash of a log's uuid (duplicate detection and deterministic tie-breaks)."""
    return int.from_bytes(hashlib.blake2b(uuid.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def dot_margin(dim: int) -> float:
    """A bound on |float64 dot product - correctly rounded one| for two stored (unit, float32) vectors.

    Products of float32 values are exact in float64; summing ``dim`` of them in any
    order errs by at most ``dim * 2**-53 * sum|a_i * b_i|`` (<= ``dim * 2**-53`` for
    unit vectors), plus half an ulp for the correctly rounded reference: doubled here
    for norms a rounding above 1.
    """
    return 2.0 * (dim + 1) * 2.0**-53


def settle(
    approx: np.ndarray, left: np.ndarray, li: np.ndarray, right: np.ndarray, ri: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which pairs are within ``threshold`` and their fixed-point similarities, canonically.

    ``approx[k]`` is a float64 dot product (any summation order) of the stored vectors
    ``left[li[k]]`` and ``right[ri[k]]``.  A pair is inside when its correctly rounded
    dot product is ``>= threshold``; its similarity is ``rint(that * 2**32)``.  Where
    ``approx`` is further than :func:`dot_margin` from the threshold and from every
    rounding edge it gives that decision and that integer already.  The rest (under
    0.1 %) is recomputed: summed in long double, whose bound is 2**11 times tighter,
    and the very few still undecided with ``math.fsum``.
    """
    approx = np.asarray(approx, dtype=np.float64)
    dim = left.shape[1]
    inside = approx >= threshold
    fixed = np.rint(approx * SCALE).astype(np.int64)
    todo = np.flatnonzero(~_decided(approx, dot_margin(dim), threshold))
    if todo.size and _LONG_DOUBLE_EPS is not None:
        precise = (left[li[todo]].astype(np.longdouble) * right[ri[todo]].astype(np.longdouble)).sum(axis=1)
        inside[todo] = precise >= threshold
        fixed[todo] = np.rint(precise * SCALE).astype(np.int64)
        # Products are exact in long double too; the sum errs by at most dim * eps, and the
        # correctly rounded float64 lies within 2**-53 of the exact value: doubled.
        todo = todo[~_decided(precise, 2.0 * (dim * _LONG_DOUBLE_EPS + 2.0**-53), threshold)]
    for k in todo.tolist():
        exact = _exact_dot(left[li[k]], right[ri[k]])
        inside[k] = exact >= threshold
        fixed[k] = int(np.rint(exact * SCALE))
    return inside, fixed


# Long double where it has at least 64 mantissa bits (x86's 80-bit, IEEE quad), else None
# (it is plain double on some platforms, and then only math.fsum is exact enough).
_LONG_DOUBLE_EPS = float(np.finfo(np.longdouble).eps) if np.finfo(np.longdouble).nmant >= 63 else None


def _decided(values: np.ndarray, bound: float, threshold: float) -> np.ndarray:
    """Where values known to within ``bound`` fix both the in/out decision and the fixed-point integer."""
    scaled = values * SCALE
    return (np.abs(values - threshold) > bound) & (np.abs(scaled - np.floor(scaled) - 0.5) > bound * SCALE)


def exact_fixed(left: np.ndarray, right: np.ndarray) -> int:
    """The canonical fixed-point similarity of one pair of stored vectors."""
    return int(np.rint(_exact_dot(left, right) * SCALE))


def _exact_dot(left: np.ndarray, right: np.ndarray) -> float:
    """The dot product correctly rounded to float64: products of float32 values are exact in float64."""
    return math.fsum((np.asarray(left, dtype=np.float64) * np.asarray(right, dtype=np.float64)).tolist())
