"""Step time of QAT + KD vs plain float training of the same student, same batch, one process.

    python benchmarks/distill_step.py --arch bundled ViT-B-32 --batch 64 32 --steps 6 --json out.json

Three trainers are built on one teacher: float (no ternarization, contrastive loss only), QAT
(ternary student, contrastive only) and QAT + KD (ternary student, contrastive + logit + feature
distillation, teacher forward each step).  Their steps run interleaved (float, QAT, KD, float, ...)
on the same synthetic batches; the table gives medians and ratios to float.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time


def measure(arch: str, batch: int, steps: int, threads: int | None) -> dict:
    import torch

    from ternaryclip.distill import DistillConfig, Trainer
    from ternaryclip.torch_clip import load_float_clip

    if threads:
        torch.set_num_threads(threads)
    teacher = load_float_clip(arch)
    image_size = teacher.visual.image_size
    image_size = image_size[0] if isinstance(image_size, tuple) else image_size
    variants = {
        "float": dict(ternary=False, logit=0.0, feature=0.0),
        "QAT": dict(logit=0.0, feature=0.0),
        "QAT+KD": dict(),
    }
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in variants.items():
            config = DistillConfig(
                teacher=None,
                data="synthetic",
                steps=steps + 1,
                batch_size=batch,
                warmup=1,
                out=f"{tmp}/{name}",
                save_every=10**9,
                progress=False,
                threads=threads,
                **kw,
            )
            trainers[name] = Trainer(
                config, teacher=teacher if name == "QAT+KD" else None, student=copy.deepcopy(teacher)
            )
        times = {name: [] for name in trainers}
        for step in range(steps + 1):
            for name, trainer in trainers.items():
                start = time.perf_counter()
                trainer.train_step()
                if step:  # the first step warms up allocations
                    times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "arch": arch,
        "batch": batch,
        "steps": steps,
        "seconds_per_step": medians,
        "ratio_vs_float": {name: m / medians["float"] for name, m in medians.items()},
        "kd_vs_qat": medians["QAT+KD"] / medians["QAT"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["bundled", "ViT-B-32"])
    parser.add_argument("--batch", nargs="+", type=int, default=[64, 16], help="one per --arch")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = [measure(a, b, args.steps, args.threads) for a, b in zip(args.arch, args.batch)]
    print(f"{'student':<12}{'batch':>6}{'float s/step':>14}{'QAT':>10}{'QAT+KD':>10}{'KD/QAT':>10}")
    for r in results:
        s, q = r["seconds_per_step"], r["ratio_vs_float"]
        print(
            f"{r['arch']:<12}{r['batch']:>6}{s['float']:>14.3f}{q['QAT']:>9.2f}x{q['QAT+KD']:>9.2f}x"
            f"{r['kd_vs_qat']:>9.2f}x"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
