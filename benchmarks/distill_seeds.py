"""Seeded ablation: PTQ, QAT and QAT + KD over several seeds, a student of another architecture, a hard setting.

    python benchmarks/distill_seeds.py --seeds 0 1 2 --json seeds.json            # every arm, 3 seeds
    python benchmarks/distill_seeds.py --seeds 0 1 2 3 4 --shard 0/4 --json s0.json   # a quarter of the runs
    python benchmarks/distill_stats.py seeds.json --out benchmarks/               # means, intervals, PNG

Arms (the seed sets the student's init where it is random, and the data order):

* ``PTQ absmean`` / ``PTQ twn``: the bundled teacher ternarized after training (no seed: run once).
* ``QAT`` / ``QAT+KD``: the quickstart recipe (copy of the teacher, TWN, T=2) without / with KD.
* ``xarch KD`` / ``xarch no teacher`` / ``xarch KD no contrastive``: a narrower, shallower student
  (``XARCH``: other embedding width, so KD goes through a learned ``--project``) from random init.
* ``hard QAT`` / ``hard QAT+KD``: a quarter of the steps, one scale per tensor instead of per channel.

Every run is evaluated on the bundled benchmark (fixed evaluation sets); the JSON is rewritten after
each run, so a run stopped by a time limit keeps what it finished.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

# Narrower and shallower than the bundled teacher (192-wide 4-layer vision, 128-d embeddings).
XARCH = {
    "embed_dim": 96,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 128, "patch_size": 8, "head_width": 64, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 96, "heads": 2, "layers": 3},
}
KD = dict(logit=1.0, feature=1.0)
NO_KD = dict(logit=0.0, feature=0.0)
ARMS: dict[str, dict] = {
    "QAT": dict(**NO_KD),
    "QAT+KD": dict(**KD),
    "xarch KD": dict(student="xarch", project=True, **KD),
    "xarch no teacher": dict(student="xarch", **NO_KD),
    "xarch KD no contrastive": dict(student="xarch", project=True, contrastive=0.0, **KD),
    "hard QAT": dict(steps_fraction=0.25, granularity="tensor", **NO_KD),
    "hard QAT+KD": dict(steps_fraction=0.25, granularity="tensor", **KD),
}
PTQ_RULES = ("absmean", "twn")


def train_arm(teacher, arm: dict, seed: int, args, xarch_path: str) -> tuple:
    """One trained student of ``arm`` (a copy of the teacher unless the arm names another student)."""
    from ternaryclip.distill import DistillConfig, Trainer
    from ternaryclip.distill.models import load_clip

    arm = dict(arm)
    steps = max(2, int(args.steps * arm.pop("steps_fraction", 1.0)))
    distill = arm["logit"] or arm["feature"]
    import torch

    torch.manual_seed(seed)  # the other student's random init follows the seed too
    student = load_clip(xarch_path) if arm.pop("student", None) == "xarch" else copy.deepcopy(teacher)
    with tempfile.TemporaryDirectory() as tmp:
        config = DistillConfig(
            teacher=None,
            data="synthetic",
            steps=steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup=max(1, steps // 10),
            weight_decay=0.0,
            rule="twn",
            embedding=True,
            temperature=2.0,
            out=tmp,
            save_every=10**9,
            progress=False,
            threads=args.threads,
            workers=args.workers,
            seed=seed,
            **{"granularity": "channel", "contrastive": 1.0, **arm},
        )
        start = time.perf_counter()
        trainer = Trainer(config, teacher=teacher if distill else None, student=student)
        trainer.run()
        return trainer.student.eval(), time.perf_counter() - start, steps


def planned_runs(arms: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """Every (arm, seed) pair, PTQ rules once each (they have nothing random)."""
    runs = [(f"PTQ {rule}", 0) for rule in PTQ_RULES if f"PTQ {rule}" in arms]
    return runs + [(arm, seed) for seed in seeds for arm in arms if arm in ARMS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=[f"PTQ {r}" for r in PTQ_RULES] + list(ARMS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-images", type=int, default=600, help="images per zero-shot task")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th planned run starting at i")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2 steps, batch 8, 40 eval images: checks the script")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.batch_size, args.eval_images = 4, 8, 40
    unknown = set(args.arms) - set(ARMS) - {f"PTQ {r}" for r in PTQ_RULES}
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; choose from {[f'PTQ {r}' for r in PTQ_RULES] + list(ARMS)}")
    index, count = (int(x) for x in args.shard.split("/"))

    import torch

    from ternaryclip.eval.synthetic import evaluate_synthetic
    from ternaryclip.quant import TernaryConfig, ternarize_
    from ternaryclip.quickstart import summary_metrics
    from ternaryclip.torch_clip import bundled_teacher

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher = bundled_teacher()
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "teacher": summary_metrics(evaluate_synthetic(teacher, n=args.eval_images)),
        "xarch": XARCH,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        xarch_path = str(Path(tmp) / "synth-clip-xarch.json")
        Path(xarch_path).write_text(json.dumps(XARCH))
        for arm, seed in planned_runs(args.arms, args.seeds)[index::count]:
            start = time.perf_counter()
            if arm.startswith("PTQ"):
                model = ternarize_(copy.deepcopy(teacher), TernaryConfig(rule=arm.split()[1], embedding=True))
                seconds, steps = 0.0, 0
            else:
                model, seconds, steps = train_arm(teacher, ARMS[arm], seed, args, xarch_path)
            metrics = summary_metrics(evaluate_synthetic(model, n=args.eval_images))
            result["runs"].append({"arm": arm, "seed": seed, "steps": steps, "train_seconds": seconds, **metrics})
            Path(args.json).write_text(json.dumps(result, indent=1))
            print(
                f"{arm:<26} seed {seed}  zero-shot {100 * metrics['zs_mean']:5.1f}  R@1 {100 * metrics['R@1_mean']:5.1f}"
                f"  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
