"""Ternary GEMM kernels: AVX2 equals the scalar reference exactly; both equal a numpy computation."""

import numpy as np
import pytest

from ternaryclip import kernels
from ternaryclip.pack.bits import pack_2bit

IMPLS = ["ref"] + (["avx2"] if kernels.cpu_has_avx2() else [])


def impls_for(group_size: int, k: int) -> list[str]:
    """SIMD paths need groups on 4-column boundaries; 'auto' falls back to the reference otherwise."""
    impls = ["ref", "auto"]
    if kernels.cpu_has_avx2() and (group_size == k or group_size % 4 == 0):
        impls += ["avx2", "avxvnni_emulated"]  # the AVX-VNNI kernels with vpdpbusd emulated (test_avxvnni.py)
    if kernels.cpu_has_avx_vnni() and (group_size == k or group_size % 4 == 0):
        impls.append("avxvnni")
    if kernels.cpu_has_avx512_vnni() and (group_size == k or group_size % 4 == 0):
        impls.append("avx512")
    if kernels.cpu_has_amx_int8() and (group_size == k or group_size % 64 == 0):
        impls.append("amx")
    return impls


# (M, N, K, group_size): M = 1, odd N, K not a multiple of 32 / 128, groups, several 128-column int16 segments
SHAPES = [
    (1, 1, 1, None),
    (1, 7, 5, None),
    (3, 5, 130, None),
    (2, 9, 257, None),
    (5, 7, 300, 64),
    (4, 4, 256, 128),
    (7, 33, 512, None),
    (1, 3, 1100, None),
    (9, 6, 2100, None),
    (2, 5, 96, 32),
    (3, 6, 100, 10),
    (17, 19, 200, 12),
    (33, 16, 64, None),
]


def make_case(m, n, k, group, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-1, 2, (n, k)).astype(np.int8)
    groups = 1 if group is None else -(-k // group)
    scales = rng.random((n, groups)).astype(np.float32) + 0.1
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10)).astype(np.float32)
    x[0, 0] = 3 * np.abs(x).max()  # an outlier column, as in real activations
    return codes, pack_2bit(codes), scales, rng.standard_normal(n).astype(np.float32), x, group or k


