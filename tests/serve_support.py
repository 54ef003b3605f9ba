"""Shared pieces of the server tests: a tiny .tclip with CLIP's vocabulary, images as bytes, bad images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from helpers import TINY_OPEN_CLIP


def build_tiny_tclip(path, seed: int = 0):
    """A tiny ternary CLIP (32 px images, CLIP's 49408-token vocabulary) written to ``path``."""
    import open_clip
    import torch

    import ternaryclip
    from ternaryclip.quant import TernaryConfig, ternarize_

    torch.manual_seed(seed)
    model = open_clip.CLIP(**{**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}})
    ternarize_(model.eval(), TernaryConfig(embedding=True))
    return ternaryclip.save(model, path)


def image_bytes(color=(200, 30, 40), size=(48, 36), fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A small image with some texture (so different images embed differently)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(color, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def header_bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid 1x1 PNG whose header claims ``width x height``: decoding it would need tens of GB."""
    data = bytearray(image_bytes(size=(1, 1), fmt="PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def pil(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im
