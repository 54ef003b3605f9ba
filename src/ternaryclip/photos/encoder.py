"""What indexing and search need from a CLIP: preprocess, embed pixels, embed texts (L2-normalized).

The photo tools see a model only through this interface, so the same pipeline runs the ternary
runtime (the product) and, in benchmarks, open_clip in fp32 (the comparison).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

import numpy as np


class Encoder(Protocol):
    model_id: str
    dim: int

    def preprocess(self, image) -> np.ndarray: ...  # PIL image -> float32 [3, S, S]

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray: ...  # [B, 3, S, S] -> normalized [B, D]

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...  # -> normalized [B, D]


def file_id(path: str | os.PathLike) -> str:
    """A model's identity in a database: its name and a hash of its bytes (a retrained model is another model)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"{Path(path).name}:{digest.hexdigest()[:16]}"


class RuntimeEncoder:
    """A ``.tclip`` model run by the torch-free runtime."""

    def __init__(
        self, model_path: str | os.PathLike, threads: int | None = None, batch_size: int = 32, mode: str = "fast"
    ):
        from ..runtime import load

        self.model = load(model_path, mode=mode, threads=threads, batch_size=batch_size)
        self.model_id = file_id(model_path)
        self.dim = self.model.arch.embed_dim

    def preprocess(self, image) -> np.ndarray:
        return self.model.preprocess(image)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.model.encode_image(pixels, normalize=True)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_text(list(texts), normalize=True)
