"""The offline quickstart: the whole method on the bundled teacher and synthetic data, in minutes.

1. the float teacher, evaluated on the bundled benchmark (zero-shot on held-out pairs, retrieval);
2. post-training ternarization of the teacher (no training), with the absmean and TWN rules;
3. QAT alone (the student learns from the captions only) and QAT + KD (the paper's method), the
   same steps, batch and learning rate, both starting from the teacher's weights;
4. the QAT+KD student packed to ``.tclip`` (base3 and 2bit) and run by the torch-free runtime in
   exact and fast mode;
5. one table, ``report.json``, ``report.md`` and ``report.png`` in ``--out``.

Latency is measured in this process, interleaved (teacher, runtime, teacher, ...), median of repeats.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.synthetic import BENCHMARK_TASKS

GOALS = {"zeroshot_retention": 0.97, "retrieval_retention": 0.95, "fast_vs_exact_points": 0.5}


@dataclass
class QuickstartOptions:
    out: str = "out/quickstart"
    steps: int = 200
    batch_size: int = 64
    lr: float = 3e-4
    threads: int | None = None
    rule: str = "twn"
    granularity: str = "channel"
    temperature: float = 2.0
    latency_repeats: int = 15
    eval_images: int = 600
    progress: bool = True


def summary_metrics(metrics: dict) -> dict:
    """The table's columns from :func:`evaluate_synthetic` output."""
    out = {f"zs_{t}": metrics[f"zeroshot/{t}/acc1"] for t in BENCHMARK_TASKS}
    out["zs_mean"] = metrics["zeroshot/mean_acc1"]
    for k in (1, 5):
        out[f"i2t_R@{k}"] = metrics[f"retrieval/text_retrieval_recall@{k}"]
        out[f"t2i_R@{k}"] = metrics[f"retrieval/image_retrieval_recall@{k}"]
    out["R@1_mean"] = 0.5 * (out["i2t_R@1"] + out["t2i_R@1"])
    return out


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_latency(teacher, runtime, repeats: int) -> dict:
    """Teacher (torch fp32) vs runtime, image b1 / b32 and text b1 / b32, interleaved rounds."""
    import torch

    from .runtime.tokenizer import ClipTokenizer

    rng, image_size = np.random.default_rng(0), runtime.arch.vision.image_size
    ids = ClipTokenizer(runtime.arch.text.context_length)(["two small red circles on a dark background"] * 32)
    pixels = rng.standard_normal((32, 3, image_size, image_size)).astype(np.float32)
    work = {
        "image_b1": (
            lambda: teacher.encode_image(torch.from_numpy(pixels[:1])),
            lambda: runtime.encode_image(pixels[:1]),
        ),
        "image_b32": (lambda: teacher.encode_image(torch.from_numpy(pixels)), lambda: runtime.encode_image(pixels)),
        "text_b1": (lambda: teacher.encode_text(torch.from_numpy(ids[:1])), lambda: runtime.encode_text(ids[:1])),
        "text_b32": (lambda: teacher.encode_text(torch.from_numpy(ids)), lambda: runtime.encode_text(ids)),
    }
    out = {}
    with torch.no_grad():
        for name, (torch_fn, runtime_fn) in work.items():
            torch_fn(), runtime_fn()  # warm up
            t, r = [], []
            for _ in range(repeats):
                t.append(_seconds(torch_fn))
                r.append(_seconds(runtime_fn))
            out[name] = {
                "teacher_ms": 1e3 * statistics.median(t),
                "runtime_ms": 1e3 * statistics.median(r),
                "speedup": statistics.median(t) / statistics.median(r),
            }
    return out


