"""Teacher and student models for distillation: a frozen teacher, a trainable student, and the
projection between their embedding widths.  Loading and calling conventions live in ``torch_clip``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..runtime.preprocess import Preprocess
from ..torch_clip.adapters import as_clip, embed_dim
from ..torch_clip.describe import model_arch, preprocess_meta
from ..torch_clip.loading import load_float_clip

# The torch_clip functions training uses, under the names the trainer imports from here.
load_clip = load_float_clip
__all__ = [
    "FeatureProjection",
    "as_clip",
    "embed_dim",
    "freeze",
    "load_clip",
    "make_student",
    "model_arch",
    "model_preprocess",
]


def model_preprocess(model: nn.Module) -> Preprocess:
    """The runtime's ``Preprocess`` (equal to open_clip's eval transform) for a torch CLIP."""
    return Preprocess.from_meta(preprocess_meta(model, model_arch(model)))


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
        student = load_float_clip(student_name, student_pretrained)
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
