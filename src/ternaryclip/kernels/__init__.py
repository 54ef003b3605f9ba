"""Ternary GEMM kernels (C++ extension ``_ext``): checked wrappers that take numpy arrays.

A mistake raises a ValueError naming the argument.  The extension checks every size before it touches a
pointer (the linear layer's in ``core/linear.cpp``); these wrappers convert arrays (dtype, contiguity) and
check what only Python sees, and :func:`gemm_prepared`, the runtime's hot path, leaves all checks to the
extension.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import _ext  # the compiled kernels; their threads are their own (core/pool.h), not OpenMP's

IMPLS = ("auto", *_ext.impl_names())  # "ref", then the instruction sets this build has
# Builds for tests that "auto" never picks: "avxvnni_emulated" (the AVX-VNNI kernels with vpdpbusd emulated in AVX2)
TEST_IMPLS = tuple(_ext.test_impl_names())
IMPL_VARIABLE = "TERNARYCLIP_IMPL"
ACTIVATIONS = ("", "gelu", "quick_gelu")  # gemm_prepared's: none, or activation_'s kinds


def _impl(impl: str) -> str:
    """``impl`` checked; ``"auto"`` becomes ``$TERNARYCLIP_IMPL`` where set.

    The variable forces one instruction set on everything that asks for ``"auto"`` (the runtime, the
    server, a benchmark engine in its own process): how an AVX2-only CPU is measured on a newer one.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = os.environ.get(IMPL_VARIABLE, "auto") or "auto"
        if impl not in IMPLS:
            raise ValueError(f"{IMPL_VARIABLE} must be one of {IMPLS}, got {impl!r}")
    return impl


def fast_gemm_impl(impl: str = "auto") -> str:
    """The instruction set whose fast GEMM runs for ``impl`` on this CPU (``"amx"``, ``"avx512"``, ...)."""
    return _ext.fast_gemm_impl(_impl(impl))


def fast_attention_impl(impl: str = "auto", mode: str = "fast") -> str:
    """What mode ``"fast"``'s (or ``"bf16"``'s) attention multiplies with for ``impl`` on this CPU:
    ``"avx512_int8"`` (``vpdpbusd``) or ``"avx2_int8"`` (``vpmaddubsw``), mode fast only, for head widths a
    multiple of 16; ``"amx_bf16"`` (AMX tiles) or ``"avx512_bf16"`` (``vdpbf16ps``), for head widths a multiple
    of 32; else ``"float32"`` (other widths always run float32)."""
    if mode not in ("fast", "bf16"):
        raise ValueError(f"mode must be 'fast' or 'bf16', got {mode!r}")
    return _ext.fast_attention_impl(_impl(impl), mode == "fast")