def _train(teacher, options: QuickstartOptions, out: Path, distill: bool):
    from .distill import DistillConfig, Trainer

    config = DistillConfig(
        teacher=None,
        data="synthetic",
        steps=options.steps,
        batch_size=options.batch_size,
        lr=options.lr,
        warmup=max(1, options.steps // 10),
        weight_decay=0.0,
        rule=options.rule,
        granularity=options.granularity,
        embedding=True,
        temperature=options.temperature,
        contrastive=1.0,
        logit=1.0 if distill else 0.0,
        feature=1.0 if distill else 0.0,
        out=str(out),
        save_every=options.steps,
        log_every=1,
        threads=options.threads,
        progress=options.progress,
        seed=1,
    )
    trainer = Trainer(config, teacher=teacher if distill else None, student=copy.deepcopy(teacher))
    start = time.perf_counter()
    history = trainer.run()
    return trainer, history, time.perf_counter() - start


def run_quickstart(options: QuickstartOptions) -> dict:
    import torch
    from safetensors.torch import save_file

    from .eval.report import json_safe
    from .eval.synthetic import evaluate_synthetic
    from .pack.export import save
    from .quant import TernaryConfig, ternarize_, ternary_stats
    from .runtime import load
    from .torch_clip.loading import BUNDLED, load_float_clip

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    if options.threads:
        torch.set_num_threads(options.threads)
    started = time.perf_counter()
    n = options.eval_images
    teacher = load_float_clip(BUNDLED)
    fp32_path = out / "teacher-fp32.safetensors"
    save_file({k: v.contiguous().clone() for k, v in teacher.state_dict().items()}, str(fp32_path))
    fp32_bytes = fp32_path.stat().st_size
    rows: dict[str, dict] = {}

    def add(name: str, model, extra: dict) -> None:
        print(f"evaluating {name} ...", flush=True)
        rows[name] = {**summary_metrics(evaluate_synthetic(model, n=n)), **extra}

    add("teacher (fp32)", teacher, {"ternary_fraction": 0.0, "sparsity": 0.0, "size_vs_fp32": 1.0})
    for rule in ("absmean", "twn"):
        ptq = ternarize_(
            copy.deepcopy(teacher), TernaryConfig(rule=rule, granularity=options.granularity, embedding=True)
        )
        s = ternary_stats(ptq)
        add(
            f"post-training ternary ({rule})",
            ptq,
            {
                "ternary_fraction": s["ternary_fraction"],
                "sparsity": s["sparsity"],
                "size_vs_fp32": 1 / s["compression_vs_fp32"],
            },
        )
    curves = {}
    students = {}
    for name, distill in (("QAT", False), ("QAT + KD", True)):
        trainer, history, seconds = _train(teacher, options, out / name.replace(" + ", "-").lower(), distill)
        s = trainer.stats()
        curves[name] = history
        students[name] = trainer
        add(
            name,
            trainer.student.eval(),
            {
                "ternary_fraction": s["ternary_fraction"],
                "sparsity": s["sparsity"],
                "size_vs_fp32": 1 / s["compression_vs_fp32"],
                "train_seconds": seconds,
                "seconds_per_step": seconds / options.steps,
            },
        )
    kd = students["QAT + KD"]
    files = {}
    for packing in ("base3", "2bit"):
        files[packing] = save(
            kd.student,
            out / f"student-{packing}.tclip",
            packing=packing,
            provenance={"teacher": "bundled", "data": "synthetic", "steps": options.steps, "method": "QAT+KD"},
        )
    s = kd.stats()
    runtimes = {}
    for mode in ("exact", "fast"):
        runtimes[mode] = load(files["base3"], mode=mode, threads=options.threads)
        add(
            f"QAT + KD, runtime {mode} (.tclip)",
            runtimes[mode],
            {
                "ternary_fraction": s["ternary_fraction"],
                "sparsity": s["sparsity"],
                "size_vs_fp32": files["base3"].stat().st_size / fp32_bytes,
            },
        )
    print("measuring latency (interleaved, median) ...", flush=True)
    latency = measure_latency(teacher, runtimes["fast"], options.latency_repeats)
    report = {
        "options": options.__dict__,
        "rows": rows,
        "files": {
            "teacher_fp32_bytes": fp32_bytes,
            **{f"student_{p}_bytes": f.stat().st_size for p, f in files.items()},
        },
        "latency_fast_runtime_vs_torch_teacher": latency,
        "kd_step_time_vs_qat": rows["QAT + KD"]["seconds_per_step"] / rows["QAT"]["seconds_per_step"],
        "curves": {
            name: [{k: h[k] for k in ("step", "loss", "contrastive", "teacher_cosine") if k in h} for h in hist]
            for name, hist in curves.items()
        },
        "seconds": None,
    }
    report["goals"] = check_goals(rows)
    report["seconds"] = time.perf_counter() - started
    (out / "report.json").write_text(json.dumps(json_safe(report), indent=2))
    (out / "report.md").write_text(markdown_report(report))
    plot_report(report, str(out / "report.png"))
    for f in (fp32_path,):
        f.unlink()  # 30 MB that only served to measure the fp32 size
    return report


def check_goals(rows: dict) -> dict:
    teacher, kd, qat = rows["teacher (fp32)"], rows["QAT + KD"], rows["QAT"]
    exact, fast = rows["QAT + KD, runtime exact (.tclip)"], rows["QAT + KD, runtime fast (.tclip)"]
    zs = kd["zs_mean"] / teacher["zs_mean"]
    r1 = kd["R@1_mean"] / teacher["R@1_mean"] if teacher["R@1_mean"] else float("nan")
    gap = 100 * max(abs(fast["zs_mean"] - exact["zs_mean"]), abs(fast["R@1_mean"] - exact["R@1_mean"]))
    return {
        "ternary_fraction": kd["ternary_fraction"],
        "zeroshot_retention": zs,
        "zeroshot_retention_met": zs >= GOALS["zeroshot_retention"],
        "retrieval_R@1_retention": r1,
        "retrieval_retention_met": r1 >= GOALS["retrieval_retention"],
        "kd_beats_qat": kd["zs_mean"] + kd["R@1_mean"] > qat["zs_mean"] + qat["R@1_mean"],
        "fast_vs_exact_points": gap,
        "fast_vs_exact_met": gap <= GOALS["fast_vs_exact_points"],
    }


COLUMNS = [
    ("zs_shape", "shape"),
    ("zs_colour", "colour"),
    ("zs_count", "count"),
    ("zs_size", "size"),
    ("zs_background", "bg"),
    ("zs_shape-seen", "shape (seen pairs)"),
    ("zs_mean", "zs mean"),
    ("i2t_R@1", "i2t R@1"),
    ("i2t_R@5", "i2t R@5"),
    ("t2i_R@1", "t2i R@1"),
    ("t2i_R@5", "t2i R@5"),
]


def markdown_table(rows: dict) -> str:
    head = "| model | " + " | ".join(label for _, label in COLUMNS) + " | ternary | sparsity | size vs fp32 |"
    lines = [head, "|---" * (len(COLUMNS) + 4) + "|"]
    for name, r in rows.items():
        cells = [f"{100 * r[k]:.1f}" for k, _ in COLUMNS]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {100 * r['ternary_fraction']:.2f}% | {100 * r['sparsity']:.0f}% | {r['size_vs_fp32']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def markdown_report(report: dict) -> str:
    g, lat = report["goals"], report["latency_fast_runtime_vs_torch_teacher"]
    kd, qat = report["rows"]["QAT + KD"], report["rows"]["QAT"]
    files = report["files"]
    mb = lambda b: f"{b / 1e6:.2f} MB"  # noqa: E731
    lines = [
        "# ternaryclip quickstart",
        "",
        f"Bundled teacher, synthetic data, {report['options']['steps']} steps of batch "
        f"{report['options']['batch_size']} per student; zero-shot top-1 on held-out (shape, colour) pairs and "
        "retrieval recall over every attribute combination, in %.",
        "",
        markdown_table(report["rows"]),
        "## Goals",
        "",
        f"- ternary parameters: {100 * g['ternary_fraction']:.2f}%",
        f"- zero-shot top-1 kept: {100 * g['zeroshot_retention']:.1f}% of the teacher's (goal 97%): "
        f"{'met' if g['zeroshot_retention_met'] else 'missed'}",
        f"- retrieval R@1 kept: {100 * g['retrieval_R@1_retention']:.1f}% (goal 95%): "
        f"{'met' if g['retrieval_retention_met'] else 'missed'}",
        f"- KD vs QAT alone (same steps): retrieval R@1 {100 * kd['R@1_mean']:.1f} vs {100 * qat['R@1_mean']:.1f}, "
        f"zero-shot top-1 {100 * kd['zs_mean']:.1f} vs {100 * qat['zs_mean']:.1f}; sum of both higher with KD: "
        f"{'yes' if g['kd_beats_qat'] else 'no'}",
        f"- fast mode vs exact mode: {g['fast_vs_exact_points']:.2f} points (goal <= 0.5): "
        f"{'met' if g['fast_vs_exact_met'] else 'missed'}",
        "",
        "## Files and speed",
        "",
        f"- teacher fp32 safetensors {mb(files['teacher_fp32_bytes'])}; student base3 "
        f"{mb(files['student_base3_bytes'])} ({files['teacher_fp32_bytes'] / files['student_base3_bytes']:.1f}x smaller), "
        f"2bit {mb(files['student_2bit_bytes'])} ({files['teacher_fp32_bytes'] / files['student_2bit_bytes']:.1f}x)",
        f"- QAT+KD step time vs QAT alone: {report['kd_step_time_vs_qat']:.2f}x",
        "- torch-free runtime (fast) vs torch fp32 teacher, same process, interleaved medians:",
        "",
        "| workload | teacher (ms) | runtime fast (ms) | speedup |",
        "|---|---|---|---|",
        *[f"| {k} | {v['teacher_ms']:.2f} | {v['runtime_ms']:.2f} | {v['speedup']:.2f}x |" for k, v in lat.items()],
        "",
        f"Total time: {report['seconds'] / 60:.1f} min.",
        "",
    ]
    return "\n".join(lines)


def plot_report(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss, ax_cos) = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    names = list(report["rows"])
    rows = [report["rows"][n] for n in names]
    y = np.arange(len(names))
    ax_acc.barh(y - 0.2, [100 * r["zs_mean"] for r in rows], 0.4, label="zero-shot top-1 (mean of tasks)")
    ax_acc.barh(y + 0.2, [100 * r["R@1_mean"] for r in rows], 0.4, label="retrieval R@1 (mean of directions)")
    ax_acc.set_yticks(y)
    ax_acc.set_yticklabels([f"{n}  [{r['size_vs_fp32']:.3f}x size]" for n, r in zip(names, rows)], fontsize=7)
    ax_acc.invert_yaxis()
    ax_acc.set_xlabel("%")
    ax_acc.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax_acc.set_title("accuracy (size relative to fp32)")
    for name, curve in report["curves"].items():
        steps = [c["step"] for c in curve]
        ax_loss.plot(steps, [c["contrastive"] for c in curve], label=f"{name}: contrastive")
        if any("teacher_cosine" in c for c in curve):
            ax_cos.plot(steps, [c["teacher_cosine"] for c in curve], label=name)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("student contrastive loss")
    ax_loss.legend(fontsize=8)
    ax_loss.set_title("training")
    ax_cos.set_xlabel("step")
    ax_cos.set_ylabel("cosine(student, teacher) embeddings")
    ax_cos.set_title("distillation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
