"""Quantizer math against hand-computed examples, and the straight-through gradient."""

import math

import pytest
import torch

from ternaryclip.quant import TernaryLinear, dequantize, fake_quant, ternary_quantize, ternary_values

W = torch.tensor([[0.9, -0.2, 0.5, -1.4], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])


def test_absmean_per_channel_matches_hand_computation():
    codes, scales = ternary_quantize(W, "absmean", "channel")
    # row 0: mean|w| = 3.0/4 = 0.75 -> w/0.75 = 1.2, -0.27, 0.67, -1.87 -> 1, 0, 1, -1
    assert codes.tolist() == [[1, 0, 1, -1], [0, 0, 0, 0], [1, 1, 1, 1]]
    assert codes.dtype == torch.int8
    assert scales.shape == (3, 1)
    assert torch.allclose(scales[:, 0], torch.tensor([0.75, 0.0, 2.0]))


def test_absmean_per_tensor_matches_hand_computation():
    codes, scales = ternary_quantize(W, "absmean", "tensor")
    mean = (3.0 + 8.0) / 12  # 0.9167: 0.9 -> 0.98 -> 1, 0.5 -> 0.55 -> 1, -0.2 -> 0
    assert scales.shape == (1, 1) and math.isclose(scales.item(), mean, rel_tol=1e-6)
    assert codes.tolist() == [[1, 0, 1, -1], [0, 0, 0, 0], [1, 1, 1, 1]]


def test_absmean2_keeps_only_weights_above_the_mean():
    codes, scales = ternary_quantize(W, "absmean2", "channel")
    # row 0: mean 0.75, divisor 1.5: 0.9 -> 0.6 -> 1, 0.5 -> 0.33 -> 0, -1.4 -> -0.93 -> -1
    # row 2: every |w| equals the mean, none is above it -> all zero
    assert codes.tolist() == [[1, 0, 0, -1], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert torch.allclose(scales[:, 0], torch.tensor([1.5, 0.0, 4.0]))


def test_twn_threshold_and_kept_mean_scale():
    codes, scales = ternary_quantize(W, "twn", "channel")
    # row 0: threshold 0.7 * 0.75 = 0.525: keeps 0.9 and -1.4 -> scale (0.9 + 1.4) / 2 = 1.15
    assert codes.tolist() == [[1, 0, 0, -1], [0, 0, 0, 0], [1, 1, 1, 1]]
    assert torch.allclose(scales[:, 0], torch.tensor([1.15, 0.0, 2.0]))


def test_group_scales_cover_a_ragged_last_group():
    w = torch.tensor([[1.0, -3.0, 0.2, 4.0, -0.1]])
    codes, scales = ternary_quantize(w, "absmean", "group", group_size=2)
    # groups [1, -3] mean 2, [0.2, 4] mean 2.1, [-0.1] mean 0.1 (count 1, not the padded 2)
    assert scales.shape == (1, 3)
    assert torch.allclose(scales, torch.tensor([[2.0, 2.1, 0.1]]))
    assert codes.tolist() == [[0, -1, 0, 1, -1]]
    assert torch.allclose(dequantize(codes, scales, 2), torch.tensor([[0.0, -2.0, 0.0, 2.1, -0.1]]))


@pytest.mark.parametrize("rule", ["absmean", "absmean2", "twn"])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_zero_weights_give_zero_codes_and_no_nan(rule, granularity):
    codes, scales = ternary_quantize(torch.zeros(3, 7), rule, granularity, group_size=4)
    assert not codes.any() and torch.isfinite(scales).all() and not scales.any()


@pytest.mark.parametrize("rule", ["absmean", "absmean2", "twn"])
def test_ternary_values_take_at_most_three_values_per_row(rule):
    w = torch.randn(8, 33)
    t = ternary_values(w, rule, "channel")
    for row in t:
        assert len(torch.unique(row)) <= 3


def test_conv_and_transposed_projection_use_output_channels():
    conv = torch.randn(4, 3, 2, 2)
    t = ternary_values(conv, "absmean", "channel")
    for o in range(4):
        s = conv[o].abs().mean()
        assert torch.allclose(t[o], torch.clamp(torch.round(conv[o] / s), -1, 1) * s)
    proj = torch.randn(6, 5)  # used as x @ proj: outputs are columns
    t = ternary_values(proj, "absmean", "channel", out_axis=1)
    for col in range(5):
        s = proj[:, col].abs().mean()
        assert torch.allclose(t[:, col], torch.clamp(torch.round(proj[:, col] / s), -1, 1) * s)


def test_fake_quant_forward_is_ternary_and_gradient_is_straight_through():
    w = torch.randn(5, 7, requires_grad=True)
    x = torch.randn(3, 7)
    y = x @ fake_quant(w).t()
    wq = ternary_values(w).requires_grad_(True)
    y_ref = x @ wq.t()
    assert torch.equal(fake_quant(w), ternary_values(w))  # forward is exactly scale * code
    assert torch.allclose(y, y_ref)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    assert torch.allclose(w.grad, wq.grad)  # d loss / d latent == d loss / d ternary weight


def test_ternary_linear_matches_float_linear_on_ternary_weight():
    lin = torch.nn.Linear(7, 5)
    tl = TernaryLinear.from_linear(lin, rule="twn")
    x = torch.randn(2, 7)
    ref = torch.nn.functional.linear(x, ternary_values(lin.weight, "twn"), lin.bias)
    assert torch.allclose(tl(x), ref)
    tl(x).sum().backward()
    assert tl.weight.grad is not None and tl.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rule": "bitnet"}, "unknown rule 'bitnet'"),
        ({"granularity": "row"}, "unknown granularity 'row'"),
        ({"granularity": "group", "group_size": 0}, "group_size"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ternary_quantize(torch.ones(2, 2), **kwargs)


def test_non_matrix_input_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        ternary_quantize(torch.ones(2, 2, 2))
