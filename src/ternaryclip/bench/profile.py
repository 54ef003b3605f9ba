"""``ternaryclip bench --profile``: where the runtime's time goes, per op class, for both towers.

The kernel entry points the runtime calls are wrapped with timers for the run (GEMM, attention,
norms, activation); what the wall clock holds beyond them is the numpy glue (embedding, reshapes,
residual adds, pooling).  Where the fast GEMM applies the MLP's activation in its epilogue (AMX, AVX-512),
that time is the GEMM's and ``activation`` is zero; so are the norms fused with its quantization.  One
process, one runtime mode (fast, exact or bf16), median over repeats.
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


@contextlib.contextmanager
def timed_kernels(totals: dict):
    """Wrap the kernel entry points so that each call adds its seconds to ``totals[op class]``."""
    from .. import kernels

    originals = {name: getattr(kernels, name) for name in OP_CLASSES}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[OP_CLASSES[name]] += time.perf_counter() - start

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
        totals["glue"] = totals["total"] - sum(v for k, v in totals.items() if k != "total")
        runs.append(totals)
    keys = ["gemm", "attention", "norms", "activation", "glue", "total"]
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}


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
    from ..runtime import load
    from .files import prepare_files

    with tempfile.TemporaryDirectory() as tmp:
        path = model or prepare_files(arch, None, Path(tmp))["tclip"]
        runtime = load(path, mode=mode, threads=threads)
        images, ids = sample_inputs(runtime.arch, max(batches), np.random.default_rng(0))
        rows = {}
        for batch in batches:
            for kind, encode, data in (("image", runtime.encode_image, images), ("text", runtime.encode_text, ids)):
                progress(f"profiling {kind} b{batch}")
                rows[f"{kind}_b{batch}"] = profile_call(encode, data[:batch], repeats)
    return {"arch": arch if not model else str(model), "mode": mode, "threads": threads, "profile": rows}


def format_profile(report: dict) -> str:
    keys = ["gemm", "attention", "norms", "activation", "glue"]
    lines = [f"| workload | total | {' | '.join(keys)} |", "|---" * (len(keys) + 2) + "|"]
    for name, row in report["profile"].items():
        shares = " | ".join(f"{row[k] * 1e3:.1f} ms ({row[k] / row['total']:.0%})" for k in keys)
        lines.append(f"| {name} | {row['total'] * 1e3:.1f} ms | {shares} |")
    return "\n".join(lines)
