"""Vectors as the index stores them, and similarities as densities add them up.

Two decisions here make streaming densities equal the exact batch computation,
whatever the batching and whatever the order of a replay:

* every vector is stored once, as the float32 of its float64 L2-normalisation, and
  cosine similarity is then a plain dot product of two stored vectors;
* a similarity is added to a density as a 64-bit fixed-point integer (units of
  2**-32), so sums are associative: the same neighbours give bit-identical
  densities in any order, and a tie between two logs stays a tie.
"""

from __future__ import annotations

import hashlib

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
