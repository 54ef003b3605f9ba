"""A caption that fills the whole 77-token context: ternaryclip fast vs open_clip fp32, one process.

    python benchmarks/long_caption.py [--arch ViT-B-16] [--threads 2] [--repeats 15] [--json out.json]

With a short caption the text tower stops at its end-of-text token (``encode_text``'s truncation);
with 77 real tokens there is nothing to cut, so this is the tower's GEMM-bound case.  Both engines
run in this process, interleaved (open_clip, then ours, per repeat), each call after an untimed one;
the ratio is the median of the per-repeat ratios.  Random ViT weights, ternarized (scope ``all`` +
token embedding), as ``ternaryclip bench``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json")
    args = p.parse_args()

    import torch

    import ternaryclip
    from ternaryclip.bench.files import prepare_files
    from ternaryclip.pack.export import to_torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = prepare_files(args.arch, None, Path(tmp))["tclip"]
        ours = ternaryclip.load(path, mode="fast", threads=args.threads)
        reference = to_torch(path).eval()  # the same ternary weights as float32, open_clip's forward
    context, vocab = ours.arch.text.context_length, ours.arch.text.vocab_size
    ids = np.random.default_rng(0).integers(1, vocab - 2, (1, context))
    ids[0, 0], ids[0, -1] = vocab - 2, vocab - 1  # start, 75 words, end: no padding at all
    tokens = torch.from_numpy(ids)

    def open_clip_call():
        with torch.inference_mode():
            return reference.encode_text(tokens).numpy()

    def ours_call():
        return ours.encode_text(ids)

    times = {"open_clip fp32": [], "ternaryclip fast": []}
    for _ in range(args.repeats):
        for name, call in (("open_clip fp32", open_clip_call), ("ternaryclip fast", ours_call)):
            call()
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(times["open_clip fp32"], times["ternaryclip fast"])]
    a, b = open_clip_call()[0], ours_call()[0]
    report = {
        "arch": args.arch,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "tokens": context,
        "median_ms": {k: round(1e3 * statistics.median(v), 2) for k, v in times.items()},
        "speedup": round(statistics.median(ratios), 2),
        "cosine": round(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), 5),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
