"""Image decoding and caption tables shared by training and evaluation (no torch)."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_PIXELS = 100_000_000  # larger images are skipped: decoding one would take gigabytes


class DataError(ValueError):
    """A data spec that cannot be used: missing paths, no samples, missing columns."""


class ImageTooLarge(ValueError):
    """An image with more than ``MAX_PIXELS`` pixels: skipped rather than decoded."""


def decode_rgb(source, min_side: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """A PIL RGB(-convertible) image from a path or bytes, upright; 16-bit and float images scaled to 8 bits.

    The one decoder of every path that reads files (training, evaluation, the runtime's
    ``encode_image(path)``, the server, photo indexing and search), so they all see the same pixels:

    - upright: the EXIF orientation tag (phones store portraits sideways and tag them) is applied,
      as every photo viewer does;
    - ``min_side``: a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size by libjpeg's own DCT scaling
      (``Image.draft``, several times faster than a full decode): the smallest scale whose shorter
      side is still at least ``min_side``.  Photo indexing asks for twice the model's input side;
      everything else decodes at full size;
    - HEIC/HEIF photos when ``pillow-heif`` is installed.

    Raises ``ValueError`` (with the reason) for anything that cannot become an RGB image, and
    :class:`ImageTooLarge` beyond ``max_pixels`` (default ``MAX_PIXELS``), before any pixel is decoded.

    >>> decode_rgb("IMG_0001.JPG", min_side=448).size  # a 4032 x 3024 portrait, decoded at 1/4  # doctest: +SKIP
    (756, 1008)
    """
    return decode_sized(source, min_side, max_pixels)[0]


def decode_sized(
    source, min_side: int | None = None, max_pixels: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`decode_rgb` and the photo's full upright size ``(width, height)`` (the image may be smaller)."""
    _register_heif()
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        width, height = image.size
        max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
        if width * height > max_pixels:
            raise ImageTooLarge(f"{width}x{height} pixels is more than the limit of {max_pixels}")
        short = min(width, height)
        if min_side and image.format == "JPEG" and short >= 2 * min_side:
            image.draft("RGB", (-(-width * min_side // short), -(-height * min_side // short)))
        image.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode: {err}") from err
    if _upright(image):
        width, height = height, width
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return image, (width, height)


def _upright(image: Image.Image) -> bool:
    """Apply the EXIF orientation in place (mirrorings and quarter turns); True when width and height swapped.

    A broken tag leaves the pixels as stored, as photo viewers do.
    """
    stored = image.size
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # noqa: BLE001 -- malformed EXIF of any kind
        pass
    return image.size != stored


_heif_registered = False


def _register_heif() -> None:
    """HEIC/HEIF (iPhone photos) through the optional pillow-heif plugin, registered once."""
    global _heif_registered
    if not _heif_registered:
        _heif_registered = True
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            return
        register_heif_opener()


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
