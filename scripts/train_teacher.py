"""Train the bundled teacher: a small open_clip CLIP learns the synthetic world from scratch.

Reproducible with a seed on CPU (about 30 minutes on 2 cores with the defaults):

    python scripts/train_teacher.py --out runs/teacher            # train
    python scripts/train_teacher.py --out runs/teacher --install  # train, then refresh src/ternaryclip/assets/
    python scripts/train_teacher.py --out runs/teacher --install-only   # install a finished run

The architecture is ``src/ternaryclip/assets/synth-clip.json``.  Plain CLIP training (contrastive loss
only, float weights) with the same trainer that distills students.  Installing writes the weights as
fp16 safetensors next to the config, and ``synth-clip-card.json`` with the recipe, the training
curve's evaluations and the evaluation of the installed (fp16-rounded) weights.

Recipes for a teacher that learns shape apart from colour (GPU runs, all in parallel, time-capped):

    python scripts/train_teacher.py --recipe patch4-colourfree --out runs/t-p4cf --time-limit 330

``--recipe`` changes the architecture (patch size, vision width) and the data: ``colourfree``
rotates the hue of a fraction of the training images and drops the colour word from their
captions, so shape has to be learned without its colour.  With ``--time-limit`` the run measures
its speed over the first steps and shortens the cosine schedule to end inside the limit; every
``--eval-every`` steps it evaluates and keeps the weights with the best held-out shape zero-shot
as fp16 ``best.safetensors`` (plus ``best-config.json`` and ``curve.json``) in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from ternaryclip.assets import TEACHER_CARD, TEACHER_CONFIG, TEACHER_WEIGHTS
from ternaryclip.distill import DistillConfig, Trainer

RECIPES: dict[str, dict] = {
    "base": {},
    "patch4": {"vision": {"patch_size": 4}},
    "wide": {"vision": {"width": 256, "head_width": 64}},
    "colourfree": {"colour_free": 0.4},
    "patch4-colourfree": {"vision": {"patch_size": 4}, "colour_free": 0.4},
    "wide-patch4-colourfree": {"vision": {"patch_size": 4, "width": 256, "head_width": 64}, "colour_free": 0.4},
}
_COLOUR_WORDS = re.compile(r"(coloured |in )?\b(red|green|blue|yellow|purple|cyan)\b,? ?")


def recipe_config(recipe: dict, out: Path) -> Path:
    """The bundled architecture with the recipe's vision changes, written as its own open_clip config."""
    arch = json.loads(TEACHER_CONFIG.read_text())
    arch["vision_cfg"].update(recipe.get("vision", {}))
    path = out / "synth-clip-variant.json"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(arch, indent=2))
    return path


def hue_rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """Rotate the hue of a uint8 RGB image about the grey axis (grey backgrounds stay grey)."""
    c, s = np.cos(angle), np.sin(angle)
    k = (
        np.full((3, 3), (1 - c) / 3)
        + np.eye(3) * c
        + np.sqrt(1 / 3) * s * np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]])
    )
    return np.clip(image.astype(np.float32) @ k.T.astype(np.float32), 0, 255).astype(np.uint8)


class ColourFreeSource:
    """Synthetic records where a fraction ``p`` get a random hue and a caption without the colour word."""

    def __init__(self, inner, p: float, seed: int):
        self.inner, self.p, self.seed = inner, p, seed

    def records(self, start: int):
        for i, (image, caption) in enumerate(self.inner.records(start), start):
            rng = np.random.default_rng([self.seed, i, 7])
            if rng.random() < self.p:
                image = hue_rotate(image, rng.uniform(0.5, 2 * np.pi - 0.5))
                caption = _COLOUR_WORDS.sub("", caption)
            yield image, caption

    def describe(self) -> str:
        return f"colour-free {self.p:.0%} of {self.inner.describe()}"


def save_best(trainer, out: Path, metrics: dict, arch_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in trainer.student.state_dict().items()}
    save_file(state, str(out / "best.safetensors"))
    (out / "best-config.json").write_text(arch_path.read_text())
    (out / "best-metrics.json").write_text(json.dumps(metrics, indent=2))


