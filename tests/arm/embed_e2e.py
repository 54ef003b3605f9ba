"""End-to-end embedding check for the aarch64 build (run by tests/arm/run.sh).

``make DIR`` (x86 side, with torch): a tiny ternary CLIP with grouped scales is saved as ``DIR/tiny.tclip``
and embedded by the x86 runtime in exact and fast mode (``DIR/x86.npz``).  ``check DIR`` (the aarch64
Python under qemu, torch-free): the same file embedded by the aarch64 extension must agree with the x86
results.  The kernels are bitwise equal to the reference on both machines, but the float ops around them
differ in vector width and fused multiply-adds, so the check is a tolerance: exact mode to 1e-5, fast
mode (where an activation can round to the neighbouring int8) to cosine 0.9999.  run.sh makes the x86
side with ``TERNARYCLIP_IMPL=avx2``: on a CPU with AMX the fast mode's attention would be bf16, which no
aarch64 path has; and the x86 side's fast attention runs float32 (``int8=False`` on a path without bf16),
as the aarch64 one does, not the AVX2 int8 attention.  Prints one line per check and ends with
``N passed, M failed``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def make(out: Path) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import open_clip

    import ternaryclip
    from helpers import TINY_OPEN_CLIP, random_inputs
    from ternaryclip import kernels
    from ternaryclip.quant import TernaryConfig, ternarize_

    attention = kernels.attention
    kernels.attention = lambda *args, **kwargs: attention(*args, **{**kwargs, "int8": False})

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_OPEN_CLIP).eval()
    with torch.no_grad():  # O(1 / sqrt(fan_in)) weights, so that every layer matters
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0, p.shape[-1] ** -0.5)
    ternarize_(model, TernaryConfig(granularity="group", group_size=32, rule="absmean2"))
    out.mkdir(parents=True, exist_ok=True)
    path = ternaryclip.save(model, out / "tiny.tclip")
    image, text = random_inputs(batch=5)
    results = {"image": image.numpy(), "text": text.numpy()}
    for mode in ("exact", "fast"):
        runtime = ternaryclip.load(path, mode=mode)
        results[f"{mode}_image"] = runtime.encode_image(image.numpy())
        results[f"{mode}_text"] = runtime.encode_text(text.numpy())
    np.savez(out / "x86.npz", **results)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def check(folder: Path) -> int:
    import platform

    import ternaryclip
    from ternaryclip import kernels

    want = np.load(folder / "x86.npz")
    passed = failed = 0
    print(f"machine {platform.machine()}, impls {kernels.IMPLS}")
    for mode in ("exact", "fast"):
        runtime = ternaryclip.load(folder / "tiny.tclip", mode=mode)
        got = {"image": runtime.encode_image(want["image"]), "text": runtime.encode_text(want["text"])}
        for tower, emb in got.items():
            ref = want[f"{mode}_{tower}"]
            diff, cos = float(np.abs(emb - ref).max()), cosine(emb, ref)
            ok = (diff <= 1e-5 * max(1.0, float(np.abs(ref).max()))) if mode == "exact" else cos >= 0.9999
            print(f"{'ok  ' if ok else 'FAIL'} {mode} {tower}: max |aarch64 - x86| {diff:.2e}, min cosine {cos:.7f}")
            passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    if command == "make":
        make(folder)
    else:
        sys.exit(check(folder))