@pytest.mark.parametrize("shape", SHAPES)
def test_integer_dots_equal_numpy_for_every_impl(shape):
    m, n, k, group = shape
    codes, packed, _, _, x, gs = make_case(m, n, k, group, sum(shape[:3]))
    q, _, _ = kernels.quantize_rows(x, gs, impl="ref")
    groups = -(-k // gs)
    expected = np.stack(
        [
            (
                q[:, None, g * gs : min(k, (g + 1) * gs)].astype(np.int64)
                * codes[None, :, g * gs : min(k, (g + 1) * gs)]
            ).sum(-1)
            for g in range(groups)
        ],
        -1,
    )
    for impl in impls_for(gs, k):
        assert np.array_equal(kernels.int_dot(q, packed, k, gs, impl=impl), expected), impl


def quantizing_impls() -> list[str]:
    impls = ["avx2"] if kernels.cpu_has_avx2() else []
    return impls + (["avx512"] if kernels.cpu_has_avx512_vnni() else [])


@pytest.mark.parametrize("k", [1, 15, 16, 17, 64, 100, 768, 3072 + 5])
def test_simd_quantization_equals_the_reference_bit_for_bit(k):
    """Rounding ties, the clamp at +-127, zero rows, a row with inf (NaN after scaling), tails past 16."""
    if not quantizing_impls():
        pytest.skip("no SIMD quantization on this CPU")
    rng = np.random.default_rng(k)
    x = rng.standard_normal((9, k)).astype(np.float32) * np.float32(3.0)
    x[1] = 0.0
    x[2, :] = np.arange(k, dtype=np.float32) - k / 2 + 0.5  # halves: ties after scaling where absmax allows
    x[3, 0] = np.inf
    x[4] *= np.float32(1e-30)
    for group_size in {k, max(1, k // 3)}:
        ref = kernels.quantize_rows(x, group_size, "ref")
        for impl in quantizing_impls():
            for name, want, got in zip(["q", "xscale", "qsum"], ref, kernels.quantize_rows(x, group_size, impl)):
                assert np.array_equal(want, got, equal_nan=True), (impl, name, group_size)


@pytest.mark.parametrize("shape", SHAPES)
def test_simd_fast_path_is_bitwise_equal_to_the_reference(shape):
    m, n, k, group = shape
    codes, packed, scales, bias, x, gs = make_case(m, n, k, group, 7 * sum(shape[:3]))
    simd = [impl for impl in impls_for(gs, k) if impl not in ("ref", "auto", "amx")]
    if not simd:
        pytest.skip("no SIMD path for this CPU or group size")
    for name, ref, fast in zip(
        ["q", "xscale", "qsum"], kernels.quantize_rows(x, gs, "ref"), kernels.quantize_rows(x, gs, "avx2")
    ):
        assert np.array_equal(ref, fast), name
    for impl in simd:
        for b in (bias, None):
            assert np.array_equal(
                kernels.gemm(x, packed, k, scales, gs, b, "fast", "ref"),
                kernels.gemm(x, packed, k, scales, gs, b, "fast", impl),
            ), impl


def test_token_blocks_of_a_large_batch_give_the_same_result():
    # 700 tokens of K = 2048 (1.4 MB of int8 rows) span several L2-sized token blocks in every SIMD driver
    # (AVX2 192 KB, AVX-512 512 KB, AMX 1 MB a block)
    codes, packed, scales, bias, x, gs = make_case(700, 9, 2048, None, 5)
    ref = kernels.gemm(x, packed, 2048, scales, gs, bias, "fast", "ref")
    for impl in impls_for(gs, 2048):
        assert np.array_equal(kernels.gemm(x, packed, 2048, scales, gs, bias, "fast", impl), ref), impl
        assert np.allclose(
            kernels.gemm(x, packed, 2048, scales, gs, bias, "exact", impl),
            kernels.gemm(x, packed, 2048, scales, gs, bias, "exact", "ref"),
            rtol=1e-5,
            atol=1e-3,
        )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_gemm_matches_dequantized_float_matmul(shape, mode):
    m, n, k, group = shape
    codes, packed, scales, bias, x, gs = make_case(m, n, k, group, 3 * sum(shape[:3]))
    w = codes * np.repeat(scales, gs, axis=1)[:, :k]
    if mode == "fast":  # the documented activation quantization, in numpy
        xs = np.abs(x).max(axis=1, keepdims=True) / 127
        x_used = np.clip(np.round(x / xs), -127, 127) * xs
    else:
        x_used = x
    expected = x_used.astype(np.float64) @ w.T.astype(np.float64) + bias
    for impl in impls_for(gs, k):
        got = kernels.gemm(x, packed, k, scales, gs, bias, mode, impl)
        assert np.allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()), impl


def test_explicit_simd_request_for_an_unsupported_group_size_is_refused():
    if not kernels.cpu_has_avx2():
        pytest.skip("no AVX2 on this CPU")
    codes, packed, scales, bias, x, gs = make_case(2, 3, 100, 10, 0)  # groups of 10: not 4-aligned
    with pytest.raises(ValueError, match="not available"):
        kernels.gemm(x, packed, 100, scales, gs, bias, "fast", "avx2")


def test_zero_rows_and_per_tensor_scale():
    codes = np.ones((3, 40), dtype=np.int8)
    x = np.zeros((2, 40), dtype=np.float32)
    x[1] = 1.0
    for impl in IMPLS:
        y = kernels.gemm(x, pack_2bit(codes), 40, np.array([[0.5]], np.float32), 40, None, "fast", impl)
        assert np.array_equal(y, np.array([[0, 0, 0], [20, 20, 20]], np.float32))


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda a: {**a, "x": a["x"].astype(np.float64)}, "float32"),
        (lambda a: {**a, "x": a["x"][:, :5]}, "columns"),
        (lambda a: {**a, "packed": a["packed"][:, :3]}, "bytes a row"),
        (lambda a: {**a, "scales": np.ones((2, 1), np.float32)}, "scales"),
        (lambda a: {**a, "bias": np.ones(7, np.float32)}, "bias"),
        (lambda a: {**a, "x": [[1.0] * 8]}, "numpy array"),
        (lambda a: {**a, "mode": "int4"}, "mode"),
    ],
)
def test_bad_arguments_raise_value_errors(bad, message):
    args = {
        "x": np.ones((2, 8), np.float32),
        "packed": pack_2bit(np.zeros((3, 8), np.int8)),
        "k": 8,
        "scales": np.ones((3, 1), np.float32),
        "group_size": 8,
        "bias": np.ones(3, np.float32),
        "mode": "fast",
    }
    with pytest.raises(ValueError, match=message):
        kernels.gemm(**bad(args))


