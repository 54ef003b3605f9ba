"""One calling convention for torch CLIPs: open_clip's ``encode_image`` / ``encode_text`` / ``logit_scale``.

open_clip models already look like that; a Hugging Face ``CLIPModel`` gets a thin adapter.  Token ids
come from the CLIP BPE tokenizer with zero padding after the end token, which a Hugging Face CLIP
reads the same way: its causal mask hides the padding and it pools at the end token.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .describe import clip_family, model_arch


class TorchClip(Protocol):
    """What training calls on a torch CLIP: open_clip's two encoders and the learned temperature."""

    logit_scale: torch.Tensor

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    def encode_text(self, ids: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...


class HFClipAdapter(nn.Module):
    """A ``transformers.CLIPModel`` / ``SiglipModel`` with open_clip's ``encode_image`` / ``encode_text`` / ``logit_scale``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=pixels)
        out = getattr(out, "pooler_output", out)
        return nn.functional.normalize(out, dim=-1) if normalize else out

    def encode_text(self, ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        out = self.model.get_text_features(input_ids=ids)
        out = getattr(out, "pooler_output", out)
        return nn.functional.normalize(out, dim=-1) if normalize else out

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """A ``SiglipModel``'s learned bias; None for a ``CLIPModel``."""
        return getattr(self.model, "logit_bias", None)


def as_clip(model: nn.Module) -> TorchClip:
    """open_clip models as they are; Hugging Face CLIPModels wrapped in :class:`HFClipAdapter`."""
    return HFClipAdapter(model) if clip_family(model) == "hf" else model


def embed_dim(model: nn.Module) -> int:
    """Output width of the image tower, found by what the model declares (open_clip or HF)."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "projection_dim"):
        return int(inner.projection_dim)
    if getattr(inner, "text_projection", None) is not None and isinstance(inner.text_projection, nn.Parameter):
        return int(inner.text_projection.shape[1])
    proj = getattr(getattr(inner, "visual", None), "output_dim", None)
    if proj is None:  # SigLIP (open_clip's timm tower, HF SiglipModel): what its architecture says
        return model_arch(inner).embed_dim
    return int(proj)
