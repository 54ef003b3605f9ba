"""Image decoding and caption tables shared by training and evaluation (no torch)."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_PIXELS = 100_000_000  # larger images are skipped: decoding one would take gigabytes


class DataError(ValueError):
    """A data spec that cannot be used: missing paths, no samples, missing columns."""


class ImageTooLarge(ValueError):
    """An image with more than ``MAX_PIXELS`` pixels: skipped rather than decoded."""


def decode_rgb(source) -> Image.Image:
    """A PIL RGB(-convertible) image from a path or bytes; 16-bit and float images scaled to 8 bits.

    Raises ``ValueError`` (with the reason) for anything that cannot become an RGB image.
    """
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        if image.width * image.height > MAX_PIXELS:
            raise ImageTooLarge(f"too large ({image.width}x{image.height})")
        image.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode: {err}") from err
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return image


def read_caption_table(path: str, image_key: str = "filepath", caption_key: str = "title") -> list[tuple[str, str]]:
    """``(image path, caption)`` rows of a CSV (or ``.tsv``); relative paths are resolved against its folder."""
    if not os.path.isfile(path):
        raise DataError(f"CSV/TSV file {path!r} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.endswith(".tsv") else ",")
        columns = reader.fieldnames or []
        if image_key not in columns or caption_key not in columns:
            raise DataError(
                f"{path}: needs columns {image_key!r} and {caption_key!r} (--image-key / --caption-key), has {columns}"
            )
        base = os.path.dirname(os.path.abspath(path))
        return [(os.path.join(base, row[image_key]), row[caption_key] or "") for row in reader]


def model_pixels(image, preprocess) -> np.ndarray:
    """One image as the model's normalized ``[3, S, S]`` float32 pixels: the one path training and eval share.

    ``image`` is a uint8 ``[H, W, 3]`` array (already at the model's size: normalized directly, else
    resized like any picture), a path or encoded bytes (:func:`decode_rgb`).  ``preprocess`` is the
    runtime's ``Preprocess``.  Raises ``ValueError`` for what cannot become pixels.
    """
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (preprocess.size, preprocess.size):
            return preprocess.normalize(image)
        return preprocess(Image.fromarray(image))
    return preprocess(decode_rgb(image))
