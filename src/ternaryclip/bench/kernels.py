"""``ternaryclip bench --kernels``: ternary GEMM throughput on CLIP's linear-layer shapes.

Per shape and thread count: our fast GEMM as the runtime runs it (weights prepared at load; the
path ``auto`` picks, each instruction-set path this CPU runs, and the file layout unpacked per call as before), torch fp32 ``F.linear`` and torch dynamic int8 on the same shape, in one process,
interleaved.  Each timed call follows one untimed call of the same engine, so that the other
runtime's idle threads have gone to sleep.  Reported as GOPS per core (2 ops a multiply-add),
activation quantization included for the int8 engines.  First the peak of the int8 dot instruction
(a register-only loop on one core), and each row's share of it.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import numpy as np

from .machine import machine_info

# (K, N) of ViT-B/16's and the text tower's linears: qkv, attention out, MLP in, MLP out
CLIP_SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768), (512, 1536), (512, 512), (512, 2048), (2048, 512)]
TOKENS = (1, 77, 197)


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        fn()  # untimed: lets the previous engine's spinning threads settle
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ternary(kernels, x, packed, k, scales, impl: str):
    """The fast GEMM as the runtime runs it: over weights prepared at load where the path has a layout."""
    weights = kernels.prepare(packed, k, scales, k, impl) if impl == "auto" or kernels.cpu_has_avx2() else None
    if weights is None:
        return lambda: kernels.gemm(x, packed, k, scales, k, impl=impl)
    return lambda: kernels.gemm_prepared(x, weights, scales, k)


def simd_impls(kernels) -> list[str]:
    """The instruction-set paths of this build that this CPU runs (x86: avx2, avxvnni, avx512, amx; aarch64:
    neon, dotprod, i8mm; not the test builds): a forced ``impl=`` the CPU lacks raises ValueError instead of running."""
    from ..pack.bits import pack_2bit

    packed, scales = pack_2bit(np.zeros((1, 4), np.int8)), np.ones((1, 1), np.float32)
    usable = []
    for impl in kernels.IMPLS:
        if impl in ("auto", "ref") or impl in kernels.TEST_IMPLS:
            continue
        try:
            kernels.gemm(np.zeros((1, 4), np.float32), packed, 4, scales, 4, impl=impl)
        except ValueError:
            continue
        usable.append(impl)
    return usable


def _shape_row(engines: dict, repeats: int, m: int, k: int, n: int, threads: int, peak: float) -> dict:
    """One report row: every engine's GOPS per core on ``m x k x n`` (interleaved repeats, medians), the
    ternary GEMM's ratios to torch fp32 and int8, and its share of the int8 dot ``peak`` (0: unknown)."""
    seconds = {name: [] for name in engines}
    for _ in range(repeats):  # interleaved
        for name, fn in engines.items():
            seconds[name].append(_time(fn, 1))
    ops = 2 * m * k * n
    row = {"m": m, "k": k, "n": n, "threads": threads}
    for name, ts in seconds.items():
        row[f"{name}_gops_per_core"] = ops / statistics.median(ts) / 1e9 / threads
    row["ternary_vs_fp32"] = row["ternary_auto_gops_per_core"] / row["torch_fp32_gops_per_core"]
    row["ternary_vs_int8"] = row["ternary_auto_gops_per_core"] / row["torch_int8_dynamic_gops_per_core"]
    if peak:
        row["ternary_share_of_peak"] = row["ternary_auto_gops_per_core"] / peak
    return row


def run_kernel_bench(
    threads: int | None = None, repeats: int = 5, shapes=CLIP_SHAPES, tokens=TOKENS, progress=print
) -> dict:
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    from .. import kernels
    from ..pack.bits import pack_2bit

    all_threads = threads or os.cpu_count() or 1
    impls = simd_impls(kernels)  # each timed on its own, next to "auto"
    peaks = {isa: kernels._ext.int8_dot_peak_gops(isa) for isa in ("avx2", "avxvnni", "avx512", "amx")}
    peak = peaks.get(kernels.fast_gemm_impl(), 0.0)  # the instruction the auto path is built on
    progress(
        "int8 dot peak, register-only loop, one core: "
        + ", ".join(f"{isa} {gops:.0f} GOPS" for isa, gops in peaks.items() if gops)
    )
    rng = np.random.default_rng(0)
    rows = []
    for k, n in shapes:
        codes = rng.integers(-1, 2, (n, k)).astype(np.int8)
        packed, scales = pack_2bit(codes), (rng.random((n, 1)) * 0.1).astype(np.float32)
        weight = torch.from_numpy(codes.astype(np.float32) * scales)
        with warnings.catch_warnings():  # torch deprecates its quantized tensors; users still reach for them
            warnings.simplefilter("ignore")
            int8 = DynamicInt8Linear(k, n)
            int8.set_weight_bias(torch.quantize_per_tensor(weight, float(scales.max()) / 127, 0, torch.qint8), None)
        for m in tokens:
            x = rng.standard_normal((m, k)).astype(np.float32)
            xt = torch.from_numpy(x)
            for t in sorted({1, all_threads}):
                kernels.set_num_threads(t)
                torch.set_num_threads(t)
                engines = {
                    "ternary_auto": _ternary(kernels, x, packed, k, scales, "auto"),
                    **{f"ternary_{impl}": _ternary(kernels, x, packed, k, scales, impl) for impl in impls},
                    "ternary_unprepared": lambda: kernels.gemm(x, packed, k, scales, k),
                    "torch_fp32": lambda: torch.nn.functional.linear(xt, weight),
                    "torch_int8_dynamic": lambda: int8(xt),
                }
                with torch.inference_mode():
                    row = _shape_row(engines, repeats, m, k, n, t, peak)
                rows.append(row)
                progress(
                    f"{m:>4} x {k:>4} x {n:>4}, {t} thread(s): ternary {row['ternary_auto_gops_per_core']:6.0f} "
                    f"GOPS/core ({row['ternary_vs_fp32']:.2f}x fp32, {row['ternary_vs_int8']:.2f}x int8"
                    + (f", {row['ternary_share_of_peak']:.0%} of the int8 dot peak)" if peak else ")")
                )
    kernels.set_num_threads(all_threads)
    return {
        "threads": all_threads,
        "repeats": repeats,
        "avx_vnni": bool(kernels.cpu_has_avx_vnni()),
        "avx512_vnni": bool(kernels.cpu_has_avx512_vnni()),
        "amx_int8": bool(kernels.cpu_has_amx_int8()),
        "auto_impl": kernels.fast_gemm_impl(),
        "int8_dot_peak_gops": peaks,
        "simd_impls": impls,
        "machine": machine_info(),  # as in run_bench's report: CPU, arch, features, paths, variables
        "rows": rows,
        "note": "GOPS per core, 2 ops a multiply-add; absolute numbers are machine-bound",
    }
