"""Train the bundled teacher: a small open_clip CLIP learns the synthetic world from scratch.

Reproducible with a seed on CPU (about 30 minutes on 2 cores with the defaults):

    python scripts/train_teacher.py --out runs/teacher            # train
    python scripts/train_teacher.py --out runs/teacher --install  # train, then refresh src/ternaryclip/assets/
    python scripts/train_teacher.py --out runs/teacher --install-only   # install a finished run

The architecture is ``src/ternaryclip/assets/synth-clip.json``.  Plain CLIP training (contrastive loss
only, float weights) with the same trainer that distills students.  Installing writes the weights as
fp16 safetensors next to the config, and ``synth-clip-card.json`` with the recipe, the training
curve's evaluations and the evaluation of the installed (fp16-rounded) weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ternaryclip.assets import TEACHER_CARD, TEACHER_CONFIG, TEACHER_WEIGHTS
from ternaryclip.distill import DistillConfig, Trainer


def install(run: Path, minutes: float | None) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    from ternaryclip.eval.report import json_safe
    from ternaryclip.eval.synthetic import evaluate_synthetic
    from ternaryclip.torch_clip import bundled_teacher

    state = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(run / "model.safetensors")).items()}
    save_file(state, str(TEACHER_WEIGHTS))
    config = json.loads((run / "config.json").read_text())
    recipe = {
        k: v
        for k, v in config.items()
        if k in DistillConfig.__dataclass_fields__ and k in DistillConfig().training_values()
    }
    curve = [
        {k: v for k, v in json.loads(line).items() if k.startswith(("step", "loss", "zeroshot/mean", "retrieval/"))}
        for line in open(run / "metrics.jsonl")
        if "zeroshot/mean_acc1" in line
    ]
    result = evaluate_synthetic(bundled_teacher())
    card = {
        "architecture": json.loads(TEACHER_CONFIG.read_text()),
        "recipe": recipe,
        "command": "python scripts/train_teacher.py --out runs/teacher --install",
        "minutes_on_2_cores": minutes,
        "weights": "fp16 safetensors",
        "evaluation": result,
        "training_evaluations": curve,
    }
    TEACHER_CARD.write_text(json.dumps(json_safe(card), indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/teacher")
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--install", action="store_true", help="after training, write the weights into the assets")
    parser.add_argument("--install-only", action="store_true", help="install the finished run in --out")
    parser.add_argument("--minutes", type=float, help="with --install-only: the run's training time, for the card")
    args = parser.parse_args()

    if args.install_only:
        print(json.dumps(install(Path(args.out), args.minutes), indent=2))
        return
    from ternaryclip.eval.synthetic import evaluate_synthetic

    config = DistillConfig(
        teacher=None,
        student=str(TEACHER_CONFIG),
        ternary=False,
        data="synthetic",
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        weight_decay=0.1,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        save_every=100,
        eval_every=250,
        threads=args.threads,
    )
    start = time.time()
    trainer = Trainer(config, eval_fn=lambda model, step: evaluate_synthetic(model, quick=True))
    trainer.run()
    minutes = (time.time() - start) / 60
    weights = trainer.export()
    print(f"trained {args.steps} steps in {minutes:.1f} min -> {weights}")
    if args.install:
        print(json.dumps(install(Path(args.out), round(minutes, 1)), indent=2))


if __name__ == "__main__":
    main()
