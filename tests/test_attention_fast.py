"""Mode bf16's attention (and mode fast's on AMX): bf16 products on AMX-BF16 tiles or with AVX512-BF16
vdpbf16ps where the CPU has them, float32 elsewhere.  (Mode fast's int8 attention on AVX-512 VNNI and AVX2:
test_attention_int8.py.)

Against torch's float32 attention: every output row within the fast mode's fidelity bound, and on a CPU
without the instructions (or a head width they do not take) the very numbers of the float32 path.  Against
the definition (Q, K, V and the softmax weights rounded to bf16, the rest in float64): both bf16 paths
within float32 summation error.
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


# The paths with a bf16 attention, where this CPU can run them, and whether it runs bf16 products there.
BF16_PATHS = [
    impl
    for impl, available in (("amx", kernels.cpu_has_amx_int8()), ("avx512", kernels.cpu_has_avx512_vnni()))
    if available
]


def runs_bf16_products(impl: str, hd: int) -> bool:
    """Whether ``attention(..., impl, fast=True)`` takes the bf16 products on this CPU for head width hd."""
    resolved = kernels.fast_gemm_impl(impl)
    has = kernels.cpu_has_avx512_bf16() if resolved in ("amx", "avx512") else False
    return has and hd % 32 == 0


def bf16_definition(qkv: np.ndarray, heads: int, causal: bool) -> np.ndarray:
    """The fast attention's numbers by definition: Q scaled then Q, K, V and the softmax weights P rounded
    to bf16; products, sums and the softmax in float64."""
    b, t, w3 = qkv.shape
    w = w3 // 3
    hd = w // heads
    scale = np.float32(1.0) / np.sqrt(np.float32(hd))
    q, k, v = (qkv[..., i * w : (i + 1) * w].reshape(b, t, heads, hd).transpose(0, 2, 1, 3) for i in range(3))
    q, k, v = (kernels.round_bf16(np.ascontiguousarray(a)).astype(np.float64) for a in (q * scale, k, v))
    scores = q @ k.transpose(0, 1, 3, 2)
    if causal:
        scores = np.where(np.tri(t, dtype=bool), scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p = kernels.round_bf16((p / p.sum(-1, keepdims=True)).astype(np.float32)).astype(np.float64)
    return (p @ v).transpose(0, 2, 1, 3).reshape(b, t, w)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("impl", ["auto", *BF16_PATHS])
def test_fast_attention_stays_within_the_fast_modes_bound(shape, causal, impl):
    b, t, heads, hd = shape
    rng = np.random.default_rng(b * 1000 + t)
    qkv = (rng.standard_normal((b, t, 3 * heads * hd)) * 2).astype(np.float32)
    reference = torch_attention(qkv, heads, causal)
    float32 = kernels.attention(qkv, heads, causal, impl)
    fast = kernels.attention(qkv, heads, causal, impl, fast=True, int8=False)
    assert np.abs(float32 - reference).max() < 1e-4
    assert row_cosines(fast, reference).min() > 0.9995
    assert np.abs(fast - reference).max() < 0.2  # bf16: ~3 significant digits on values of order 1
    # the bf16 products ran exactly where they apply, and the path says which
    assert np.array_equal(fast, float32) != runs_bf16_products(impl, hd)
    assert (kernels.fast_attention_impl(impl, "bf16") != "float32") == runs_bf16_products(impl, 64)


def test_the_fast_attention_path_is_named_for_each_impl():
    expected = {"ref": "float32", "avx2": "float32"}
    if kernels.cpu_has_avx512_vnni():
        expected["avx512"] = "avx512_bf16" if kernels.cpu_has_avx512_bf16() else "float32"
    if kernels.cpu_has_amx_int8():
        expected["amx"] = "amx_bf16" if kernels.cpu_has_amx_bf16() else expected["avx512"]
    for impl, name in expected.items():
        if impl in kernels.IMPLS and (impl != "avx2" or kernels.cpu_has_avx2()):
            assert kernels.fast_attention_impl(impl, "bf16") == name, impl
            # mode fast: int8 products on the AVX2 and AVX-512 VNNI paths, AMX's bf16 tiles stay
            int8 = {"avx2": "avx2_int8", "avx512": "avx512_int8" if kernels.cpu_has_avx512_vnni() else "float32"}
            assert kernels.fast_attention_impl(impl) == int8.get(impl, name), impl
    assert kernels.fast_attention_impl(mode="bf16") in ("amx_bf16", "avx512_bf16", "float32")


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[3] % 32 == 0])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("impl", BF16_PATHS)
def test_bf16_attention_paths_compute_the_definition(shape, causal, impl):
    if not runs_bf16_products(impl, shape[3]):
        pytest.skip("this CPU has no bf16 products on this path")
    b, t, heads, hd = shape
    rng = np.random.default_rng(b * 7 + t)
    qkv = (rng.standard_normal((b, t, 3 * heads * hd)) * 2).astype(np.float32)
    fast = kernels.attention(qkv, heads, causal, impl, fast=True, int8=False)
    definition = bf16_definition(qkv, heads, causal)
    float32 = kernels.attention(qkv, heads, causal, impl)
    # float32 sums only, and now and then a softmax weight whose float32 value rounds to the neighbouring
    # bf16 (one bf16 step of a weight times a value: ~5e-3 at most here); measured mean ~1e-7, against the
    # float32 attention's ~4e-3 (it does not round)
    error = np.abs(fast - definition)
    assert error.max() < 1e-2 and error.mean() < 1e-5
    assert error.mean() < np.abs(float32 - definition).mean() / 1000


@pytest.mark.parametrize("impl", ["auto", *BF16_PATHS])
def test_fast_attention_gives_the_same_rows_alone_or_batched_and_on_one_thread(impl):
    rng = np.random.default_rng(7)
    qkv = rng.standard_normal((6, 45, 3 * 128)).astype(np.float32)
    batched = kernels.attention(qkv, 2, True, impl, fast=True, int8=False)
    alone = np.concatenate([kernels.attention(qkv[i : i + 1], 2, True, impl, fast=True, int8=False) for i in range(6)])
    before = kernels.get_num_threads()
    kernels.set_num_threads(1)
    try:
        serial = kernels.attention(qkv, 2, True, impl, fast=True, int8=False)
    finally:
        kernels.set_num_threads(before)
    assert np.array_equal(batched, alone) and np.array_equal(batched, serial)


def test_a_forced_narrower_path_has_no_bf16_attention():
    rng = np.random.default_rng(3)
    qkv = rng.standard_normal((1, 20, 3 * 64)).astype(np.float32)
    for impl in ("ref", "avx2") if kernels.cpu_has_avx2() else ("ref",):
        float32 = kernels.attention(qkv, 2, False, impl)
        assert np.array_equal(kernels.attention(qkv, 2, False, impl, fast=True, int8=False), float32)
    # the reference has no int8 attention either
    assert np.array_equal(kernels.attention(qkv, 2, False, "ref", fast=True), kernels.attention(qkv, 2, False, "ref"))
