"""Mode "bf16" (W1.58-A16 with bf16 activations): the exact GEMM of the activations rounded to bf16.

The rounding against numpy bit arithmetic, the AMX-BF16 GEMM against a float64 reference on ragged shapes,
the fallback (exact GEMM of the rounded activations) bit for bit against the scalar reference, and the
runtime against exact mode and against its own fallback.
"""

import numpy as np
import pytest

import ternaryclip
from helpers import random_inputs
from ternaryclip import kernels
from ternaryclip.cli import main
from ternaryclip.pack.bits import pack_2bit
from ternaryclip.quant import TernaryConfig, ternarize_

HAS_AMX_BF16 = kernels.cpu_has_amx_bf16()
NO_AMX_BF16 = "this CPU has no AMX-BF16: mode bf16 runs the exact GEMM of the rounded activations here"
FALLBACK_IMPLS = ["ref"] + [
    impl for impl, has in [("avx2", kernels.cpu_has_avx2()), ("avx512", kernels.cpu_has_avx512_vnni())] if has
]


def bf16_by_hand(x: np.ndarray) -> np.ndarray:
    """x rounded to bf16 with numpy integers: round to nearest even on the upper 16 bits of the float32,
    subnormals to zeros of their sign, NaNs made quiet (vcvtneps2bf16's rules)."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    exponent, mantissa = bits & 0x7F800000, bits & 0x007FFFFF
    out = bits + 0x7FFF + ((bits >> 16) & 1)
    out = np.where(exponent == 0, bits & 0x80000000, out)
    out = np.where(exponent == 0x7F800000, np.where(mantissa == 0, bits, bits | 0x00400000), out)
    return (out & 0xFFFF0000).astype(np.uint32).view(np.float32)


def bits_of(*values: int) -> np.ndarray:
    return np.array(values, np.uint32).view(np.float32)


def test_rounding_matches_numpy_bit_arithmetic_on_every_kind_of_float():
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)  # NaNs too
    values = (rng.standard_normal(100_000) * np.exp(rng.uniform(-80, 80, 100_000))).astype(np.float32)
    for x in (patterns, values, values.reshape(100, 1000)):
        got = kernels.round_bf16(x)
        assert got.shape == x.shape and np.array_equal(got.view(np.uint32), bf16_by_hand(x).view(np.uint32))


@pytest.mark.parametrize(
    "given, expected",
    [
        (0x00000000, 0x00000000),  # +0
        (0x80000000, 0x80000000),  # -0
        (0x00000001, 0x00000000),  # smallest subnormal: a zero of its sign
        (0x807FFFFF, 0x80000000),  # largest negative subnormal
        (0x00800000, 0x00800000),  # smallest normal
        (0x3F808000, 0x3F800000),  # a tie rounds to the even mantissa: down
        (0x3F818000, 0x3F820000),  # ... and up
        (0x3F808001, 0x3F810000),  # just past a tie
        (0x3F807FFF, 0x3F800000),  # just below a tie
        (0xBF818000, 0xBF820000),  # negative values round by magnitude
        (0x7F7F7FFF, 0x7F7F0000),  # just below bf16's largest: stays finite
        (0x7F7FFFFF, 0x7F800000),  # float32's largest: past bf16's, to infinity
        (0xFF7FFFFF, 0xFF800000),  # ... and to -infinity
        (0x7F800000, 0x7F800000),  # infinity
        (0xFF800000, 0xFF800000),  # -infinity
        (0x7FC00000, 0x7FC00000),  # quiet NaN
        (0x7F800001, 0x7FC00000),  # signalling NaN, its payload in the dropped bits: quiet, still NaN
        (0xFFA5A5A5, 0xFFE50000),  # negative NaN with payload: sign and upper payload kept
    ],
)
def test_rounding_of_edge_values(given, expected):
    got = kernels.round_bf16(bits_of(given)).view(np.uint32)[0]
    assert got == expected, f"{given:#010x} -> {got:#010x}, expected {expected:#010x}"


def test_rounding_picks_the_nearest_bf16_by_float64_distance():
    """The same rounding found without bit arithmetic: the nearer of the two bf16 neighbours, even on ties."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(50_000) * 10.0 ** rng.uniform(-30, 30, 50_000)).astype(np.float32)
    down = (x.view(np.uint32) & 0xFFFF0000).view(np.float32).astype(np.float64)  # toward zero
    up = ((x.view(np.uint32) & 0xFFFF0000) + 0x10000).view(np.float32).astype(np.float64)  # away from zero
    gap_down, gap_up = np.abs(x - down), np.abs(up - x)
    down_is_even = ((x.view(np.uint32) >> 16) & 1) == 0
    want = np.where((gap_down < gap_up) | ((gap_down == gap_up) & down_is_even), down, up)
    assert np.array_equal(kernels.round_bf16(x).astype(np.float64), want)