def test_non_contiguous_input_is_accepted_by_copy():
    x = np.ones((8, 2), np.float32).T  # [2, 8], not C-contiguous
    y = kernels.gemm(x, pack_2bit(np.ones((3, 8), np.int8)), 8, np.ones((3, 1), np.float32), 8, mode="exact")
    assert np.array_equal(y, np.full((2, 3), 8, np.float32))


def test_float_ops_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((13, 96)) * 3).astype(np.float32)
    w, b = rng.standard_normal(96).astype(np.float32), rng.standard_normal(96).astype(np.float32)
    ln = torch.nn.functional.layer_norm(torch.from_numpy(x), (96,), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    grid = np.linspace(-12, 12, 20001, dtype=np.float32)
    gelu = torch.nn.functional.gelu(torch.from_numpy(grid)).numpy()
    quick = (torch.from_numpy(grid) * torch.sigmoid(1.702 * torch.from_numpy(grid))).numpy()
    qkv = rng.standard_normal((2, 37, 3 * 128)).astype(np.float32)  # head_dim 32: the SIMD value path
    q, k, v = (
        torch.from_numpy(qkv[..., i * 128 : (i + 1) * 128]).reshape(2, 37, 4, 32).transpose(1, 2) for i in range(3)
    )
    for impl in IMPLS + (["avx512"] if kernels.cpu_has_avx512_vnni() else []):
        assert np.abs(kernels.layer_norm(x, w, b, 1e-5, impl) - ln).max() < 1e-5
        for kind, ref in [("gelu", gelu), ("quick_gelu", quick)]:
            a = grid.copy()
            kernels.activation_(a, kind, impl)
            assert np.abs(a - ref).max() < 5e-6, kind
        for causal in (False, True):
            ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
            ref = ref.transpose(1, 2).reshape(2, 37, 128).numpy()
            assert np.abs(kernels.attention(qkv, 4, causal, impl) - ref).max() < 1e-5


@pytest.mark.parametrize("d", [5, 16, 100, 771])
def test_layer_norm_matches_torch_on_vector_tails_and_offset_rows(d):
    """The vector LayerNorm (32 partial sums, then a scalar tail): widths below, at and past the vector
    blocks, rows far from zero mean (a one-pass variance would cancel there), and the same bits on AVX2
    and AVX-512 (the bf16 mode rounds its output, where an ulp shows)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(d)
    x = (rng.standard_normal((9, d)) * 2 + 300).astype(np.float32)
    w, b = rng.standard_normal(d).astype(np.float32), rng.standard_normal(d).astype(np.float32)
    ref = torch.nn.functional.layer_norm(
        torch.from_numpy(x).double(), (d,), torch.from_numpy(w).double(), torch.from_numpy(b).double()
    ).numpy()
    for impl in IMPLS + (["avx512"] if kernels.cpu_has_avx512_vnni() else []):
        assert np.abs(kernels.layer_norm(x, w, b, 1e-5, impl) - ref).max() < 2e-4, impl
    if kernels.cpu_has_avx2() and kernels.cpu_has_avx512_vnni():  # 32 partials whatever the vector width
        assert np.array_equal(kernels.layer_norm(x, w, b, 1e-5, "avx2"), kernels.layer_norm(x, w, b, 1e-5, "avx512"))


@pytest.mark.parametrize("t, causal", [(197, False), (197, True), (150, True)])
def test_attention_over_many_keys_matches_torch(t, causal):
    """Past a head whose K^T and V fit in L1 (ops.cpp), queries go in tiles of 16 and keys in chunks of 64,
    the sums of P V carried from chunk to chunk: the same attention as torch's, causal or not."""
    torch = pytest.importorskip("torch")
    qkv = np.random.default_rng(3).standard_normal((2, t, 3 * 128)).astype(np.float32)
    q, k, v = (
        torch.from_numpy(qkv[..., i * 128 : (i + 1) * 128]).reshape(2, t, 2, 64).transpose(1, 2) for i in range(3)
    )
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2).reshape(2, t, 128)
    for impl in IMPLS + (["avx512"] if kernels.cpu_has_avx512_vnni() else []):
        assert np.abs(kernels.attention(qkv, 2, causal, impl) - ref.numpy()).max() < 1e-5, impl


