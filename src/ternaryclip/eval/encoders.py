"""Torch CLIPs behind the :class:`~ternaryclip.protocols.Encoder` interface the evaluation takes.

The runtime's ``TernaryCLIP`` is an ``Encoder`` already; :class:`TorchEncoder` wraps an open_clip
model or a Hugging Face ``CLIPModel``.
"""

from __future__ import annotations

import numpy as np

from ..protocols import Encoder
from ..runtime.tokenizer import ClipTokenizer


class TorchEncoder:
    """An open_clip / Hugging Face CLIP (torch) behind numpy in, numpy out, in batches, without grad."""

    def __init__(self, model, batch_size: int = 256, context_length: int | None = None, tokenizer=None):
        """``tokenizer``: ``texts -> int ids``; CLIP's BPE by default, a SigLIP needs its own."""
        from ..quant import materialize_, ternary_sites
        from ..runtime.preprocess import Preprocess
        from ..torch_clip.adapters import as_clip
        from ..torch_clip.describe import model_arch, preprocess_meta

        if any(True for _ in ternary_sites(model)):
            # A ternarized model re-quantizes every weight on every forward; its materialized copy holds
            # the same values (scale * code, bit for bit) and runs as fast as a float model.
            import copy

            model = materialize_(copy.deepcopy(model))
        self.model = model.eval()
        self.clip = as_clip(model)
        self.arch = model_arch(model)
        self.preprocess = Preprocess.from_meta(preprocess_meta(model, self.arch))
        if tokenizer is None and self.arch.is_siglip:
            raise ValueError(
                "a SigLIP torch model needs its own tokenizer: evaluate its .tclip packed with --tokenizer DIR"
            )
        self.tokenizer = tokenizer or ClipTokenizer(context_length or self.arch.text.context_length)
        self.batch_size = batch_size

    def _run(self, fn, data) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = [
                fn(torch.as_tensor(data[i : i + self.batch_size]).to(device)).float().cpu().numpy()
                for i in range(0, len(data), self.batch_size)
            ]
        return np.concatenate(out) if out else np.zeros((0, self.arch.embed_dim), np.float32)

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        return self._run(self.clip.encode_image, np.ascontiguousarray(pixels, dtype=np.float32))

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self._run(self.clip.encode_text, self.tokenizer(list(texts)))


def as_encoder(model, batch_size: int = 256) -> Encoder:
    """Runtime models as they are; torch modules wrapped in :class:`TorchEncoder`."""
    if hasattr(model, "parameters") and callable(model.parameters):
        return TorchEncoder(model, batch_size)
    return model
