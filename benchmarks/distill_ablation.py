"""Which distillation settings keep the most of the bundled teacher? One variant per run, same budget.

    python benchmarks/distill_ablation.py --steps 200 --batch-size 64 --json benchmarks/results/distill_ablation.json

Each variant trains a ternary student from the bundled teacher on the synthetic stream and is
evaluated on the bundled benchmark (zero-shot top-1 on held-out pairs, retrieval R@1); retention is
student / teacher.  Variants change one thing from a base recipe (absmean rule, lr 3e-4, KD
temperature 1, loss weights 1/1/1); the last ones combine what helped, which became the quickstart's
defaults (TWN rule, temperature 2).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time

VARIANTS = {
    "base (absmean, lr 3e-4, KD T=1)": {},
    "QAT only (no KD)": {"logit": 0.0, "feature": 0.0},
    "lr 1e-4": {"lr": 1e-4},
    "lr 1e-3": {"lr": 1e-3},
    "rule twn": {"rule": "twn"},
    "float warm-up 20% of steps": {"float_warmup": 0.2},
    "KD temperature 2": {"temperature": 2.0},
    "logit KD only": {"feature": 0.0},
    "feature KD only": {"logit": 0.0},
    "no contrastive term": {"contrastive": 0.0},
    "per-group scales (64)": {"granularity": "group", "group_size": 64},
    "rule twn + KD temperature 2": {"rule": "twn", "temperature": 2.0},
    "rule twn, QAT only (no KD)": {"rule": "twn", "logit": 0.0, "feature": 0.0},
    "rule twn + KD T=2, feature KD x3": {"rule": "twn", "temperature": 2.0, "feature": 3.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--variants", nargs="*", help="names of VARIANTS to run (default: all)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()

    from ternaryclip.distill import DistillConfig, Trainer
    from ternaryclip.eval.synthetic import evaluate_synthetic
    from ternaryclip.quickstart import QuickstartOptions, summary_metrics
    from ternaryclip.torch_clip import bundled_teacher

    base = QuickstartOptions()
    teacher = bundled_teacher()
    reference = summary_metrics(evaluate_synthetic(teacher))
    results = {"teacher": reference, "variants": {}}
    print(f"teacher: zero-shot {100 * reference['zs_mean']:.1f}, R@1 {100 * reference['R@1_mean']:.1f}")
    for name in args.variants or VARIANTS:
        kw = dict(lr=base.lr, rule="absmean", granularity=base.granularity, contrastive=1.0, logit=1.0, feature=1.0)
        kw.update(VARIANTS[name])
        distill = kw["logit"] or kw["feature"]
        with tempfile.TemporaryDirectory() as tmp:
            config = DistillConfig(
                teacher=None,
                data="synthetic",
                steps=args.steps,
                batch_size=args.batch_size,
                warmup=max(1, args.steps // 10),
                weight_decay=0.0,
                embedding=True,
                out=tmp,
                save_every=10**9,
                progress=False,
                threads=args.threads,
                seed=1,
                **kw,
            )
            start = time.perf_counter()
            trainer = Trainer(config, teacher=teacher if distill else None, student=copy.deepcopy(teacher))
            trainer.run()
            seconds = time.perf_counter() - start
        m = summary_metrics(evaluate_synthetic(trainer.student.eval()))
        m.update(
            zs_retention=m["zs_mean"] / reference["zs_mean"],
            r1_retention=m["R@1_mean"] / reference["R@1_mean"],
            seconds=seconds,
        )
        results["variants"][name] = m
        if args.json:  # after every variant, so a long run can be read while it goes
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        print(
            f"{name:<36} zero-shot {100 * m['zs_mean']:5.1f} ({m['zs_retention']:6.1%})   "
            f"R@1 {100 * m['R@1_mean']:5.1f} ({m['r1_retention']:6.1%})   {seconds:5.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
