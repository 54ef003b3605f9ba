"""`TernaryLinear`: a drop-in ``nn.Linear`` with a ternary (STE) weight, for models you write yourself.

CLIP models from open_clip or transformers go through :func:`ternarize_` instead, which also reaches
weights that are not ``nn.Linear`` modules (fused attention, bare projections, the patch conv).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .rules import GRANULARITIES, RULES, check_choice, fake_quant


class TernaryLinear(nn.Linear):
    """``y = x (scale * codes)^T + b`` in the forward pass; gradients reach the latent float weight."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rule: str = "absmean",
        granularity: str = "channel",
        group_size: int = 128,
        **factory_kwargs,
    ):
        super().__init__(in_features, out_features, bias=bias, **factory_kwargs)
        check_choice("rule", rule, RULES)
        check_choice("granularity", granularity, GRANULARITIES)
        self.rule, self.granularity, self.group_size = rule, granularity, group_size

    @classmethod
    def from_linear(cls, linear: nn.Linear, **kwargs) -> TernaryLinear:
        """A TernaryLinear whose latent weight and bias are copies of ``linear``'s."""
        new = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
            **kwargs,
        )
        with torch.no_grad():
            new.weight.copy_(linear.weight)
            if linear.bias is not None:
                new.bias.copy_(linear.bias)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_quant(self.weight, self.rule, self.granularity, self.group_size), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rule={self.rule}, granularity={self.granularity}"
