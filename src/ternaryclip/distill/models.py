"""Teacher and student models for distillation, behind one small interface.

Both towers are called through :class:`ClipModel`: ``encode_image(pixels)``, ``encode_text(ids)`` and
``logit_scale`` (the exponentiated temperature).  open_clip models already look like that; a Hugging
Face ``CLIPModel`` gets a thin adapter.  Token ids come from the CLIP BPE tokenizer with zero padding
after the end token, which a Hugging Face CLIP reads the same way: its causal mask hides the padding
and it pools at the end token.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

BUNDLED = "bundled"


class HFClipAdapter(nn.Module):
    """A ``transformers.CLIPModel`` with open_clip's ``encode_image`` / ``encode_text`` / ``logit_scale``."""

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


def as_clip(model: nn.Module) -> nn.Module:
    """open_clip models as they are; Hugging Face CLIPModels wrapped in :class:`HFClipAdapter`."""
    from ..quant import clip_family

    return HFClipAdapter(model) if clip_family(model) == "hf" else model


def load_clip(name: str, pretrained: str | None = None) -> nn.Module:
    """A float CLIP from ``bundled``, an open_clip name / JSON config / ``local-dir:``, or an HF folder.

    A path to a folder holding ``config.json`` with a ``vision_config`` key is read as Hugging Face.
    """
    from ..clip_models import create_open_clip, load_hf_clip

    if name == BUNDLED:
        from ..assets import bundled_teacher

        return bundled_teacher()
    if os.path.isdir(name) and os.path.isfile(os.path.join(name, "config.json")) and not pretrained:
        return load_hf_clip(name)
    return create_open_clip(name, pretrained)


def embed_dim(model: nn.Module) -> int:
    """Output width of the image tower, found by what the model declares (open_clip or HF)."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "projection_dim"):
        return int(inner.projection_dim)
    if getattr(inner, "text_projection", None) is not None and isinstance(inner.text_projection, nn.Parameter):
        return int(inner.text_projection.shape[1])
    proj = getattr(getattr(inner, "visual", None), "output_dim", None)
    if proj is None:
        raise ValueError(f"cannot tell the embedding width of {type(inner).__name__}")
    return int(proj)


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def make_student(
    teacher: nn.Module, student_name: str | None = None, student_pretrained: str | None = None
) -> nn.Module:
    """The float student: a copy of the teacher (the paper's setting) or another architecture."""
    if student_name is None:
        student = copy.deepcopy(teacher)
    else:
        student = load_clip(student_name, student_pretrained)
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


class FeatureProjection(nn.Module):
    """Learned maps from the student's embedding width to the teacher's, used only by the KD terms."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.image = nn.Linear(student_dim, teacher_dim, bias=False)
        self.text = nn.Linear(student_dim, teacher_dim, bias=False)
        with torch.no_grad():
            eye = torch.eye(teacher_dim, student_dim)
            self.image.weight.copy_(eye)
            self.text.weight.copy_(eye)
