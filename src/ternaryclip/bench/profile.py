"""``ternaryclip bench --profile``: where the runtime's time goes, per op class, for both towers.

The kernel entry points the runtime calls are wrapped with timers for the run (GEMM, attention,
norms, activation); what the wall clock holds beyond them is the numpy glue (embedding, reshapes,
residual adds, pooling).  Where the fast GEMM applies the MLP's activation in its epilogue (AMX, AVX-512),
that time is the GEMM's and ``activation`` is zero; so are the norms fused with its quantization.  One
process, one runtime mode (fast, exact or bf16), median over repeats.

Each row also counts the arithmetic of the forward, from the same calls: ``2 M K N`` a GEMM, ``4 W`` a
(query, key) pair an attention (Q Kᵀ and P V; a causal tower's pairs up to the diagonal only), so what the
runtime ran (captions cut at their last token, the last block's MLP on the pooled rows).  Its GOPS, and
their share of the measured int8 peak of all threads (the register-only dot loop ``bench --kernels``
reports, on the instruction the fast GEMM uses, times the threads): the end-to-end counterpart of the
kernels' share of peak.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

# kernels function -> op class
OP_CLASSES = {
    "gemm": "gemm",
    "gemm_prepared": "gemm",
    "gemm_prepared_into": "gemm",
    "attention": "attention",
    "layer_norm": "norms",
    "activation_": "activation",
}


def call_ops(name: str, args: tuple, kwargs: dict) -> int:
    """Multiply-adds x 2 of one kernel call: a GEMM's ``2 M K N``, an attention's ``4 W`` a (query, key) pair."""
    x = args[0] if args else next(iter(kwargs.values()))
    if name == "gemm":  # gemm(x, packed, k, ...)
        k = args[2] if len(args) > 2 else kwargs["k"]
        return 2 * x.shape[0] * int(k) * (args[1] if len(args) > 1 else kwargs["packed"]).shape[0]
    if name.startswith("gemm_prepared"):  # gemm_prepared(x, weights, ...)
        weights = args[1] if len(args) > 1 else kwargs["weights"]
        return 2 * x.shape[0] * weights.k * weights.n
    if name == "attention":  # attention(qkv [B, T, 3W], heads, causal)
        causal = args[2] if len(args) > 2 else kwargs["causal"]
        batch, t, width = x.shape[0], x.shape[1], x.shape[2] // 3
        pairs = t * (t + 1) // 2 if causal else t * t
        return 4 * width * pairs * batch
    return 0


@contextlib.contextmanager
def timed_kernels(totals: dict):
    """Wrap the kernel entry points so that each call adds its seconds to ``totals[op class]``, and its
    arithmetic (:func:`call_ops`) to ``totals["ops"]``."""
    from .. import kernels

    originals = {name: getattr(kernels, name) for name in OP_CLASSES}
    inside = [False]  # an entry point that calls another one (gemm_prepared -> gemm_prepared_into) counts once

    def wrap(name, fn):
        def timed(*args, **kwargs):
            if inside[0]:
                return fn(*args, **kwargs)
            inside[0] = True
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[OP_CLASSES[name]] += time.perf_counter() - start
                totals["ops"] += call_ops(name, args, kwargs)
                inside[0] = False

        return timed

    try:
        for name, fn in originals.items():
            setattr(kernels, name, wrap(name, fn))
        yield
    finally:
        for name, fn in originals.items():
            setattr(kernels, name, fn)


def profile_call(encode, data, repeats: int) -> dict:
    """Median seconds per op class (and ``glue``, ``total``) of ``encode(data)``."""
    encode(data)  # warm-up: scratch buffers, page faults
    runs = []
    for _ in range(repeats):
        totals: dict = defaultdict(float)
        with timed_kernels(totals):
            start = time.perf_counter()
            encode(data)
            totals["total"] = time.perf_counter() - start
        totals["glue"] = totals["total"] - sum(v for k, v in totals.items() if k not in ("total", "ops"))
        runs.append(totals)
    keys = ["gemm", "attention", "norms", "activation", "glue", "total"]
    row = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    row["ops"] = int(runs[-1]["ops"]) if runs else 0  # the same every run
    row["gops"] = row["ops"] / row["total"] / 1e9 if row["total"] else 0.0
    return row


def int8_peak_gops(threads: int) -> tuple[str, float]:
    """The instruction the fast GEMM is built on here, and its measured int8 dot peak on ``threads`` cores
    (one core's register-only loop times the threads; 0 where the kernels have no peak loop for it)."""
    from .. import kernels

    isa = kernels.fast_gemm_impl()
    try:
        per_core = kernels._ext.int8_dot_peak_gops(isa)  # the loop `bench --kernels` measures
    except (ValueError, RuntimeError):  # a path without a peak loop (ref, the ARM ones)
        per_core = 0.0
    return isa, per_core * threads


def sample_inputs(arch, batch: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Random pixels, and captions of 5-14 words (start token, words, end token) like the bench's."""
    size = arch.vision.image_size
    images = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    ids = np.zeros((batch, arch.text.context_length), dtype=np.int64)
    vocab = arch.text.vocab_size
    for row in range(batch):
        n = 5 + row % 10
        ids[row, : n + 2] = [vocab - 2, *rng.integers(1, vocab - 2, n), vocab - 1]
    return images, ids


def run_profile(
    arch: str | None = "ViT-B-16",
    model: str | None = None,
    batches=(1,),
    threads: int | None = None,
    repeats: int = 5,
    mode: str = "fast",
    progress=print,
) -> dict:
    from .. import kernels
    from ..runtime import load
    from .files import prepare_files

    with tempfile.TemporaryDirectory() as tmp:
        path = model or prepare_files(arch, None, Path(tmp))["tclip"]
        runtime = load(path, mode=mode, threads=threads)
        threads = threads or kernels.get_num_threads()
        isa, peak = int8_peak_gops(threads)
        images, ids = sample_inputs(runtime.arch, max(batches), np.random.default_rng(0))
        rows = {}
        for batch in batches:
            for kind, encode, data in (("image", runtime.encode_image, images), ("text", runtime.encode_text, ids)):
                progress(f"profiling {kind} b{batch}")
                row = rows[f"{kind}_b{batch}"] = profile_call(encode, data[:batch], repeats)
                if peak:
                    row["share_of_int8_peak"] = row["gops"] / peak
    return {
        "arch": arch if not model else str(model),
        "mode": mode,
        "threads": threads,
        "int8_peak": {"isa": isa, "gops": peak, "threads": threads},
        "profile": rows,
    }


def format_profile(report: dict) -> str:
    keys = ["gemm", "attention", "norms", "activation", "glue"]
    peak = report.get("int8_peak", {})
    lines = [
        f"| workload | total | {' | '.join(keys)} | GOPS | of int8 peak |",
        "|---" * (len(keys) + 4) + "|",
    ]
    for name, row in report["profile"].items():
        shares = " | ".join(f"{row[k] * 1e3:.1f} ms ({row[k] / row['total']:.0%})" for k in keys)
        share = f"{row['share_of_int8_peak']:.0%}" if "share_of_int8_peak" in row else "n/a"
        lines.append(f"| {name} | {row['total'] * 1e3:.1f} ms | {shares} | {row['gops']:.0f} | {share} |")
    if peak.get("gops"):
        lines.append(
            f"(GOPS: the forward's GEMM and attention arithmetic over its wall time; int8 peak: {peak['isa']} "
            f"dot loop, {peak['gops']:.0f} GOPS on {peak['threads']} thread(s))"
        )
    return "\n".join(lines)
