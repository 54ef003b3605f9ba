"""The fast mode's int8 attention (kernels/core/attention_int8.h): Q K^T and P V as int8 dot products with
per-row scales, the softmax in float32.

The SIMD paths (AVX-512 VNNI, AVX2) give the scalar reference's bits on ragged shapes; the reference stays
within its stated bound of torch's float attention; a tiny model in fast mode runs it and stays within the
fast mode's bound of exact mode.
"""

import numpy as np
import pytest

from ternaryclip import kernels

# (batch, tokens, heads, head width): a ViT-B/16 image, a caption, a partial 4-query block, one key past
# a 16-key block, one token, head widths 16 / 32 / 48 / 64 / 96 (48 and 96 end on a partial register block)
SHAPES = [(1, 197, 12, 64), (2, 77, 8, 64), (3, 5, 2, 32), (1, 17, 4, 96), (2, 33, 3, 48), (1, 1, 1, 16), (2, 9, 2, 32)]

# The SIMD paths this CPU runs, with P's levels (255 for vpdpbusd, 127 for vpmaddubsw's int16 pairs).
PATHS = [
    (path, levels)
    for path, levels, available in (
        ("avx512", 255, kernels.cpu_has_avx512_vnni()),
        ("avx2", 127, kernels.cpu_has_avx2()),
    )
    if available
]


def torch_attention(qkv: np.ndarray, heads: int, causal: bool) -> np.ndarray:
    torch = pytest.importorskip("torch")
    b, t, w3 = qkv.shape
    w = w3 // 3
    q, k, v = (
        torch.from_numpy(qkv[..., i * w : (i + 1) * w]).double().reshape(b, t, heads, w // heads).transpose(1, 2)
        for i in range(3)
    )
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return out.transpose(1, 2).reshape(b, t, w).numpy()


def head_row_cosines(a: np.ndarray, b: np.ndarray, heads: int) -> np.ndarray:
    """Cosine of every (sample, token, head) output row of a against b."""
    a, b = (x.reshape(*x.shape[:2], heads, -1) for x in (a, b))
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def qkv_of(shape, seed: int, spread: float = 1.0) -> np.ndarray:
    b, t, heads, hd = shape
    return (np.random.default_rng(seed).standard_normal((b, t, 3 * heads * hd)) * spread).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("path", "levels"), PATHS)
def test_simd_int8_attention_equals_the_reference_bitwise(shape, causal, path, levels):
    qkv = qkv_of(shape, seed=shape[1] * 10 + shape[3], spread=2.0)
    qkv[0, 0, : shape[3]] = 0.0  # a query of zeros (scale 0): uniform weights
    want = kernels.attention_int8(qkv, shape[2], causal, "ref", levels)
    got = kernels.attention_int8(qkv, shape[2], causal, path)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("levels", [255, 127])
def test_int8_attention_stays_within_its_bound_of_float_attention(shape, causal, levels):
    heads = shape[2]
    # unit-variance q and k: scores of standard deviation 1, as a trained ViT's mostly are
    qkv = qkv_of(shape, seed=shape[1] + shape[3])
    cos = head_row_cosines(
        kernels.attention_int8(qkv, heads, causal, "ref", levels), torch_attention(qkv, heads, causal), heads
    )
    # measured over these shapes: worst row 0.99969 (255 levels) / 0.99924 (127), worst mean 0.99992 / 0.99985
    assert cos.min() >= 0.999 and cos.mean() >= 0.9998
    # scores of deviation 4 (peaked rows): the int8 scores' error shows (measured: worst row 0.9964, worst
    # mean 0.99972 for both levels)
    qkv = qkv_of(shape, seed=shape[1] + shape[3], spread=2.0)
    cos = head_row_cosines(
        kernels.attention_int8(qkv, heads, causal, "ref", levels), torch_attention(qkv, heads, causal), heads
    )
    assert cos.min() >= 0.995 and cos.mean() >= 0.9995


def test_the_fast_attention_runs_int8_where_the_path_has_it():
    qkv = qkv_of((2, 21, 2, 32), seed=5)
    for path, _ in PATHS:
        fast = kernels.attention(qkv, 2, False, path, fast=True)
        assert np.array_equal(fast, kernels.attention_int8(qkv, 2, False, path))
        assert kernels.fast_attention_impl(path) == f"{path}_int8"
        # mode bf16 keeps its own products (bf16 or float32), not these
        assert not np.array_equal(kernels.attention(qkv, 2, False, path, fast=True, int8=False), fast)
        assert kernels.fast_attention_impl(path, "bf16") in ("avx512_bf16", "float32")
    # head widths that are not a multiple of 16 run the float32 attention
    odd = qkv_of((1, 9, 2, 40), seed=6)
    for path, _ in PATHS:
        assert np.array_equal(kernels.attention(odd, 2, True, path, fast=True), kernels.attention(odd, 2, True, path))
    assert kernels.fast_attention_impl("ref") == "float32"


@pytest.mark.parametrize(("path", "levels"), PATHS)
def test_int8_attention_gives_the_same_rows_alone_batched_and_on_one_thread(path, levels):
    qkv = qkv_of((6, 45, 4, 32), seed=7)
    batched = kernels.attention_int8(qkv, 4, True, path)
    alone = np.concatenate([kernels.attention_int8(qkv[i : i + 1], 4, True, path) for i in range(6)])
    before = kernels.get_num_threads()
    kernels.set_num_threads(1)
    try:
        serial = kernels.attention_int8(qkv, 4, True, path)
    finally:
        kernels.set_num_threads(before)
    assert np.array_equal(batched, alone) and np.array_equal(batched, serial)


def test_int8_attention_refuses_a_bad_path_or_levels():
    qkv = qkv_of((1, 4, 1, 16), seed=8)
    with pytest.raises(ValueError, match="path"):
        kernels.attention_int8(qkv, 1, False, "neon")
    with pytest.raises(ValueError, match="levels"):
        kernels.attention_int8(qkv, 1, False, "ref", 100)
    with pytest.raises(ValueError, match="mode"):
        kernels.fast_attention_impl("auto", "exact")


@pytest.mark.parametrize("impl", [path for path, _ in PATHS])
def test_a_tiny_model_in_fast_mode_runs_int8_attention_within_the_fast_bound(
    tiny_open_clip, tmp_path, monkeypatch, impl
):
    """The image tower (head width 32) takes the int8 attention in mode fast, and its embeddings stay within
    the fast mode's bound of exact mode (test_runtime.py: cosine >= 0.995)."""
    import ternaryclip
    from helpers import random_inputs
    from ternaryclip.quant import TernaryConfig, ternarize_

    ternarize_(tiny_open_clip, TernaryConfig())
    path = ternaryclip.save(tiny_open_clip, tmp_path / "tiny.tclip")
    monkeypatch.setenv(kernels.IMPL_VARIABLE, impl)
    image, _ = random_inputs(batch=8)
    exact = ternaryclip.load(path, mode="exact").encode_image(image.numpy())
    calls = []
    attention = kernels.attention

    def recorded(*args, **kwargs):
        calls.append((kwargs.get("fast"), kwargs.get("int8")))
        return attention(*args, **kwargs)

    monkeypatch.setattr(kernels, "attention", recorded)
    fast = ternaryclip.load(path, mode="fast").encode_image(image.numpy())
    assert calls and set(calls) == {(True, True)}
    assert kernels.fast_attention_impl() == f"{impl}_int8"
    cos = (fast * exact).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(exact, axis=1)
    assert cos.min() >= 0.995
