"""Vectors for execution logs that arrive without one.

The default is feature hashing of the rendered inputs and output (scikit-learn's
``HashingVectorizer``, word unigrams and bigrams, L2-normalised): no model, no
download, the same text always gives the same vector.  A sentence-transformers
model can be used instead, from a local directory only, behind the ``embed`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

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
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = dim
        self._vectorizer = HashingVectorizer(
            n_features=dim, ngram_range=(1, 2), alternate_sign=True, norm="l2", lowercase=True,
            token_pattern=r"(?u)\b\w+\b", dtype=np.float32,  # one-letter words count too
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._vectorizer.transform(texts).toarray().astype(np.float32, copy=False)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory (never downloaded).

    Texts are encoded one at a time: batching pads texts to a common length, which
    changes the last bits of an embedding, and replays must give identical vectors.
    """

    name = "sentence-transformers"

    def __init__(self, model_path: Path) -> None:
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise EmbedderError(f"sentence-transformers model directory {path} does not exist (nothing is downloaded)")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbedderError(
                "density.embedder=sentence-transformers needs the 'embed' extra: pip install 'vector-trainer[embed]'"
            ) from None
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        dim = self._model.get_sentence_embedding_dimension()
        if not dim:
            raise EmbedderError(f"the model in {path} does not report its embedding dimension")
        self.dim = int(dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.encode(texts, batch_size=1, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


def make_embedder(kind: str, *, dim: int = 384, model_path: Path | None = None) -> Embedder:
    """The embedder named by ``density.embedder``."""
    if kind == "hashing":
        return HashingEmbedder(dim)
    if kind == "sentence-transformers":
        if model_path is None:
            raise EmbedderError("density.embed_model_path is required for the sentence-transformers embedder")
        return SentenceTransformerEmbedder(model_path)
    raise EmbedderError(f"unknown embedder {kind!r}; known: hashing, sentence-transformers")