def _as(name: str, a, dtype, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(f"{name} must be {np.dtype(dtype).name}, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _out(out: np.ndarray | None, shape: tuple) -> np.ndarray | None:
    if out is not None and not (
        isinstance(out, np.ndarray)
        and out.dtype == np.float32
        and out.shape == shape
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError(f"out must be a writeable C-contiguous float32 array of shape {shape}")
    return out


def gemm(
    x: np.ndarray,
    packed: np.ndarray,
    k: int,
    scales: np.ndarray,
    group_size: int,
    bias: np.ndarray | None = None,
    mode: str = "fast",
    impl: str = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``y[M, N] = x[M, K] @ (scale * T[N, K]).T + bias`` with 2bit-packed ternary weights.

    ``mode='fast'``: activations quantized per row to int8 (W1.58-A8); ``'exact'``: float activations;
    ``'bf16'``: activations rounded to bfloat16 (:func:`round_bf16`), float32 sums: the exact GEMM of the
    rounded ``x`` up to the order of the sums, on AMX-BF16 tiles where the CPU has them.
    ``out``: an existing ``[M, N]`` float32 array to write into (returned).
    """
    impl = _impl(impl)  # the extension checks the mode, the sizes and x's columns
    x = _as("x", x, np.float32, 2)
    packed = _as("packed", packed, np.uint8, 2)
    scales = _as("scales", scales, np.float32, 2)
    if bias is not None:
        bias = _as("bias", bias, np.float32, 1)
    out = _out(out, (x.shape[0], packed.shape[0]))
    y = _ext.gemm(x, packed, int(k), scales, int(group_size), bias, mode, impl, out)
    return out if out is not None else y


PREPARED_MODES = ("fast", "bf16", "exact")  # the modes whose GEMMs may read weights prepared at load


@dataclass(frozen=True)
class PreparedWeights:
    """Ternary weights in the load-time layout of one instruction set (``impl``), for one ``mode``'s GEMM.

    Same 2 bits a weight as the file's layout, rearranged once so that no call unpacks or interleaves
    them; only the path that made them reads them.
    """

    data: np.ndarray
    impl: str
    n: int
    k: int
    mode: str = "fast"


def prepare(
    packed: np.ndarray, k: int, scales: np.ndarray, group_size: int, impl: str = "auto", mode: str = "fast"
) -> PreparedWeights | None:
    """The weights in the load-time layout of the path ``impl`` picks for ``mode``'s GEMM, or None where it
    reads the file layout.  Modes ``'bf16'`` and ``'exact'`` have one on AMX-BF16 only (for groups on
    64-column boundaries); elsewhere both run the exact GEMM on the file layout (``'bf16'`` on the rounded
    activations), bit for bit the reference.  Exact mode on AMX-BF16 splits each activation exactly into
    three bf16: the reference's numbers up to the order of the float32 sums."""
    impl = _impl(impl)  # the extension checks the mode and the sizes
    packed = _as("packed", packed, np.uint8, 2)
    scales = _as("scales", scales, np.float32, 2)
    made = _ext.prepare_weights(packed, int(k), scales, int(group_size), impl, mode)
    return None if made is None else PreparedWeights(made[0], made[1], packed.shape[0], int(k), mode)


def _run_prepared(x, weights: PreparedWeights, scales, group_size, bias, out, add, activation, norm):
    """The extension's call as it is: it takes no array it would have to convert (TypeError) and checks
    every size, the add, the activation and the norm itself (ValueError)."""
    return _ext.gemm_prepared(
        x, weights.data, weights.n, weights.k, scales, group_size, bias, weights.impl, out, add, activation, norm,
        weights.mode,
    )  # fmt: skip


def _converted(x, scales, bias, out, norm):
    """The arrays of a :func:`gemm_prepared` call the extension refused, converted where a copy serves (a
    non-contiguous ``x``), else a ValueError naming the argument."""
    if norm is not None:
        weight, bias_, eps = norm
        norm = (_as("norm weight", weight, np.float32, 1), _as("norm bias", bias_, np.float32, 1), float(eps))
    x = _as("x", x, np.float32, 2)
    scales = _as("scales", scales, np.float32, 2)
    if bias is not None:
        bias = _as("bias", bias, np.float32, 1)
    if out is not None:
        _out(out, out.shape if isinstance(out, np.ndarray) else ())
    return x, scales, bias, norm


def gemm_prepared(
    x: np.ndarray,
    weights: PreparedWeights,
    scales: np.ndarray,
    group_size: int,
    bias: np.ndarray | None = None,
    out: np.ndarray | None = None,
    add: bool = False,
    activation: str = "",
    norm: tuple | None = None,
) -> np.ndarray:
    """``gemm`` in the mode the weights were prepared for, over :func:`prepare`'s output: the same numbers as
    ``gemm(..., mode=weights.mode, impl=weights.impl)``, bit for bit.

    ``norm`` ``(weight, bias, eps)``: of ``layer_norm(x, ...)`` instead, the normalization fused with the
    activations' quantization (the normalized rows are never written out), the same bits.
    ``activation`` (``"gelu"`` or ``"quick_gelu"``): applied to the result, as :func:`activation_` would.
    ``add``: ``out += ...`` instead (``out`` required), the same sums as a separate add.  On AMX and
    AVX-512 VNNI both happen in the GEMM's epilogue (:func:`fuses_epilogue`), which saves passes over the output.

    The extension checks the arguments (C++, ``core/linear.cpp``); arrays it cannot take as they are (not
    float32, not C-contiguous) are converted here, or refused with a ValueError naming them.
    """
    group_size = int(group_size)
    try:
        y = _run_prepared(x, weights, scales, group_size, bias, out, add, activation, norm)
    except TypeError:  # an array the extension takes only as float32, C-contiguous, of its rank
        x, scales, bias, norm = _converted(x, scales, bias, out, norm)
        y = _run_prepared(x, weights, scales, group_size, bias, out, add, activation, norm)
    return out if out is not None else y


def gemm_prepared_into(
    x: np.ndarray,
    weights: PreparedWeights,
    scales: np.ndarray,
    group_size: int,
    bias: np.ndarray | None,
    out: np.ndarray,
    add: bool = False,
    activation: str = "",
    norm: tuple | None = None,
) -> np.ndarray:
    """:func:`gemm_prepared` into ``out`` (returned), kept for its callers: now that the extension checks the
    arguments, :func:`gemm_prepared` costs no more."""
    return gemm_prepared(x, weights, scales, group_size, bias, out, add, activation, norm)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """``x`` (float32, any shape) rounded to bfloat16 as mode ``'bf16'`` rounds activations, as float32.

    Round to nearest, ties to even, as ``vcvtneps2bf16`` does: subnormals become zeros of their sign, NaNs
    stay NaN (quiet), finite values past bf16's largest become infinities.

    >>> round_bf16(np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8], np.float32)).tolist()
    [1.0, 1.0, 1.015625]
    """
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32):
        raise ValueError("round_bf16 needs a float32 numpy array")
    return _ext.round_bf16(np.ascontiguousarray(x).reshape(-1)).reshape(x.shape)


def quantize_rows(x: np.ndarray, group_size: int | None = None, impl: str = "auto"):
    """Per-row absmax int8 quantization: ``(q [M, Kp] zero padded, xscale [M], qsum [M, groups])``."""
    x = _as("x", x, np.float32, 2)
    return _ext.quantize_rows(x, int(group_size or x.shape[1]), _impl(impl))


def int_dot(q: np.ndarray, packed: np.ndarray, k: int, group_size: int | None = None, impl: str = "auto") -> np.ndarray:
    """Integer dots ``out[M, N, G] = sum over group g of t[n, k] * q[m, k]`` (the exactness test hook)."""
    return _ext.int_dot(
        _as("q", q, np.int8, 2), _as("packed", packed, np.uint8, 2), int(k), int(group_size or k), _impl(impl)
    )


cpu_has_avx2 = _ext.cpu_has_avx2
cpu_has_avx_vnni = _ext.cpu_has_avx_vnni  # VEX vpdpbusd on ymm (impl "avxvnni"): Alder Lake and later, no AVX-512
cpu_has_avx512_vnni = _ext.cpu_has_avx512_vnni
cpu_has_amx_int8 = _ext.cpu_has_amx_int8
cpu_has_avx512_bf16 = _ext.cpu_has_avx512_bf16
cpu_has_amx_bf16 = _ext.cpu_has_amx_bf16
# (impl, mode="fast"); else gemm_prepared's norm and activation are separate passes
fuses_epilogue = _ext.fuses_epilogue
adds_in_epilogue = _ext.adds_in_epilogue  # (impl, mode="fast"); else gemm_prepared(add=True) adds through scratch
set_num_threads = _ext.set_num_threads  # ValueError outside [1, max_threads()]
get_num_threads = _ext.get_num_threads
max_threads = _ext.max_threads


def layer_norm(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, impl: str = "auto", out: np.ndarray | None = None
) -> np.ndarray:
    """LayerNorm over the last axis of ``x [M, D]`` (float32), into ``out`` when given."""
    x = _as("x", x, np.float32, 2)
    out = _out(out, x.shape)
    y = _ext.layer_norm(x, weight, bias, float(eps), _impl(impl), out)
    return out if out is not None else y


def attention_int8(qkv: np.ndarray, heads: int, causal: bool, path: str = "ref", levels: int = 255) -> np.ndarray:
    """The int8 attention of one path whatever the dispatch picks (tests, benchmarks): ``"ref"`` (the scalar
    definition, with P's ``levels``: 255 or 127), ``"avx512"`` (255 levels) or ``"avx2"`` (127 levels)."""
    qkv = _as("qkv", qkv, np.float32, 3)
    return _ext.attention_int8(qkv, int(heads), bool(causal), path, int(levels))


def activation_(x: np.ndarray, kind: str, impl: str = "auto") -> None:
    """In place: ``gelu`` (erf form, as torch's nn.GELU) or ``quick_gelu`` (x sigmoid(1.702 x))."""
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous):
        raise ValueError("activation_ needs a C-contiguous float32 numpy array")
    _ext.activation_(x, kind, _impl(impl))


def attention(
    qkv: np.ndarray,
    heads: int,
    causal: bool,
    impl: str = "auto",
    out: np.ndarray | None = None,
    fast: bool = False,
    int8: bool = True,
) -> np.ndarray:
    """Softmax attention: ``qkv [B, T, 3W]`` laid out q | k | v, heads split inside each -> ``[B, T, W]``.

    ``fast``: a lower precision's products where the path has them, float32 everywhere else.  With ``int8``
    (mode fast), int8 products with per-row scales and a float32 softmax (core/attention_int8.h) for head widths
    a multiple of 16: ``"avx512"`` with ``vpdpbusd``, ``"avx2"`` with ``vpmaddubsw``.  Without it (mode bf16),
    and on ``"amx"``, bf16 products (float32 sums and softmax) for head widths a multiple of 32: ``"amx"`` on
    AMX-BF16 tiles, ``"avx512"`` (and ``"amx"`` without the tiles) with AVX512-BF16 ``vdpbf16ps``.
    """
    qkv = _as("qkv", qkv, np.float32, 3)
    out = _out(out, (qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3))
    y = _ext.attention(qkv, int(heads), bool(causal), _impl(impl), out, bool(fast), bool(int8))
    return out if out is not None else y
