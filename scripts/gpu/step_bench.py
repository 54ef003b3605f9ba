"""GPU step time of float vs QAT vs QAT + KD training of one student, per precision and torch.compile.

    python scripts/gpu/step_bench.py --arch ViT-B-16 --batch 256 --json step.json
    python scripts/gpu/step_bench.py --smoke --json /tmp/step.json      # CPU, bundled model, tiny

The teacher is ``--arch`` with random weights (speed does not depend on the values) and each student
is a copy of it.  For each setting (bf16 autocast, fp16 autocast with GradScaler, bf16 compiled) three
trainers are built -- float (contrastive only), QAT (ternary, contrastive only), QAT + KD (ternary,
contrastive + logit + feature KD, teacher forward each step) -- and their steps run interleaved on one
cached batch, so the ratios compare compute, not the synthetic renderer.  Memory per trainer: its
weights, gradients and optimizer state (``static``) and the extra a step allocates at its peak.
The JSON is rewritten after every setting, so a run stopped by its time limit keeps what it measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time

VARIANTS = {
    "float": dict(ternary=False, logit=0.0, feature=0.0),
    "QAT": dict(logit=0.0, feature=0.0),
    "QAT+KD": dict(),
}
SETTINGS = {
    "bf16": dict(precision="bf16"),
    "fp16": dict(precision="fp16"),
    "bf16+compile": dict(precision="bf16", compile=True),
    "fp32": dict(precision="fp32"),
}
GIB = 2**30


def _memory(torch, device) -> float:
    return torch.cuda.memory_allocated(device) / GIB if device.type == "cuda" else 0.0


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(teacher, setting: dict, batch: int, tmp: str, threads: int | None):
    """Three trainers on a shared teacher, each fed one cached batch; their static memory in GiB."""
    import torch

    from ternaryclip.distill import DistillConfig, Trainer

    trainers, static, cached = {}, {}, None
    for name, kw in VARIANTS.items():
        config = DistillConfig(
            teacher=None,
            data="synthetic",
            steps=10**6,
            batch_size=batch,
            warmup=1,
            out=f"{tmp}/{name}",
            save_every=10**9,
            progress=False,
            threads=threads,
            workers=4,
            **setting,
            **kw,
        )
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        before = _memory(torch, device)  # before the student is moved to the GPU
        trainer = Trainer(config, teacher=teacher if name == "QAT+KD" else None, student=copy.deepcopy(teacher))
        cached = cached or trainer._micro_batch()
        trainer._micro_batch = lambda cached=cached: cached
        trainer.train_step()  # allocates the optimizer state; with compile, compiles
        _sync(torch, trainer.device)
        trainers[name], static[name] = trainer, _memory(torch, trainer.device) - before
    return trainers, static


def measure(teacher, label: str, batch: int, steps: int, threads: int | None) -> dict:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainers, static = build(teacher, SETTINGS[label], batch, tmp, threads)
        setup = time.perf_counter() - start
        times = {name: [] for name in trainers}
        peak, losses = {}, {}
        for step in range(steps + 1):
            for name, trainer in trainers.items():
                device = trainer.device
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                base = _memory(torch, device)
                _sync(torch, device)
                t0 = time.perf_counter()
                metrics = trainer.train_step()
                _sync(torch, device)
                if step:  # the first timed step still warms up (autotuning, caches)
                    times[name].append(time.perf_counter() - t0)
                if device.type == "cuda":
                    peak[name] = max(peak.get(name, 0.0), torch.cuda.max_memory_allocated(device) / GIB - base)
                losses[name] = metrics["loss"]
        medians = {name: statistics.median(t) for name, t in times.items()}
        scales = {n: float(t.scaler.get_scale()) for n, t in trainers.items() if t.scaler is not None}
    return {
        "setting": label,
        "batch": batch,
        "steps": steps,
        "setup_seconds": setup,
        "seconds_per_step": medians,
        "images_per_s": {n: batch / m for n, m in medians.items()},
        "ratio_vs_float": {n: m / medians["float"] for n, m in medians.items()},
        "kd_vs_qat": medians["QAT+KD"] / medians["QAT"],
        "static_gib": static,
        "step_peak_gib": peak,
        "fp16_grad_scale": scales,
        "last_loss": losses,
    }


def first_fitting(teacher, label: str, batches: list[int], steps: int, threads: int | None) -> dict:
    """The largest batch of ``batches`` (tried in order) whose setting runs without running out of memory."""
    import torch

    errors = {}
    for batch in batches:
        try:
            return measure(teacher, label, batch, steps, threads) | {"out_of_memory": errors}
        except torch.cuda.OutOfMemoryError as exc:
            errors[batch] = str(exc).splitlines()[0]
            torch.cuda.empty_cache()
        except Exception as exc:  # e.g. torch.compile failing: record it, keep the other settings
            return {"setting": label, "error": f"{type(exc).__name__}: {exc}"[:2000], "out_of_memory": errors}
    return {"setting": label, "out_of_memory": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--batch", nargs="+", type=int, default=[256, 128], help="tried in order until one fits")
    parser.add_argument("--settings", nargs="+", default=["bf16", "fp16", "bf16+compile"], choices=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=150.0, help="start no new setting after this (s)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--smoke", action="store_true", help="CPU check: bundled model, batch 8, 2 steps, no compile")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.batch, args.steps = "bundled", [8], 2
        args.settings = args.settings[:1]  # on a CPU the precision is not used: one setting checks the path

    import torch

    from ternaryclip.distill.models import load_clip

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    start = time.perf_counter()
    teacher = load_clip(args.arch)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results = {"arch": args.arch, "device": device, "torch": torch.__version__, "settings": []}
    for label in args.settings:
        if results["settings"] and time.perf_counter() - start > args.time_limit:  # the first always runs
            results.setdefault("skipped", []).append(label)
            continue
        r = first_fitting(teacher, label, args.batch, args.steps, args.threads)
        results["settings"].append(r)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        if "seconds_per_step" in r:
            s, q = r["seconds_per_step"], r["ratio_vs_float"]
            print(
                f"{label:<14} batch {r['batch']:>4}  float {s['float']:.3f} s/step "
                f"({r['images_per_s']['float']:.0f} img/s)  QAT {q['QAT']:.2f}x  QAT+KD {q['QAT+KD']:.2f}x  "
                f"peak {max(r['step_peak_gib'].values(), default=0):.1f} GiB  setup {r['setup_seconds']:.0f} s",
                flush=True,
            )
        else:
            print(
                f"{label}: {r.get('error') or 'no batch fits'}: {r['out_of_memory']}: {r['out_of_memory']}", flush=True
            )
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
