"""The fast mode's attention: bf16 products on AMX-BF16 tiles where the CPU has them, float32 elsewhere.

Against torch's float32 attention: every output row within the fast mode's fidelity bound, and on a CPU
without the tiles (or a head width the tiles do not take) the very numbers of the float32 path.
"""

import numpy as np
import pytest

from ternaryclip import kernels

# (batch, tokens, heads, head width): a ViT-B/16 image, a caption, a partial query tile, 32 keys + 1,
# head widths 32 / 64 / 96 (the last ends on two value tiles), 40 (not a multiple of 32: float32)
SHAPES = [(1, 197, 12, 64), (2, 77, 8, 64), (3, 5, 2, 32), (1, 33, 4, 96), (2, 17, 3, 64), (1, 9, 2, 40)]


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


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_fast_attention_stays_within_the_fast_modes_bound(shape, causal):
    b, t, heads, hd = shape
    rng = np.random.default_rng(b * 1000 + t)
    qkv = (rng.standard_normal((b, t, 3 * heads * hd)) * 2).astype(np.float32)
    reference = torch_attention(qkv, heads, causal)
    float32 = kernels.attention(qkv, heads, causal)
    fast = kernels.attention(qkv, heads, causal, fast=True)
    assert np.abs(float32 - reference).max() < 1e-4
    assert row_cosines(fast, reference).min() > 0.9995
    assert np.abs(fast - reference).max() < 0.2  # bf16: ~3 significant digits on values of order 1
    tiles = kernels.cpu_has_amx_bf16() and hd % 32 == 0
    assert np.array_equal(fast, float32) != tiles  # the tiles ran exactly where they apply


def test_fast_attention_gives_the_same_rows_alone_or_batched_and_on_one_thread():
    rng = np.random.default_rng(7)
    qkv = rng.standard_normal((6, 45, 3 * 128)).astype(np.float32)
    batched = kernels.attention(qkv, 2, True, fast=True)
    alone = np.concatenate([kernels.attention(qkv[i : i + 1], 2, True, fast=True) for i in range(6)])
    before = kernels.get_num_threads()
    kernels.set_num_threads(1)
    try:
        serial = kernels.attention(qkv, 2, True, fast=True)
    finally:
        kernels.set_num_threads(before)
    assert np.array_equal(batched, alone) and np.array_equal(batched, serial)


def test_a_forced_narrower_path_has_no_fast_attention():
    rng = np.random.default_rng(3)
    qkv = rng.standard_normal((1, 20, 3 * 64)).astype(np.float32)
    for impl in ("ref", "avx2") if kernels.cpu_has_avx2() else ("ref",):
        assert np.array_equal(kernels.attention(qkv, 2, False, impl, fast=True), kernels.attention(qkv, 2, False, impl))
