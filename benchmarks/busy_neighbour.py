"""The runtime on a quiet machine and beside a busy process: what the kernels' thread teams are for.

    python benchmarks/busy_neighbour.py [--arch ViT-B-16] [--threads 2] [--rounds 3] [--json out.json]

Each round runs one child process per condition, alternating: "quiet" (nothing else of ours running)
and "busy" (one process spinning on a core beside it, as a NAS's other job or a server's own HTTP
threads would).  A child loads the model (random ViT weights, ternarized, as ``ternaryclip bench``)
and times an image (b1), a caption of 10 tokens and one of 77, each the median of 9 calls after an
untimed one.  Prints the medians over rounds and the busy / quiet ratio; with a team that spins
where it should not, that ratio is several times larger (see docs/runtime.md, "Threads between parallel regions").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, statistics, sys, time
import numpy as np
import ternaryclip
model = ternaryclip.load(sys.argv[1], mode="fast", threads=int(sys.argv[2]))
image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
ctx, vocab = model.arch.text.context_length, model.arch.text.vocab_size
long = np.random.default_rng(0).integers(1, vocab - 2, (1, ctx))
long[0, 0], long[0, -1] = vocab - 2, vocab - 1
short = np.zeros((1, ctx), np.int64)
short[0, :10] = long[0, :10]
short[0, 9] = vocab - 1
calls = {"image_b1": lambda: model.encode_image(image), "text_10_tokens": lambda: model.encode_text(short),
         "text_77_tokens": lambda: model.encode_text(long)}
out = {}
for name, call in calls.items():
    call()
    times = []
    for _ in range(9):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    out[name] = 1e3 * statistics.median(times)
print(json.dumps(out))
"""


def spin(stop) -> None:
    while not stop.is_set():
        pass


def run_child(path: str, threads: int, busy: bool) -> dict:
    stop = multiprocessing.Event()
    neighbour = multiprocessing.Process(target=spin, args=(stop,), daemon=True) if busy else None
    if neighbour:
        neighbour.start()
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, path, str(threads)], capture_output=True, text=True, timeout=600, check=True
        )
    finally:
        if neighbour:
            stop.set()
            neighbour.join(timeout=10)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args()

    from ternaryclip import kernels
    from ternaryclip.bench.files import prepare_files

    with tempfile.TemporaryDirectory() as tmp:
        path = prepare_files(args.arch, None, Path(tmp))["tclip"]
        runs = {"quiet": [], "busy": []}
        for r in range(args.rounds):
            for condition in runs:
                runs[condition].append(run_child(path, args.threads, condition == "busy"))
                print(f"round {r + 1}/{args.rounds} {condition}: {runs[condition][-1]}", file=sys.stderr)
    medians = {c: {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]} for c, rs in runs.items()}
    report = {
        "arch": args.arch,
        "cpu": platform.processor() or platform.machine(),
        "kernel": kernels.fast_gemm_impl(),
        "threads": args.threads,
        "rounds": args.rounds,
        "median_ms": medians,
        "busy_over_quiet": {k: round(medians["busy"][k] / medians["quiet"][k], 2) for k in medians["quiet"]},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
