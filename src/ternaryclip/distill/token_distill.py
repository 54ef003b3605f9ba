"""Intermediate token distillation: the student's last-block token features follow the teacher's.

Forward hooks on the last transformer block of each tower record its output tokens (open_clip
``resblocks[-1]``, Hugging Face ``encoder.layers[-1]``) in both models; the loss is the mean over
tokens of ``1 - cos(student token, teacher token)``.  Cosine ignores the residual stream's scale, and
the term needs the same tower widths and token counts in both models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def last_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The last transformer block of the image and of the text tower."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "vision_model"):  # Hugging Face CLIPModel
        return {"image": inner.vision_model.encoder.layers[-1], "text": inner.text_model.encoder.layers[-1]}
    return {"image": inner.visual.transformer.resblocks[-1], "text": inner.transformer.resblocks[-1]}


class TokenRecorder:
    """Keeps the latest output of each tower's last block."""

    def __init__(self, model: nn.Module):
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [block.register_forward_hook(self._hook(name)) for name, block in last_blocks(model).items()]

    def _hook(self, name: str):
        def record(module, inputs, output):
            self.outputs[name] = output[0] if isinstance(output, tuple) else output

        return record

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def token_loss(student: TokenRecorder, teacher: TokenRecorder) -> torch.Tensor:
    total = 0.0
    for name in ("image", "text"):
        s, t = student.outputs[name], teacher.outputs[name].detach()
        if s.shape != t.shape:
            raise ValueError(
                f"token distillation needs the same {name} token features in student and teacher, "
                f"got {tuple(s.shape)} and {tuple(t.shape)}; set token_feature to 0"
            )
        total = total + (1.0 - F.cosine_similarity(s.float(), t.float(), dim=-1)).mean()
    return total / 2