def test_rounding_refuses_other_dtypes():
    with pytest.raises(ValueError, match="float32"):
        kernels.round_bf16(np.ones(3))


# ---------------------------------------------------------------------------------------------- GEMM
def make_case(m, n, k, group, seed, with_bias=True):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-1, 2, (n, k)).astype(np.int8)
    gs = group or k
    scales = (rng.random((n, -(-k // gs))) + 0.1).astype(np.float32)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10)).astype(np.float32)
    x[0, 0] = 3 * np.abs(x).max()  # an outlier column, as in real activations
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    return codes, pack_2bit(codes), scales, bias, x, gs


def reference(x, codes, scales, gs, bias):
    """y in float64 from the unpacked codes, and the bound on float32 summation error (sum |x| |s t|)."""
    weights = codes.astype(np.float64) * np.repeat(scales.astype(np.float64), gs, axis=1)[:, : codes.shape[1]]
    rounded = bf16_by_hand(x).astype(np.float64)
    bias = 0.0 if bias is None else bias.astype(np.float64)
    return rounded @ weights.T + bias, np.abs(rounded) @ np.abs(weights).T + np.abs(bias)


def bf16_runs_on_amx(packed, k, scales, gs) -> bool:
    return HAS_AMX_BF16 and kernels.prepare(packed, k, scales, gs, "amx", mode="bf16") is not None


# (N, K, group): odd N, K off the 64-column chunk; groups on 64-column boundaries (AMX) and inside them
# (the fallback), a last group shorter than the others
RAGGED = [
    (1, 100, None),
    (31, 200, None),
    (33, 648, None),
    (47, 640, 64),
    (33, 200, 128),
    (31, 648, 64),
    (33, 100, 32),
    (1, 640, 12),
]
TOKENS = [*range(1, 18), 33]  # under one token tile, one and a part, two and one more


@pytest.mark.parametrize("shape", RAGGED)
@pytest.mark.parametrize("with_bias", [True, False])
def test_gemm_is_the_exact_gemm_of_the_rounded_activations(shape, with_bias):
    n, k, group = shape
    for m in TOKENS:
        codes, packed, scales, bias, x, gs = make_case(m, n, k, group, m * 1000 + n + k, with_bias)
        want, bound = reference(x, codes, scales, gs, bias)
        for impl in ["auto", "amx"] * HAS_AMX_BF16 + FALLBACK_IMPLS:
            got = kernels.gemm(x, packed, k, scales, gs, bias, "bf16", impl)
            assert got.dtype == np.float32 and got.shape == (m, n)
            assert np.all(np.abs(got - want) <= 1e-5 * bound), (m, impl)


@pytest.mark.parametrize("shape", RAGGED)
def test_fallback_is_bitwise_the_exact_gemm_of_the_rounded_activations(shape):
    """Where no AMX-BF16 GEMM runs, mode bf16 is the table's exact GEMM, itself bitwise the reference's."""
    n, k, group = shape
    for m in (1, 7, 33):
        codes, packed, scales, bias, x, gs = make_case(m, n, k, group, m + 7 * n)
        expected = kernels.gemm(kernels.round_bf16(x), packed, k, scales, gs, bias, "exact", "ref")
        for impl in FALLBACK_IMPLS:
            assert np.array_equal(kernels.gemm(x, packed, k, scales, gs, bias, "bf16", impl), expected), impl
        if not bf16_runs_on_amx(packed, k, scales, gs):  # AMX for these weights too, or any CPU without it
            assert np.array_equal(kernels.gemm(x, packed, k, scales, gs, bias, "bf16"), expected)


@pytest.mark.parametrize("shape", RAGGED)
def test_prepared_weights_give_the_per_call_numbers_bit_for_bit(shape):
    n, k, group = shape
    codes, packed, scales, bias, x, gs = make_case(17, n, k, group, n + k)
    weights = kernels.prepare(packed, k, scales, gs, mode="bf16")
    amx_groups = gs == k or gs % 64 == 0
    if not HAS_AMX_BF16 or not amx_groups:
        assert weights is None  # the exact GEMM reads the file layout
        return
    assert weights.impl == "amx" and weights.mode == "bf16"
    direct = kernels.gemm(x, packed, k, scales, gs, bias, "bf16", "amx")
    assert np.array_equal(kernels.gemm_prepared(x, weights, scales, gs, bias), direct)
    out = np.full((17, n), np.nan, np.float32)
    assert kernels.gemm_prepared_into(x, weights, scales, gs, bias, out) is out and np.array_equal(out, direct)
    # the residual add: in the epilogue for per-row scales, through scratch for groups; a separate add's sums
    residual = np.random.default_rng(0).standard_normal((17, n)).astype(np.float32)
    added = residual.copy()
    kernels.gemm_prepared(x, weights, scales, gs, bias, out=added, add=True)
    assert np.array_equal(added, residual + direct)


def test_one_prepared_layout_serves_the_fast_and_the_bf16_gemm():
    if not HAS_AMX_BF16:
        pytest.skip(NO_AMX_BF16)
    codes, packed, scales, bias, x, gs = make_case(9, 40, 300, None, 3)
    fast, bf16 = kernels.prepare(packed, 300, scales, gs), kernels.prepare(packed, 300, scales, gs, mode="bf16")
    assert fast.impl == bf16.impl == "amx" and np.array_equal(fast.data, bf16.data)
    assert kernels.adds_in_epilogue("amx", "bf16")


# 400 tokens of K = 3000: several token blocks, pairs of tiles and one; 1000: exact mode's terms in two passes
@pytest.mark.parametrize("m", [1, 16, 400, 1000])
@pytest.mark.parametrize("mode", ["bf16", "exact"])
def test_token_blocks_and_identity_weights(m, mode):
    """Identity weights return the activations the unit multiplied: in mode bf16 rounded as round_bf16 rounds
    (vcvtneps2bf16), in exact mode x itself, bit for bit (h + m + l = x, added in order into a zero sum)."""
    if not HAS_AMX_BF16:
        pytest.skip(NO_AMX_BF16)
    rng = np.random.default_rng(m)
    k = 3000 if m >= 400 else 200
    x = (rng.standard_normal((m, k)) * np.exp(rng.uniform(-20, 20, (m, k)))).astype(np.float32)
    n = min(k, 64)
    ones = np.ones((n, 1), np.float32)
    weights = kernels.prepare(pack_2bit(np.eye(n, k, dtype=np.int8)), k, ones, k, "amx", mode=mode)
    want = kernels.round_bf16(x[:, :n]) if mode == "bf16" else x[:, :n]
    assert np.array_equal(kernels.gemm_prepared(x, weights, ones, k), want)


def test_large_outputs_streamed_past_the_caches_are_the_same_numbers():
    if not HAS_AMX_BF16:
        pytest.skip(NO_AMX_BF16)
    from ternaryclip.runtime.model import aligned_empty

    codes, packed, scales, bias, x, gs = make_case(2100, 1024, 128, None, 9)  # 8.6 MB out: streamed
    weights = kernels.prepare(packed, 128, scales, gs, mode="bf16")
    aligned = aligned_empty(2100 * 1024).reshape(2100, 1024)
    unaligned = np.empty(2100 * 1024 + 1, np.float32)[1:].reshape(2100, 1024)
    kernels.gemm_prepared_into(x, weights, scales, gs, bias, aligned)
    kernels.gemm_prepared_into(x, weights, scales, gs, bias, unaligned)
    assert np.array_equal(aligned, unaligned)
    want, bound = reference(x, codes, scales, gs, bias)
    assert np.all(np.abs(aligned - want) <= 1e-5 * bound)


def test_no_tokens_give_an_empty_result():
    codes, packed, scales, bias, x, gs = make_case(1, 5, 100, None, 0)
    assert kernels.gemm(x[:0], packed, 100, scales, gs, bias, "bf16").shape == (0, 5)


def test_bad_modes_and_foreign_weights_are_refused():
    codes, packed, scales, bias, x, gs = make_case(2, 9, 200, None, 0)
    with pytest.raises(ValueError, match="mode"):
        kernels.prepare(packed, 200, scales, gs, mode="int4")
    with pytest.raises(ValueError, match="mode must be"):
        kernels.gemm(x, packed, 200, scales, gs, bias, "bf8")
    if kernels.cpu_has_avx2():  # AVX2's layout has no bf16 GEMM
        avx2 = kernels.prepare(packed, 200, scales, gs, "avx2")
        foreign = kernels.PreparedWeights(avx2.data, "avx2", 9, 200, "bf16")
        with pytest.raises(ValueError, match="prepared for impl='avx2' cannot run mode 'bf16'"):
            kernels.gemm_prepared(x, foreign, scales, gs)


# ------------------------------------------------------------------------------ exact mode on AMX-BF16
def exact_reference(x, codes, scales, gs, bias):
    """y in float64 from the float32 activations themselves, and sum |x| |s t| + |b| (the error bound's scale)."""
    weights = codes.astype(np.float64) * np.repeat(scales.astype(np.float64), gs, axis=1)[:, : codes.shape[1]]
    x64, bias = x.astype(np.float64), 0.0 if bias is None else bias.astype(np.float64)
    return x64 @ weights.T + bias, np.abs(x64) @ np.abs(weights).T + np.abs(bias)


@pytest.mark.parametrize("shape", RAGGED)
def test_exact_mode_on_amx_is_the_reference_up_to_the_order_of_float32_sums(shape):
    """Three exact bf16 terms per activation: float32-summation error only (1e-5 of sum |x||w|), where
    one term (mode bf16) is off by ~1e-3 of it; the FMA path is bitwise the reference, AMX is not."""
    n, k, group = shape
    for m in (1, 5, 16, 17, 33):
        codes, packed, scales, bias, x, gs = make_case(m, n, k, group, m * 31 + n + k)
        weights = kernels.prepare(packed, k, scales, gs, mode="exact")
        if not bf16_runs_on_amx(packed, k, scales, gs):
            assert weights is None  # the FMA GEMM on the file layout: bitwise the reference (test_kernels)
            continue
        assert weights.impl == "amx" and weights.mode == "exact"
        want, bound = exact_reference(x, codes, scales, gs, bias)
        got = kernels.gemm_prepared(x, weights, scales, gs, bias)
        assert np.all(np.abs(got - want) <= 1e-5 * bound), m
        rounded = kernels.gemm_prepared(x, kernels.prepare(packed, k, scales, gs, mode="bf16"), scales, gs, bias)
        assert np.abs(rounded - want).max() > 10 * np.abs(got - want).max()
        residual = np.random.default_rng(m).standard_normal((m, n)).astype(np.float32)
        added = residual.copy()
        kernels.gemm_prepared(x, weights, scales, gs, bias, out=added, add=True)
        assert np.array_equal(added, residual + got)


# ---------------------------------------------------------------------------------------------- runtime
def cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(
    params=[
        TernaryConfig(embedding=True),  # per-row scales
        TernaryConfig(granularity="group", group_size=64),  # groups of one AMX chunk
        TernaryConfig(granularity="group", group_size=32),  # groups inside a chunk: the fallback GEMM
    ],
    ids=["channel", "group64", "group32"],
)
def tiny_file(request, tiny_open_clip, tmp_path):
    """(a tiny ternary CLIP's file, whether its GEMMs in mode bf16 run on AMX-BF16 on this CPU)"""
    config = request.param
    ternarize_(tiny_open_clip, config)
    on_amx = HAS_AMX_BF16 and (config.granularity != "group" or config.group_size % 64 == 0)
    return ternaryclip.save(tiny_open_clip, tmp_path / "tiny.tclip"), on_amx


def embeddings(path, mode, fast_attention=None):
    runtime = ternaryclip.load(path, mode=mode)
    if fast_attention is not None:
        for block in runtime.visual_blocks + runtime.text_blocks:
            block.fast_attention = fast_attention
    image, text = random_inputs(batch=6)
    return runtime, runtime.encode_image(image.numpy()), runtime.encode_text(text.numpy())


def test_runtime_bf16_mode_stays_within_cosine_0_9995_of_exact_mode(tiny_file):
    path, _ = tiny_file
    _, exact_img, exact_txt = embeddings(path, "exact")
    _, img, txt = embeddings(path, "bf16")
    assert cosine(img, exact_img).min() >= 0.9995 and cosine(txt, exact_txt).min() >= 0.9995
    assert not np.array_equal(img, exact_img)  # the activations were rounded


def test_runtime_exact_mode_on_amx_equals_the_fma_path_up_to_float32_rounding(tiny_file, monkeypatch):
    path, on_amx = tiny_file
    runtime, img, txt = embeddings(path, "exact")
    prepared = [lin.prepared for b in runtime.visual_blocks for lin in (b.in_proj, b.c_fc)]
    assert all((p is not None and p.mode == "exact") if on_amx else p is None for p in prepared)
    monkeypatch.setenv(kernels.IMPL_VARIABLE, "avx512" if kernels.cpu_has_avx512_vnni() else "ref")
    _, fma_img, fma_txt = embeddings(path, "exact")
    for got, want in [(img, fma_img), (txt, fma_txt)]:
        assert np.allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
        assert cosine(got, want).min() >= 0.99999


@pytest.mark.parametrize("forced", ["avx512", "avx2"])
def test_runtime_bf16_mode_equals_its_fallback(tiny_file, forced, monkeypatch):
    """AMX-BF16 GEMMs (and AMX bf16 attention) against the exact GEMMs of the rounded activations (and the
    attention of that path: vdpbf16ps where the CPU has AVX512-BF16, else float32) that the same mode runs
    where TERNARYCLIP_IMPL forces an older instruction set."""
    if not (kernels.cpu_has_avx512_vnni() if forced == "avx512" else kernels.cpu_has_avx2()):
        pytest.skip(f"this CPU has no {forced}")
    path, on_amx = tiny_file
    runtime, img, txt = embeddings(path, "bf16")
    _, img_f32_attention, txt_f32_attention = embeddings(path, "bf16", fast_attention=False)
    prepared = [lin.prepared for b in runtime.visual_blocks for lin in (b.in_proj, b.c_fc)]
    if on_amx:
        assert all(p is not None and p.impl == "amx" and p.mode == "bf16" for p in prepared)
    else:
        assert all(p is None for p in prepared)
    monkeypatch.setenv(kernels.IMPL_VARIABLE, forced)
    fallback, fallback_img, fallback_txt = embeddings(path, "bf16")
    _, fallback_img_f32_attention, fallback_txt_f32_attention = embeddings(path, "bf16", fast_attention=False)
    assert all(lin.prepared is None for b in fallback.visual_blocks for lin in (b.in_proj, b.c_fc))
    # the GEMMs alone: float32 attention on both sides, the same numbers up to the order of float32 sums
    pairs = [(img_f32_attention, fallback_img_f32_attention), (txt_f32_attention, fallback_txt_f32_attention)]
    for got, want in pairs:
        assert np.allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # as the modes run: bf16 attention products on both where the CPU has them
    assert cosine(img, fallback_img).min() >= 0.9999 and cosine(txt, fallback_txt).min() >= 0.9999


def test_embed_cli_accepts_mode_bf16(tiny_file, tmp_path):
    from PIL import Image

    path, _ = tiny_file
    files = [tmp_path / f"{i}.png" for i in range(2)]
    for i, file in enumerate(files):
        Image.new("RGB", (40, 30), (90 * i, 20, 200)).save(file)
    out = tmp_path / "emb.npz"
    assert main(["embed", str(path), "--images", *map(str, files), "--out", str(out), "--mode", "bf16"]) == 0
    want = ternaryclip.load(path, mode="bf16").encode_image([str(f) for f in files])
    assert np.allclose(np.load(out)["image"], want, rtol=1e-6, atol=1e-7)


def test_serve_and_eval_parsers_accept_mode_bf16():
    from ternaryclip.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve", "m.tclip", "--mode", "bf16"]).mode == "bf16"
    assert parser.parse_args(["eval", "--model", "m.tclip", "--dataset", "d", "--mode", "bf16"]).mode == "bf16"
    assert parser.parse_args(["bench", "--profile", "--mode", "bf16"]).mode == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "m.tclip", "--mode", "int4"])
