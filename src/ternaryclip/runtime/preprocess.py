"""Image preprocessing equal to open_clip's eval transform, with Pillow and numpy only.

open_clip (torchvision on PIL images): resize the shortest side to ``size`` (bicubic, in the image's
own mode -- Pillow resizes palette images with nearest neighbour and RGBA premultiplied), center crop
``size x size``, convert to RGB, scale to [0, 1], normalize by the CLIP mean and std.  The same
Pillow calls in the same order give the same pixels.

Files are decoded by :func:`ternaryclip.data.images.decode_rgb`, the decoder training and evaluation
use, so a 16-bit PNG gives the same pixels (and embedding) whichever way it reaches the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..arch import MAX_IMAGE_SIZE, PreprocessSpec

_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


MAX_SIZE = MAX_IMAGE_SIZE  # the model's input side; larger is no CLIP and would take gigabytes a batch
MAX_RESIZED_PIXELS = 100_000_000  # the shortest-side resize of a very elongated image


class ImageError(ValueError):
    """An image that cannot be opened or decoded."""


@dataclass(frozen=True)
class Preprocess(PreprocessSpec):
    """A checked :class:`PreprocessSpec` (``from_meta`` parses the file's metadata) that makes pixels."""

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[..., size, size, 3]`` already at the model's size -> float32 ``[..., 3, size, size]``.

        ``__call__`` ends here after its resize and crop; arrays already at size skip the PIL round trip.
        """
        if images.dtype != np.uint8 or images.shape[-3:] != (self.size, self.size, 3):
            raise ValueError(f"expected uint8 [..., {self.size}, {self.size}, 3], got {images.dtype} {images.shape}")
        pixels = images.astype(np.float32) / 255.0
        pixels = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(np.moveaxis(pixels, -1, -3))

    def __call__(self, image) -> np.ndarray:
        """A PIL image or a path -> float32 ``[3, size, size]``."""
        image = open_image(image)
        resample = _FILTERS[self.interpolation]
        w, h = image.size
        if w < 1 or h < 1:
            raise ImageError(f"{_name(image)}: the image is empty ({w}x{h} pixels)")
        if self.resize_mode == "squash":
            image = image.resize((self.size, self.size), resample)
        else:
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.size, int(self.size * long / short)
            if new_short * new_long > MAX_RESIZED_PIXELS:
                raise ImageError(f"{_name(image)}: {w}x{h} is too elongated to resize to a {self.size} shortest side")
            new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
            image = image.resize((new_w, new_h), resample)  # Pillow returns a copy when the size matches
            w, h = image.size
            top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))
            image = image.crop((left, top, left + self.size, top + self.size))
        return self.normalize(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _name(image: Image.Image) -> str:
    return getattr(image, "filename", "") or "image"


def open_image(image) -> Image.Image:
    """A PIL image from a PIL image, a file path or encoded bytes; ImageError names the file if it fails.

    Paths and bytes go through the training/evaluation decoder (16-bit and float images scaled to
    8 bits); PIL images are used as given.
    """
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        from ..data.images import decode_rgb

        try:
            return decode_rgb(image)
        except (ValueError, UnidentifiedImageError) as err:
            label = "image bytes" if isinstance(image, (bytes, bytearray)) else str(image)
            raise ImageError(f"{label}: cannot read image ({err})") from None
    raise ImageError(f"expected a PIL image or a path (or image bytes), got {type(image).__name__}")
