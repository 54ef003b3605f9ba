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
    """``model_id`` names the model in a database; an encoder may also give ``image_size`` (its input side,
    which lets indexing decode JPEGs at a reduced scale) and ``model_file`` (``{"path", "sha256"}``, recorded so
    that ``search`` finds the model by itself)."""

    model_id: str
    dim: int

    def preprocess(self, image) -> np.ndarray: ...  # PIL image -> float32 [3, S, S]

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray: ...  # [B, 3, S, S] -> normalized [B, D]

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...  # -> normalized [B, D]


def sha256_of(path: str | os.PathLike) -> str:
    """The file's SHA-256 as hex, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_id(path: str | os.PathLike, sha256: str | None = None) -> str:
    """A model's identity in a database: its name and a hash of its bytes (a retrained model is another model)."""
    return f"{Path(path).name}:{(sha256 or sha256_of(path))[:16]}"


class RuntimeEncoder:
    """A ``.tclip`` model run by the torch-free runtime."""

    def __init__(
        self, model_path: str | os.PathLike, threads: int | None = None, batch_size: int = 32, mode: str = "fast"
    ):
        from ..runtime import load

        self.model = load(model_path, mode=mode, threads=threads, batch_size=batch_size)
        sha256 = sha256_of(model_path)
        self.model_id = file_id(model_path, sha256)
        self.model_file = {"path": str(Path(model_path).resolve()), "sha256": sha256}
        self.dim = self.model.arch.embed_dim
        self.image_size = self.model.preprocess.size

    def preprocess(self, image) -> np.ndarray:
        return self.model.preprocess(image)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.model.encode_image(pixels, normalize=True)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_text(list(texts), normalize=True)
