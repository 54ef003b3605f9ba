"""The torch-free CLIP model over a ``.tclip`` file: ``encode_image`` / ``encode_text`` like open_clip's.

The layers live in :mod:`.layers`, the two towers in :mod:`.towers`; this module batches the inputs,
checks them, and normalizes the embeddings.
"""

from __future__ import annotations

import os

import numpy as np

from .. import kernels
from ..arch import ClipArch
from ..choices import MODES
from ..pack.format import TclipModel, check_model, read
from .checks import check_batch_size, check_finite_pixels, check_threads
from .hf_tokenizer import tokenizer_for
from .layers import Block, Buffers, Linear, aligned_empty
from .preprocess import ImageError, Preprocess
from .towers import TextTower, VisionTower, Weights


class TernaryCLIP:
    """A CLIP read from a ``.tclip`` file; ``encode_image`` / ``encode_text`` like open_clip's."""

    def __init__(self, data: TclipModel, mode: str = "fast", threads: int | None = None, batch_size: int = 32):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.threads = check_threads(threads)  # applied in every calling thread (the kernels' count is per thread)
        self.data, self.mode, self.batch_size = data, mode, check_batch_size(batch_size)
        self.arch: ClipArch = check_model(data)  # read() checked a file; a model built in memory is checked here
        self.preprocess = Preprocess.from_meta(data.meta["preprocess"])
        self.tokenize = tokenizer_for(data.meta, data.blobs, self.arch.text.context_length)
        weights = Weights(data, mode, Buffers())
        self.visual = VisionTower(self.arch, weights)
        self.text = TextTower(self.arch, weights)

    # The layers by their open_clip names, for benchmarks and tests that look inside.
    @property
    def visual_blocks(self) -> list[Block]:
        return self.visual.blocks

    @property
    def text_blocks(self) -> list[Block]:
        return self.text.blocks

    @property
    def patch_embed(self) -> Linear:
        return self.visual.patch_embed

    @property
    def visual_proj(self) -> Linear:
        return self.visual.proj

    @property
    def text_proj(self) -> Linear:
        return self.text.proj

    @property
    def pooled_rows_only(self) -> bool:
        """Run the last block's projection and MLP on the pooled tokens only (the same numbers); False
        runs every row, for tests."""
        return self.visual.pooled_rows_only and self.text.pooled_rows_only

    @pooled_rows_only.setter
    def pooled_rows_only(self, value: bool) -> None:
        self.visual.pooled_rows_only = self.text.pooled_rows_only = value

    def _text_lengths(self, ids: np.ndarray) -> np.ndarray:
        return self.text.lengths(ids)

    def _use_threads(self) -> None:
        if self.threads is not None and kernels.get_num_threads() != self.threads:
            kernels.set_num_threads(self.threads)

    # ------------------------------------------------------------ image tower
    def _pixels(self, images) -> np.ndarray:
        size = self.arch.vision.image_size
        if isinstance(images, np.ndarray):
            if images.dtype != np.float32 or images.ndim != 4 or images.shape[1:] != (3, size, size):
                raise ValueError(
                    f"a preprocessed image array must be float32 [B, 3, {size}, {size}], got "
                    f"{images.dtype} {images.shape}"
                )
            return check_finite_pixels(np.ascontiguousarray(images))
        if not isinstance(images, (list, tuple)):
            images = [images]
        return np.stack([self.preprocess(im) for im in images]) if images else np.zeros((0, 3, size, size), np.float32)

    def encode_image(self, images, normalize: bool = False) -> np.ndarray:
        """PIL images, file paths, or a preprocessed float32 array ``[B, 3, H, W]`` -> ``[B, embed_dim]``."""
        pixels = self._pixels(images)
        self._use_threads()
        out = [self.visual(pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)]
        return _finish(out, self.arch.embed_dim, normalize)

    # ------------------------------------------------------------ text tower
    def encode_text(self, texts, normalize: bool = False, truncate: bool = True) -> np.ndarray:
        """Strings (or int token ids ``[B, context]``) -> ``[B, embed_dim]``.

        ``truncate``: run a causal tower only up to each batch's last pooled token, captions bucketed by
        length (sorted, then split into batches) so that one long caption does not make short ones pay;
        the embeddings are the same as the full-context forward's (False runs that, for tests).
        """
        if isinstance(texts, np.ndarray) and np.issubdtype(texts.dtype, np.integer):
            ids = texts
        else:
            ids = self.tokenize(texts)
        if ids.ndim != 2 or ids.shape[1] > self.arch.text.context_length:
            raise ValueError(f"token ids must be [B, <= {self.arch.text.context_length}], got {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.arch.text.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.arch.text.vocab_size}), the model's vocabulary; got "
                f"{ids.min()}..{ids.max()} (a model with a smaller vocabulary than CLIP's 49408 "
                "needs its own token ids as an int array)"
            )
        self._use_threads()
        lengths = self.text.lengths(ids) if truncate else np.full(len(ids), ids.shape[1])
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(ids), self.arch.embed_dim), np.float32)
        for i in range(0, len(ids), self.batch_size):
            rows = order[i : i + self.batch_size]
            out[rows] = self.text(ids[rows], int(lengths[rows].max()))
        return _finish([out], self.arch.embed_dim, normalize)


def _finish(chunks: list[np.ndarray], dim: int, normalize: bool) -> np.ndarray:
    out = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32, copy=False)


def load(path: str | os.PathLike, mode: str = "fast", threads: int | None = None, batch_size: int = 32) -> TernaryCLIP:
    """Load a ``.tclip`` model for CPU inference without torch.

    >>> m = ternaryclip.load("model.tclip", mode="fast")                 # doctest: +SKIP
    >>> m.encode_image(["cat.jpg"]) @ m.encode_text(["a cat"]).T         # doctest: +SKIP
    """
    return TernaryCLIP(read(path), mode=mode, threads=threads, batch_size=batch_size)


__all__ = ["ImageError", "TernaryCLIP", "aligned_empty", "load"]  # aligned_empty: for the kernel tests
