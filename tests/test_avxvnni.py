"""The AVX-VNNI fast GEMM (x86/avxvnni.cpp): bitwise the reference's, through its exact AVX2 emulation of
vpdpbusd here and natively where the CPU has AVX-VNNI; the emulation equals a scalar model of the instruction
(and the instruction itself where the CPU has AVX512-VNNI) for every byte value."""

import numpy as np
import pytest

from ternaryclip import kernels
from ternaryclip.kernels import _ext
from ternaryclip.pack.bits import pack_2bit

pytestmark = pytest.mark.skipif(not kernels.cpu_has_avx2(), reason="no AVX2 on this CPU")

# The emulation everywhere with AVX2; the instruction where the CPU has it (Alder Lake and later, Sapphire Rapids).
VNNI_IMPLS = ["avxvnni_emulated"] + (["avxvnni"] if kernels.cpu_has_avx_vnni() else [])


def dpbusd_model(acc: np.ndarray, u: np.ndarray, s: np.ndarray) -> np.ndarray:
    """vpdpbusd per int32 lane: acc + the 4 products u (unsigned byte) x s (signed byte), wrapped to int32."""
    sums = acc.astype(np.int64) + (u.astype(np.int64) * s.astype(np.int64)).reshape(-1, 4).sum(1)
    return ((sums + 2**31) % 2**32 - 2**31).astype(np.int32)


def extreme_operands():
    """Every (u, s) byte pair once, lanes of four equal extreme pairs (sums of +-130560), random bytes, and
    accumulators at the int32 limits so that the sums wrap."""
    rng = np.random.default_rng(0)
    pairs_u, pairs_s = np.meshgrid(np.arange(256), np.arange(-128, 128), indexing="ij")
    extremes = [(255, -128), (255, 127), (0, -128), (128, -128), (255, -1), (1, 127)]
    u = np.concatenate([pairs_u.ravel(), np.repeat([e[0] for e in extremes], 32), rng.integers(0, 256, 32 * 512)])
    s = np.concatenate([pairs_s.ravel(), np.repeat([e[1] for e in extremes], 32), rng.integers(-128, 128, 32 * 512)])
    lanes = len(u) // 4
    acc = rng.integers(-(2**31), 2**31, lanes, dtype=np.int64)
    acc[: lanes // 4] = np.resize([2**31 - 1, -(2**31), 2**31 - 100000, -(2**31) + 100000, 0], lanes // 4)
    return acc.astype(np.int32), u.astype(np.uint8), s.astype(np.int8)


def test_the_emulated_dpbusd_is_the_instruction_for_every_byte_value():
    acc, u, s = extreme_operands()
    expected = dpbusd_model(acc, u, s)
    assert np.array_equal(_ext.dpbusd(acc, u, s, "emulated"), expected)
    for how, present in [("avx512_vnni", kernels.cpu_has_avx512_vnni()), ("avxvnni", kernels.cpu_has_avx_vnni())]:
        if present:  # the scalar model is the instruction's (its EVEX form on AVX-512 VNNI CPUs)
            assert np.array_equal(_ext.dpbusd(acc, u, s, how), expected), how
        else:
            with pytest.raises(ValueError, match="not available"):
                _ext.dpbusd(acc, u, s, how)


def make_case(m, n, k, group, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-1, 2, (n, k)).astype(np.int8)
    gs = group or k
    scales = (rng.random((n, -(-k // gs))) + 0.1).astype(np.float32)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10)).astype(np.float32)
    x[0, 0] = 3 * np.abs(x).max()  # an outlier column, as in real activations
    return codes, pack_2bit(codes), scales, rng.standard_normal(n).astype(np.float32), x, gs


# (N, K, group): odd N, K off the 128-column block and past one 16-column chunk, groups on and off 16 columns
LAYERS = [(7, 5, None), (19, 300, None), (33, 200, 12), (40, 640, 64), (9, 1000, 100), (70, 130, None)]


@pytest.mark.parametrize("impl", VNNI_IMPLS)
@pytest.mark.parametrize("layer", LAYERS)
def test_fast_gemm_is_the_reference_bit_for_bit_at_every_small_m(impl, layer):
    """M = 1..17: the small-M kernel alone (<= 8 tokens), then 16 x 6 tiles with 1-5 tokens left over."""
    n, k, group = layer
    codes, packed, scales, bias, x, gs = make_case(17, n, k, group, n + k)
    weights = kernels.prepare(packed, k, scales, gs, impl)
    assert weights.impl == impl and weights.data.nbytes == kernels.prepare(packed, k, scales, gs, "avx2").data.nbytes
    for m in range(1, 18):
        expected = kernels.gemm(x[:m], packed, k, scales, gs, bias, "fast", "ref")
        assert np.array_equal(kernels.gemm_prepared(x[:m], weights, scales, gs, bias), expected), (impl, m)
        assert np.array_equal(kernels.gemm(x[:m], packed, k, scales, gs, bias, "fast", impl), expected), (impl, m)


@pytest.mark.parametrize("impl", VNNI_IMPLS)
def test_several_token_blocks_and_extreme_activations_give_the_reference_integers(impl):
    """700 tokens of K = 2048 span several 192 KB token blocks; int8 activations at -128 and 127 (the int_dot
    hook takes any int8) make the largest products the tile sees."""
    codes, packed, scales, bias, x, gs = make_case(700, 21, 2048, None, 3)
    assert np.array_equal(
        kernels.gemm_prepared(x, kernels.prepare(packed, 2048, scales, gs, impl), scales, gs, bias),
        kernels.gemm(x, packed, 2048, scales, gs, bias, "fast", "ref"),
    )
    q = np.random.default_rng(4).choice(np.array([-128, 127, -1, 0], np.int8), (50, 2048))
    expected = (q.astype(np.int64) @ codes.T.astype(np.int64))[:, :, None]
    assert np.array_equal(kernels.int_dot(q, packed, 2048, impl=impl), expected)


def test_auto_never_picks_the_emulation_and_the_instruction_only_where_the_cpu_has_it():
    assert kernels.TEST_IMPLS == ("avxvnni_emulated",) and "avxvnni_emulated" in kernels.IMPLS
    assert kernels.fast_gemm_impl() != "avxvnni_emulated"
    if kernels.cpu_has_avx_vnni() and not kernels.cpu_has_avx512_vnni():
        assert kernels.fast_gemm_impl() == "avxvnni"
    if not kernels.cpu_has_avx_vnni():
        codes, packed, scales, bias, x, gs = make_case(2, 8, 64, None, 0)
        with pytest.raises(ValueError, match="impl='avxvnni' is not available"):
            kernels.gemm(x, packed, 64, scales, gs, bias, "fast", "avxvnni")
