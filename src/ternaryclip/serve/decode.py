"""Image decoding in a bounded worker pool, with the pixel limit checked before any pixel is decoded."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import UnidentifiedImageError

from ..data.images import ImageTooLarge, decode_rgb
from ..runtime.preprocess import ImageError, Preprocess
from .errors import QueueFull


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # float32 [3, size, size], the model's input
    width: int  # of the image as sent
    height: int


def decode_image(data: bytes, name: str, preprocess: Preprocess, max_pixels: int) -> DecodedImage:
    """Bytes -> the model's pixels; any fault becomes an ImageError naming ``name``.

    Decoded by :func:`~ternaryclip.data.images.decode_rgb`, as files are everywhere else (upright by
    their EXIF orientation); it reads only the header before checking the pixel limit, so a
    decompression bomb is refused before it costs memory.
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        image = decode_rgb(data, max_pixels=max_pixels)
        return DecodedImage(preprocess(image), image.width, image.height)
    except ImageError:
        raise
    except ImageTooLarge as err:
        raise ImageError(f"{name}: {err} (--max-pixels)") from None
    except Exception as err:  # Pillow raises many kinds on broken files; all mean "bad image"
        if isinstance(err.__cause__, UnidentifiedImageError):
            raise ImageError(f"{name}: not an image format Pillow can read") from None
        raise ImageError(f"{name}: cannot decode image ({type(err).__name__}: {err})") from None


class ImageDecoder:
    """``workers`` threads decode; at most ``max_pending`` images wait or decode at a time, beyond that 503."""

    def __init__(self, workers: int, max_pending: int, max_pixels: int, retry_after_s: int = 1):
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="ternaryclip-decode")
        self.max_pending, self.max_pixels, self.retry_after_s = max_pending, max_pixels, retry_after_s
        self.pending = 0  # touched only on the event loop

    async def decode(self, files: list[tuple[str, bytes]], preprocess: Preprocess) -> list[DecodedImage]:
        """Decode ``(name, bytes)`` pairs in parallel; the first bad one raises its ImageError."""
        if self.pending + len(files) > self.max_pending:
            raise QueueFull("image decoding", self.retry_after_s)
        loop = asyncio.get_running_loop()
        self.pending += len(files)
        try:
            futures = [
                loop.run_in_executor(self.pool, decode_image, data, name, preprocess, self.max_pixels)
                for name, data in files
            ]
            return list(await asyncio.gather(*futures))
        finally:
            self.pending -= len(files)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