def train_capped(trainer, args, arch_path: Path) -> dict:
    """Train until the steps or ``--time-limit`` run out, evaluating and keeping the best held-out shape."""
    from ternaryclip.eval.synthetic import evaluate_synthetic

    out, start, curve, best = Path(args.out), time.perf_counter(), [], -1.0
    while trainer.step < trainer.config.steps:
        metrics = trainer.train_step()
        elapsed = time.perf_counter() - start
        if trainer.step == 50 and args.time_limit:  # fit the cosine into the time left (eval cost included)
            fit = int(trainer.step + 0.8 * (args.time_limit - elapsed) * trainer.step / elapsed)
            trainer.config.steps = max(trainer.step + 1, min(trainer.config.steps, fit))
        last = trainer.step >= trainer.config.steps or (args.time_limit and elapsed > args.time_limit)
        if trainer.step % args.eval_every == 0 or last:
            result = evaluate_synthetic(trainer.student.eval(), quick=True)
            trainer.student.train()
            point = {"step": trainer.step, "seconds": round(elapsed, 1), "loss": metrics["loss"], **result}
            curve.append(point)
            (out / "curve.json").write_text(json.dumps(curve, indent=1))
            shape = result["zeroshot/shape/acc1"]
            print(
                f"step {trainer.step} {elapsed:.0f}s loss {metrics['loss']:.3f} heldout shape {shape:.3f}", flush=True
            )
            if shape > best:
                best = shape
                save_best(trainer, out, point, arch_path)
        if last:
            break
    return {"best_heldout_shape": best, "steps": trainer.step, "curve": curve}


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
    parser.add_argument("--recipe", choices=list(RECIPES), help="architecture/data variant (see above)")
    parser.add_argument("--time-limit", type=float, help="seconds of training; the schedule is fit to it")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--workers", type=int, default=4, help="image drawing threads")
    parser.add_argument("--smoke", action="store_true", help="a few tiny steps, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.batch_size, args.eval_every, args.warmup = 4, 8, 2, 1

    if args.install_only:
        print(json.dumps(install(Path(args.out), args.minutes), indent=2))
        return
    from ternaryclip.eval.synthetic import evaluate_synthetic

    if args.recipe:
        run_recipe(args)
        return
    config = float_training_config(args, TEACHER_CONFIG, resume=args.resume, save_every=100, eval_every=250)
    start = time.time()
    trainer = Trainer(config, eval_fn=lambda model, step: evaluate_synthetic(model, quick=True))
    trainer.run()
    minutes = (time.time() - start) / 60
    weights = trainer.export()
    print(f"trained {args.steps} steps in {minutes:.1f} min -> {weights}")
    if args.install:
        print(json.dumps(install(Path(args.out), round(minutes, 1)), indent=2))


def float_training_config(args, student: Path, **settings) -> DistillConfig:
    """The teacher's training as a float (not ternary) run on the synthetic world, from the command line."""
    return DistillConfig(
        teacher=None,
        student=str(student),
        ternary=False,
        data="synthetic",
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        weight_decay=0.1,
        seed=args.seed,
        out=args.out,
        threads=args.threads,
        **settings,
    )


def run_recipe(args) -> None:
    from ternaryclip.distill.data import BatchStream

    recipe, out = RECIPES[args.recipe], Path(args.out)
    arch_path = recipe_config(recipe, out)
    config = float_training_config(
        args, arch_path, save_every=10**9, progress=False, workers=args.workers, fused_adamw=True
    )
    trainer = Trainer(config)
    if recipe.get("colour_free"):
        source = ColourFreeSource(trainer.data.source, recipe["colour_free"], args.seed)
        trainer.data = BatchStream(source, trainer.preprocess, trainer.tokenizer, args.batch_size, workers=args.workers)
    summary = train_capped(trainer, args, arch_path)
    size = (out / "best.safetensors").stat().st_size
    summary.update(
        recipe=args.recipe, recipe_settings=recipe, best_mb=round(size / 1e6, 2), architecture=str(arch_path)
    )
    (out / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=2))
    print(f"{args.recipe}: best held-out shape {summary['best_heldout_shape']:.3f}, {size / 1e6:.1f} MB fp16")


if __name__ == "__main__":
    main()
