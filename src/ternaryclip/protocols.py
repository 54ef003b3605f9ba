"""The interface every CLIP behind the tools declares: numpy in, numpy out.

The runtime's ``TernaryCLIP`` implements it as it is; ``eval.encoders.TorchEncoder`` wraps an
open_clip or Hugging Face model into it.  Evaluation, the bench and the servers take any
:class:`Encoder`.  (Inside training, torch models speak ``torch_clip.adapters.TorchClip`` instead.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from .arch import ClipArch
    from .runtime.preprocess import Preprocess


@runtime_checkable
class Encoder(Protocol):
    """A CLIP as the tools see it: its architecture, its preprocessing and two encoders."""

    arch: ClipArch
    preprocess: Preprocess

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        """float32 ``[B, 3, S, S]`` pixels, already normalized -> ``[B, embed_dim]`` embeddings."""
        ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``[B, embed_dim]`` embeddings."""
        ...