def test_float_ops_give_the_same_rows_run_serially_or_in_parallel():
    """Small inputs run on the calling thread (parallel.h), large ones across threads: same bits per row."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((400, 256)) * 3).astype(np.float32)  # 102,400 floats: above the threshold
    w, b = rng.standard_normal(256).astype(np.float32), rng.standard_normal(256).astype(np.float32)
    qkv = rng.standard_normal((24, 50, 3 * 128)).astype(np.float32)  # ~15M multiply-adds: parallel
    for impl in IMPLS:
        whole = kernels.layer_norm(x, w, b, 1e-5, impl)
        assert np.array_equal(
            whole, np.concatenate([kernels.layer_norm(x[i : i + 8], w, b, 1e-5, impl) for i in range(0, 400, 8)])
        )
        for kind in ("gelu", "quick_gelu"):
            big, pieces = x.copy(), x.copy()
            kernels.activation_(big, kind, impl)
            for row in pieces:
                kernels.activation_(row, kind, impl)
            assert np.array_equal(big, pieces), kind
        for causal in (False, True):
            batched = kernels.attention(qkv, 4, causal, impl)
            alone = np.concatenate([kernels.attention(qkv[i : i + 1], 4, causal, impl) for i in range(24)])
            assert np.array_equal(batched, alone)


@pytest.mark.parametrize(
    "shape, heads",
    [((1, 2, 0), 2**62), ((2, 3, 12), 2**62 + 1), ((1, 2, 12), 3), ((1, 2, 12), 0), ((1, 2, 12), -4), ((1, 2, 10), 1)],
)
def test_attention_refuses_heads_that_wrap_or_do_not_divide(shape, heads):
    with pytest.raises(ValueError, match="heads|width"):
        kernels.attention(np.ones(shape, np.float32), heads, False)


def test_size_products_that_overflow_are_refused():
    from ternaryclip.kernels import _ext

    with pytest.raises(ValueError, match="overflows"):
        _ext.base3_to_2bit(np.zeros(1, np.uint8), 2**62, 8)
    with pytest.raises(ValueError, match="k must be"):
        _ext.base3_to_2bit(np.zeros(1, np.uint8), 1, 2**63 - 1)
    with pytest.raises(ValueError, match="k must be"):  # beyond the int32 accumulator bound
        _ext.int_dot(np.zeros((1, 2), np.int8), np.zeros((1, 8), np.uint8), 2**24, 2)


def test_thread_counts_are_capped_with_a_clear_error():
    before = kernels.get_num_threads()
    for bad in (0, -1, kernels.max_threads() + 1, 100000):
        with pytest.raises(ValueError, match="threads must be between 1 and"):
            kernels.set_num_threads(bad)
    assert kernels.get_num_threads() == before
    assert kernels.max_threads() <= 1024


def test_every_impl_name_is_listed_and_unknown_ones_are_refused():
    assert kernels.IMPLS[:3] == ("auto", "ref", "avx2") or not kernels.cpu_has_avx2()
    with pytest.raises(ValueError, match="impl must be"):
        kernels.layer_norm(np.ones((1, 4), np.float32), np.ones(4, np.float32), np.ones(4, np.float32), 1e-5, "sse9")


RAGGED = [(m, n, k, g) for m in range(1, 18) for n, k, g in [(9, 200, None), (17, 300, 64), (3, 130, 12)]] + [
    (5, 11, 1100, None),
    (16, 8, 128, None),
    (24, 13, 257, None),
    (40, 9, 640, 32),
    (23, 24, 300, None),  # 16 x 6 tiles: whole second halves, 5 tokens left for the small-M kernel
    (29, 8, 200, 12),  # a 16-row tile with no second half
    (50, 40, 1100, None),
    (1, 3, 100, None),  # AMX: under 16 tokens (short tiles), a panel of 32 rows holding 3
    (16, 47, 640, 64),  # one whole token tile, groups of one 64-column chunk
    (7, 40, 640, 64),  # VNNI under 16 tokens straight from the packed panel, groups of one chunk
    (9, 40, 640, 32),  # ... and groups inside a chunk: the 16-token tile instead
    (33, 70, 1000, 128),  # two token tiles and one more, a third panel of 6 rows, groups of 2 chunks
    (70, 65, 3000, None),  # K past one block of the per-chunk expansion ring
]


@pytest.mark.parametrize("shape", RAGGED)
def test_prepared_weights_give_the_reference_bit_for_bit(shape):
    m, n, k, group = shape
    codes, packed, scales, bias, x, gs = make_case(m, n, k, group, m * 100 + n)
    expected = kernels.gemm(x, packed, k, scales, gs, bias, "fast", "ref")
    impls = [i for i in impls_for(gs, k) if i not in ("ref",)]
    prepared_any = False
    for impl in impls:
        weights = kernels.prepare(packed, k, scales, gs, impl)
        if weights is None:  # this path reads the file layout directly
            continue
        prepared_any = True
        assert weights.data.nbytes <= (n + 31) // 32 * 32 * packed.shape[1]  # still 2 bits a weight
        assert np.array_equal(kernels.gemm_prepared(x, weights, scales, gs, bias), expected), impl
    if not prepared_any and kernels.cpu_has_avx2() and (gs == k or gs % 4 == 0):
        pytest.fail("the AVX2 path prepares its weights")
    if kernels.cpu_has_amx_int8() and (gs == k or gs % 64 == 0):
        assert kernels.prepare(packed, k, scales, gs).impl == "amx"  # auto takes the widest path


@pytest.mark.parametrize("group", [None, 12])
def test_every_partial_token_tile_after_a_whole_one_is_bitwise_the_reference(group):
    # M = 16 + T: a whole 16-token tile, then T tokens (AVX-512: one kernel a T, odd 4-column steps at K = 300)
    for m in range(17, 32):
        codes, packed, scales, bias, x, gs = make_case(m, 21, 300, group, m)
        expected = kernels.gemm(x, packed, 300, scales, gs, bias, "fast", "ref")
        for impl in [i for i in impls_for(gs, 300) if i != "ref"]:
            weights = kernels.prepare(packed, 300, scales, gs, impl)
            got = kernels.gemm(x, packed, 300, scales, gs, bias, "fast", impl)
            assert np.array_equal(got, expected), (impl, m)
            if weights is not None:
                assert np.array_equal(kernels.gemm_prepared(x, weights, scales, gs, bias), expected), (impl, m)


def test_prepared_weights_refuse_another_path_or_size():
    if not kernels.cpu_has_avx2():
        pytest.skip("no AVX2 on this CPU")
    codes, packed, scales, bias, x, gs = make_case(2, 9, 200, None, 0)
    weights = kernels.prepare(packed, 200, scales, gs, "avx2")
    with pytest.raises(ValueError, match="prepared for impl='ref'"):
        kernels.gemm_prepared(x, kernels.PreparedWeights(weights.data, "ref", 9, 200), scales, gs)
    with pytest.raises(ValueError, match="bytes"):
        kernels.gemm_prepared(x, kernels.PreparedWeights(weights.data[:-1], "avx2", 9, 200), scales, gs)


def test_int8_dot_peak_is_measured_for_the_paths_this_cpu_has():
    from ternaryclip.kernels import _ext

    assert (_ext.int8_dot_peak_gops("avx2", 0.01) > 0) == kernels.cpu_has_avx2()
    assert (_ext.int8_dot_peak_gops("avx512", 0.01) > 0) == kernels.cpu_has_avx512_vnni()
    assert (_ext.int8_dot_peak_gops("avxvnni", 0.01) > 0) == kernels.cpu_has_avx_vnni()
    assert (_ext.int8_dot_peak_gops("amx", 0.01) > 0) == kernels.cpu_has_amx_int8()
    assert _ext.int8_dot_peak_gops("sse9", 0.01) == 0
    with pytest.raises(ValueError, match="seconds"):
        _ext.int8_dot_peak_gops("avx2", 100.0)


@pytest.mark.parametrize("shape", RAGGED)
def test_exact_mode_simd_equals_the_reference_bit_for_bit(shape):
    """t in {-1, 0, 1} makes every product exact, so an FMA sum in column order is the reference's sum."""
    m, n, k, group = shape
    codes, packed, scales, bias, x, gs = make_case(m, n, k, group, m * 7 + n)
    expected = kernels.gemm(x, packed, k, scales, gs, bias, "exact", "ref")
    for impl in impls_for(gs, k):
        assert np.array_equal(kernels.gemm(x, packed, k, scales, gs, bias, "exact", impl), expected), impl


