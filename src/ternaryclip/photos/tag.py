"""Zero-shot tagging: score every photo against a list of labels and keep the best few in the database."""

from __future__ import annotations

import os

import numpy as np

from .encoder import Encoder
from .store import PhotoStore


def read_labels(path: str | os.PathLike) -> list[str]:
    """One label a line; blank lines and ``#`` comments skipped, duplicates dropped (first kept)."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    labels = list(dict.fromkeys(s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")))
    if not labels:
        raise ValueError(f"{path}: no labels (one label a line)")
    return labels


def tag_photos(
    store: PhotoStore, encoder: Encoder, labels: list[str], template: str = "a photo of {}", top: int = 3
) -> int:
    """Write the ``top`` labels (by cosine similarity) of every photo into ``store``; returns photos tagged."""
    if "{}" not in template:
        raise ValueError(f"the template must contain {{}} where the label goes, got {template!r}")
    store.check_model(encoder.model_id, encoder.dim)
    label_vectors = encoder.encode_texts([template.format(label) for label in labels])
    ids, vectors = store.embeddings()
    if len(ids) == 0:
        return 0
    scores = vectors @ label_vectors.T
    best = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, top)]
    store.set_labels({int(i): [(labels[j], float(scores[row, j])) for j in best[row]] for row, i in enumerate(ids)})
    return len(ids)
