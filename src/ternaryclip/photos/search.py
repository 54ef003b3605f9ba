"""Search the photo database by text, by an image, or by a stored photo ("more like this").

Search is exact: one matrix product of the query with every stored embedding (normalized, so the
product is the cosine similarity).  The matrix is read once and kept until the database's generation
counter changes, so a page serving queries while ``index`` runs sees each committed batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..data.images import decode_rgb
from .duplicates import find_duplicates
from .encoder import Encoder
from .index import decode_side
from .store import PhotoStore


@dataclass
class Hit:
    id: int
    score: float
    path: str
    labels: list[tuple[str, float]]

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "score": round(self.score, 4),
            "path": self.path,
            "labels": [{"label": label, "score": round(score, 4)} for label, score in self.labels],
        }


def top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and scores of the ``k`` rows of ``vectors`` most similar to ``query``, best first."""
    if len(vectors) == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    scores = vectors @ query.astype(np.float32)
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return order, scores[order]


class Searcher:
    """Queries against one database; safe to share between threads (one lock around the cache)."""

    def __init__(self, store: PhotoStore, encoder: Encoder | None = None):
        self.store, self.encoder = store, encoder
        self._lock = threading.Lock()
        self._generation = None
        self._ids = np.zeros(0, np.int64)
        self._vectors = np.zeros((0, 0), np.float32)
        self._duplicates: tuple = (None, None, [])  # (generation, threshold, groups)

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            generation = self.store.generation()
            if generation != self._generation:
                self._ids, self._vectors = self.store.embeddings()
                self._generation = generation
            return self._ids, self._vectors

    def _need_encoder(self) -> Encoder:
        if self.encoder is None:
            raise ValueError("this search needs the model: give --model (the .tclip the database was indexed with)")
        return self.encoder

    def by_vector(self, query: np.ndarray, k: int = 20, exclude: int | None = None) -> list[Hit]:
        ids, vectors = self._matrix()
        if len(ids) and query.shape[-1] != vectors.shape[1]:
            raise ValueError(f"query has {query.shape[-1]} dimensions, the database {vectors.shape[1]}")
        rows, scores = top_k(vectors, query, k + (exclude is not None))
        hits = [(int(ids[r]), float(s)) for r, s in zip(rows, scores) if ids[r] != exclude][:k]
        with self._lock:
            info = self.store.photos([i for i, _ in hits])
        return [Hit(i, s, info[i]["path"], info[i]["labels"]) for i, s in hits if i in info]

    def by_text(self, text: str, k: int = 20) -> list[Hit]:
        if not text.strip():
            raise ValueError("the search text is empty")
        return self.by_vector(self._need_encoder().encode_texts([text])[0], k)

    def by_image(self, image, k: int = 20) -> list[Hit]:
        """``image``: a path or PIL image; ImageError (a ValueError) when it cannot be read."""
        encoder = self._need_encoder()
        try:  # decoded as index decodes (upright, same draft scale): a stored photo finds itself at cosine 1
            picture = decode_rgb(image, min_side=decode_side(encoder)) if not hasattr(image, "convert") else image
        except ValueError as err:
            raise ValueError(f"{image}: {err}") from None
        return self.by_vector(encoder.encode_pixels(encoder.preprocess(picture)[None])[0], k)

    def duplicates(self, threshold: float = 0.95) -> list[list[dict]]:
        """Groups of near-identical photos (:func:`~.duplicates.find_duplicates`), kept until the database changes."""
        with self._lock:
            generation = self.store.generation()
            if self._duplicates[:2] != (generation, threshold):
                self._duplicates = (generation, threshold, find_duplicates(self.store, threshold))
            return self._duplicates[2]

    def count(self) -> int:
        with self._lock:
            return self.store.count()

    def thumbnail(self, photo_id: int) -> bytes | None:
        with self._lock:
            return self.store.thumbnail(photo_id)

    def path_of(self, photo_id: int) -> str | None:
        with self._lock:
            return self.store.path_of(photo_id)

    def like(self, photo_id: int, k: int = 20) -> list[Hit]:
        """Photos most like a stored one (the photo itself left out)."""
        with self._lock:
            vector = self.store.embedding(photo_id)
        return self.by_vector(vector, k, exclude=photo_id)