def test_threads_of_several_callers_give_the_one_thread_numbers():
    """Each calling thread has its own team (the server's streams): 1-4 threads, 3 callers at once."""
    import threading

    codes, packed, scales, bias, x, gs = make_case(70, 200, 768, None, 5)
    qkv = np.random.default_rng(5).standard_normal((3, 50, 3 * 128)).astype(np.float32)
    before = kernels.get_num_threads()
    kernels.set_num_threads(1)
    try:
        expected = kernels.gemm(x, packed, 768, scales, gs, bias), kernels.attention(qkv, 4, True, fast=True)
    finally:
        kernels.set_num_threads(before)
    results, errors = {}, []

    def caller(threads: int) -> None:
        try:
            kernels.set_num_threads(threads)
            assert kernels.get_num_threads() == threads  # per calling thread
            for _ in range(20):
                got = kernels.gemm(x, packed, 768, scales, gs, bias), kernels.attention(qkv, 4, True, fast=True)
            results[threads] = got
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    callers = [threading.Thread(target=caller, args=(t,)) for t in (2, 3, 4)]
    for c in callers:
        c.start()
    for c in callers:
        c.join(timeout=120)
    assert not errors and sorted(results) == [2, 3, 4]
    for got in results.values():
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert kernels.get_num_threads() == before  # the other threads' counts are theirs


