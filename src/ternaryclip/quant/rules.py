"""Ternary quantization rules: a float weight matrix -> codes in {-1, 0, +1} and float scales.

Every rule computes, for each *scale unit* (the whole tensor, one output row, or one group of
``group_size`` consecutive inputs of a row), a divisor and a scale, then
``codes = clamp(round(W / divisor), -1, 1)`` and ``W_ternary = scale * codes``:

- ``absmean``  (BitNet b1.58): divisor = scale = mean|W|.
- ``absmean2`` (wider absmean): divisor = scale = 2 mean|W|; a weight is nonzero only where
  |w| > mean|w|, so about 60% of a Gaussian row becomes zero instead of about 30%.
- ``twn`` (Ternary Weight Networks): threshold 0.7 mean|W|, scale = mean |w| over the kept weights
  (the least-squares scale for those codes).

The matrix orientation is always ``[N outputs, K inputs]``; callers with other layouts (a conv kernel,
a bare ``x @ P`` projection) reshape first with :func:`as_matrix`.  Scales come back 2-D,
``[1 or N, 1 or ceil(K / group_size)]``, so every granularity expands with the same code.
"""

from __future__ import annotations

import math

import torch

from ..choices import GRANULARITIES, RULES

TWN_THRESHOLD = 0.7
# A scale unit that is all zeros gets scale 0 and codes 0; the floor only keeps the division finite.
_DIVISOR_FLOOR = 1e-30


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise a ValueError naming the argument and the allowed values."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(allowed)}")


def check_group_size(group_size: int) -> None:
    """The one check of a group size (inputs per scale): a positive integer."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")


def _scale_units(w: torch.Tensor, granularity: str, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """View ``w [N, K]`` as ``[A, B, L]`` scale units (zero padded) and the true element count of each."""
    n, k = w.shape
    if granularity == "tensor":
        return w.reshape(1, 1, n * k), torch.full((1, 1), n * k, dtype=w.dtype, device=w.device)
    if granularity == "channel":
        return w.reshape(n, 1, k), torch.full((n, 1), k, dtype=w.dtype, device=w.device)
    groups = math.ceil(k / group_size)
    padded = torch.nn.functional.pad(w, (0, groups * group_size - k))
    counts = torch.full((n, groups), group_size, dtype=w.dtype, device=w.device)
    counts[:, -1] = k - (groups - 1) * group_size
    return padded.reshape(n, groups, group_size), counts


def ternary_quantize(
    w: torch.Tensor, rule: str = "absmean", granularity: str = "channel", group_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a weight matrix ``w [N, K]`` to ``(codes int8 [N, K], scales float [A, B])``.

    ``A`` is 1 (tensor) or N; ``B`` is 1 or ``ceil(K / group_size)`` (group).  Pure: no gradient,
    no state.  Rows or groups of zeros give scale 0 and codes 0, never NaN.

    >>> codes, scales = ternary_quantize(torch.tensor([[0.1, -2.0, 0.9]]), "absmean", "tensor")
    >>> codes.tolist(), round(scales.item(), 4)
    ([[0, -1, 1]], 1.0)
    """
    check_choice("rule", rule, RULES)
    check_choice("granularity", granularity, GRANULARITIES)
    if granularity == "group":
        check_group_size(group_size)
    if w.ndim != 2:
        raise ValueError(f"ternary_quantize expects a 2-D [N, K] matrix, got shape {tuple(w.shape)}")
    n, k = w.shape
    with torch.no_grad():
        w = w.float()
        units, counts = _scale_units(w, granularity, group_size)
        mean_abs = units.abs().sum(-1) / counts
        if rule == "twn":
            kept = units.abs() > (TWN_THRESHOLD * mean_abs).unsqueeze(-1)
            codes = torch.sign(units) * kept
            scales = (units.abs() * kept).sum(-1) / kept.sum(-1).clamp_min(1)
        else:
            scales = mean_abs if rule == "absmean" else 2.0 * mean_abs
            divisor = scales.clamp_min(_DIVISOR_FLOOR).unsqueeze(-1)
            codes = torch.clamp(torch.round(units / divisor), -1, 1)
        codes = codes.reshape(codes.shape[0], -1)[:, : (n * k if granularity == "tensor" else k)]
        return codes.reshape(n, k).to(torch.int8), scales


def expand_scales(scales: torch.Tensor, shape: tuple[int, int], group_size: int) -> torch.Tensor:
    """Broadcast ``[A, B]`` scales to a full ``[N, K]`` matrix (B > 1 means groups of ``group_size``)."""
    n, k = shape
    if scales.shape[1] > 1:
        scales = scales.repeat_interleave(group_size, dim=1)[:, :k]
    return scales.expand(n, k)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """``scale * code`` as a float32 ``[N, K]`` matrix."""
    return codes.float() * expand_scales(scales.float(), tuple(codes.shape), group_size)


def as_matrix(w: torch.Tensor, out_axis: int = 0) -> torch.Tensor:
    """The ``[N outputs, K inputs]`` view of a weight: conv kernels flatten, ``x @ P`` weights transpose."""
    if out_axis == 1:
        if w.ndim != 2:
            raise ValueError(f"out_axis=1 needs a 2-D weight, got shape {tuple(w.shape)}")
        return w.t()
    return w.reshape(w.shape[0], -1)


def from_matrix(m: torch.Tensor, shape: torch.Size, out_axis: int = 0) -> torch.Tensor:
    """Inverse of :func:`as_matrix`."""
    return m.t() if out_axis == 1 else m.reshape(shape)


def ternary_values(
    w: torch.Tensor, rule: str = "absmean", granularity: str = "channel", group_size: int = 128, out_axis: int = 0
) -> torch.Tensor:
    """The ternary weight ``scale * code`` in ``w``'s own shape and dtype (no gradient)."""
    codes, scales = ternary_quantize(as_matrix(w.detach(), out_axis), rule, granularity, group_size)
    return from_matrix(dequantize(codes, scales, group_size), w.shape, out_axis).to(w.dtype)


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantized tensor, bit for bit. Backward: the gradient goes to the latent unchanged."""

    @staticmethod
    def forward(ctx, latent: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
        return quantized

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def fake_quant(
    w: torch.Tensor, rule: str = "absmean", granularity: str = "channel", group_size: int = 128, out_axis: int = 0
) -> torch.Tensor:
    """Straight-through ternarization: the forward value is ternary, the gradient reaches ``w`` unchanged.

    This is the STE of BitNet and TernaryCLIP (``w + (Wt - w).detach()``), written as an autograd
    function so that the forward value is exactly ``scale * code``: the add-and-subtract form leaves
    rounding noise that makes a row take more than three values, and packing must see pure ternaries.
    """
    return _StraightThrough.apply(w, ternary_values(w, rule, granularity, group_size, out_axis))