@pytest.mark.parametrize("variable, threads", [(None, None), ("3", 3), ("0", None), ("lots", None)])
def test_the_default_thread_count_is_omp_num_threads_or_the_cores(variable, threads):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if variable is not None:
        env["OMP_NUM_THREADS"] = variable
    code = "import os, ternaryclip.kernels as k; print(k.get_num_threads(), len(os.sched_getaffinity(0)))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got, cores = map(int, done.stdout.split())
    assert got == (threads or min(cores, kernels.max_threads()))


def test_the_impl_variable_forces_a_path_on_auto_callers(monkeypatch):
    codes, packed, scales, bias, x, gs = make_case(5, 40, 256, None, 3)
    expected = kernels.gemm(x, packed, 256, scales, gs, bias, "fast", "ref")
    monkeypatch.setenv(kernels.IMPL_VARIABLE, "ref")
    assert kernels.fast_gemm_impl() == "ref" and kernels.prepare(packed, 256, scales, gs) is None
    assert np.array_equal(kernels.gemm(x, packed, 256, scales, gs, bias), expected)
    if kernels.cpu_has_avx2():
        monkeypatch.setenv(kernels.IMPL_VARIABLE, "avx2")
        weights = kernels.prepare(packed, 256, scales, gs)
        assert weights.impl == "avx2" and kernels.fast_gemm_impl() == "avx2"
        assert np.array_equal(kernels.gemm_prepared(x, weights, scales, gs, bias), expected)
    assert kernels.fast_gemm_impl("ref") == "ref"  # a named impl is not overridden
    monkeypatch.setenv(kernels.IMPL_VARIABLE, "sse9")
    with pytest.raises(ValueError, match="TERNARYCLIP_IMPL must be one of"):
        kernels.gemm(x, packed, 256, scales, gs, bias)


def test_auto_runs_the_widest_fast_gemm_this_cpu_has():
    widest = "amx" if kernels.cpu_has_amx_int8() else "avx512" if kernels.cpu_has_avx512_vnni() else None
    widest = widest or ("avxvnni" if kernels.cpu_has_avx_vnni() else "avx2" if kernels.cpu_has_avx2() else "ref")
    assert kernels.fast_gemm_impl() == widest


def test_a_forked_child_runs_the_kernels_on_its_own_threads():
    """A child after fork() has none of its parent's workers: it must not wait for them."""
    import subprocess
    import sys

    code = (
        "import os, numpy as np, ternaryclip.kernels as k\n"
        "k.set_num_threads(2)\n"
        "x = np.ones((256, 256), np.float32)\n"  # above the size that runs in parallel
        "a = k.layer_norm(x, np.ones(256, np.float32), np.zeros(256, np.float32), 1e-5)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    b = k.layer_norm(x, np.ones(256, np.float32), np.zeros(256, np.float32), 1e-5)\n"
        "    os._exit(0 if np.array_equal(a, b) else 3)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr


def test_large_outputs_streamed_past_the_caches_are_the_same_numbers():
    """AMX writes outputs of 8 MB and more with non-temporal stores where the rows are 64-byte aligned."""
    from ternaryclip.runtime.model import aligned_empty

    codes, packed, scales, bias, x, gs = make_case(700, 3072, 256, None, 9)  # 8.6 MB of output
    out = aligned_empty(700 * 3072).reshape(700, 3072)
    assert out.ctypes.data % 64 == 0
    expected = kernels.gemm(x[:40], packed, 256, scales, gs, bias, "fast", "ref")  # the reference is slow
    for impl in [i for i in impls_for(gs, 256) if i not in ("ref", "auto")] or ["ref"]:
        weights = kernels.prepare(packed, 256, scales, gs, impl)
        if weights is None:
            kernels.gemm(x, packed, 256, scales, gs, bias, "fast", impl, out=out)
        else:
            kernels.gemm_prepared(x, weights, scales, gs, bias, out=out)
        assert np.array_equal(out[:40], expected), impl
        rows = kernels.gemm(x, packed, 256, scales, gs, bias, "fast", impl)  # a fresh array, maybe unaligned
        assert np.array_equal(out, rows), impl


@pytest.mark.parametrize("shape", [(33, 70, 1000, None), (5, 40, 640, 64), (40, 9, 640, 32), (700, 1024, 256, None)])
def test_adding_into_out_is_a_separate_add_bit_for_bit(shape):
    """``add=True``: out += the GEMM, in the AMX epilogue or through scratch; the sums a separate add makes."""
    m, n, k, group = shape
    codes, packed, scales, bias, x, gs = make_case(m, n, k, group, m + n)
    start = np.random.default_rng(m).standard_normal((m, n)).astype(np.float32)
    for impl in [i for i in impls_for(gs, k) if i not in ("ref", "auto")]:
        weights = kernels.prepare(packed, k, scales, gs, impl)
        if weights is None:
            continue
        expected = start + kernels.gemm_prepared(x, weights, scales, gs, bias)
        out = start.copy()
        kernels.gemm_prepared(x, weights, scales, gs, bias, out=out, add=True)
        assert np.array_equal(out, expected), impl
    weights = kernels.prepare(packed, k, scales, gs)
    if weights is not None:
        with pytest.raises(ValueError, match="add needs out"):
            kernels.gemm_prepared(x, weights, scales, gs, add=True)


@pytest.mark.parametrize("shape", [(33, 70, 1000, None), (5, 40, 640, 64), (17, 47, 200, None), (700, 3072, 256, None)])
@pytest.mark.parametrize("activation", ["gelu", "quick_gelu"])
def test_activation_in_the_epilogue_is_the_separate_pass_bit_for_bit(shape, activation):
    """``activation=``: the GEMM then ``activation_`` (the float ops of the impl the weights were prepared
    for); on AMX in the epilogue, streamed or not (700 x 3072 is 8.6 MB, aligned: non-temporal stores)."""
    from ternaryclip.runtime.model import aligned_empty

    m, n, k, group = shape
    codes, packed, scales, bias, x, gs = make_case(m, n, k, group, m * n + k)
    x *= np.float32(4.0)  # pre-activations well into both tails of the GELU
    start = np.random.default_rng(m).standard_normal((m, n)).astype(np.float32)
    for impl in [i for i in impls_for(gs, k) if i not in ("ref", "auto")]:
        weights = kernels.prepare(packed, k, scales, gs, impl)
        if weights is None:
            continue
        for b in (bias, None):
            expected = kernels.gemm_prepared(x, weights, scales, gs, b)
            kernels.activation_(expected, activation, impl=weights.impl)
            out = aligned_empty(m * n).reshape(m, n)
            kernels.gemm_prepared_into(x, weights, scales, gs, b, out, activation=activation)
            assert np.array_equal(out, expected), (impl, b is None)
            assert not np.array_equal(expected, kernels.gemm_prepared(x, weights, scales, gs, b))
            added = start.copy()
            kernels.gemm_prepared(x, weights, scales, gs, b, out=added, add=True, activation=activation)
            assert np.array_equal(added, start + expected), (impl, "add")
    weights = kernels.prepare(packed, k, scales, gs)
    if weights is not None:
        with pytest.raises(ValueError, match="activation"):
            kernels.gemm_prepared(x, weights, scales, gs, activation="relu")


def test_the_avx512_activations_match_the_reference_within_float_rounding():
    """The explicit-vector GELU / QuickGELU (the ones the AMX epilogue shares) against the generic build."""
    if not kernels.cpu_has_avx512_vnni():
        pytest.skip("no AVX-512 on this CPU")
    grid = np.concatenate([np.linspace(-12, 12, 4001), [-100.0, -88.0, 0.0, 88.0, 100.0]]).astype(np.float32)
    for kind in ("gelu", "quick_gelu"):
        want, got = grid.copy(), grid.copy()
        kernels.activation_(want, kind, impl="ref")
        kernels.activation_(got, kind, impl="avx512")
        # atol: 1 + erf(x) cancels in the negative tail, in every build (~1e-6 absolute there)
        assert np.allclose(got, want, rtol=2e-6, atol=4e-6), kind


@pytest.mark.parametrize("shape", [(1, 70, 1000, None), (33, 47, 640, 64), (50, 9, 200, None)])
def test_layer_norm_fused_with_quantization_is_the_separate_pass_bit_for_bit(shape):
    """``norm=``: LayerNorm and int8 quantization in one pass (16 rows at a time), the same bits as
    ``layer_norm`` (of the prepared impl) followed by the GEMM."""
    m, n, k, group = shape
    codes, packed, scales, bias, x, gs = make_case(m, n, k, group, m + 3 * n)
    rng = np.random.default_rng(k)
    x = (x * np.float32(3.0) + np.float32(0.5)).astype(np.float32)
    weight, shift = rng.standard_normal(k).astype(np.float32), rng.standard_normal(k).astype(np.float32)
    for impl in [i for i in impls_for(gs, k) if i not in ("ref", "auto")]:
        weights = kernels.prepare(packed, k, scales, gs, impl)
        if weights is None:
            continue
        normalized = kernels.layer_norm(x, weight, shift, 1e-5, impl=weights.impl)
        expected = kernels.gemm_prepared(normalized, weights, scales, gs, bias)
        fused = kernels.gemm_prepared(x, weights, scales, gs, bias, norm=(weight, shift, 1e-5))
        assert np.array_equal(fused, expected), impl
        assert not np.array_equal(fused, kernels.gemm_prepared(x, weights, scales, gs, bias))
    weights = kernels.prepare(packed, k, scales, gs)
    if weights is not None:
        with pytest.raises(ValueError, match="K elements"):
            kernels.gemm_prepared(x, weights, scales, gs, norm=(weight[:-1], shift[:-1], 1e-5))


@pytest.mark.parametrize("group", [None, 64])
def test_every_small_m_is_the_reference_bit_for_bit_after_larger_calls(group):
    """M = 1..17 (the small-M kernels with their partial sums per token, then tiles and a tail), each call after
    a larger one on the same thread: the padding rows it leaves in the activation scratch are cleared."""
    k, n = 640, 40
    codes, packed, scales, bias, x, gs = make_case(60, n, k, group, 11)
    for impl in [i for i in impls_for(gs, k) if i not in ("ref", "auto")]:
        weights = kernels.prepare(packed, k, scales, gs, impl)
        for m in range(17, 0, -1):
            kernels.gemm_prepared(x[: m + 40], weights, scales, gs, bias)  # fills rows past m
            expected = kernels.gemm(x[:m], packed, k, scales, gs, bias, "fast", "ref")
            assert np.array_equal(kernels.gemm_prepared(x[:m], weights, scales, gs, bias), expected), (impl, m)


@pytest.mark.parametrize("k", [2**19, 2**19 + 100])
def test_one_token_at_the_widest_groups_of_the_scaled_small_m_kernel(k):
    """AVX-512's small-M kernel keeps codes shifted in place (u << 6 up to 128) for groups of at most 2^19 columns:
    every code +1 and every activation 127 is its largest partial sum, just below 2^31; past 2^19 the unshifted
    kernel runs."""
    codes = np.ones((16, k), np.int8)
    packed, scales = pack_2bit(codes), np.ones((16, 1), np.float32)
    x = np.ones((2, k), np.float32)
    expected = kernels.gemm(x, packed, k, scales, k, None, "fast", "ref")
    assert expected[0, 0] == k  # q = 127 everywhere, xscale 1 / 127
    for impl in [i for i in impls_for(k, k) if i not in ("ref", "auto")]:
        weights = kernels.prepare(packed, k, scales, k, impl)
        for m in (1, 2):
            assert np.array_equal(kernels.gemm_prepared(x[:m], weights, scales, k), expected[:m]), (impl, m)
