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

from ..choices import PACKINGS
from ..data.synthetic import BENCHMARK_TASKS
from .goals import check_goals
from .render import markdown_report, plot_report


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

    def __post_init__(self) -> None:
        """Refuse bad options before minutes of work, not after."""
        counts = {"steps": self.steps, "batch_size": self.batch_size, "latency_repeats": self.latency_repeats}
        counts |= {"eval_images": self.eval_images, "threads": self.threads or 1}
        for name, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"quickstart: {name} must be an integer >= 1, got {value!r}")
        if self.batch_size < 2:
            raise ValueError("quickstart: batch_size must be >= 2 (a contrastive batch needs negatives)")
        if not (self.lr > 0 and self.temperature > 0):
            raise ValueError(f"quickstart: lr and temperature must be > 0, got {self.lr}, {self.temperature}")


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

    from ..runtime.tokenizer import ClipTokenizer

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
    from ..distill import DistillConfig, Trainer

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


def _stats_columns(stats: dict, **extra) -> dict:
    return {
        "ternary_fraction": stats["ternary_fraction"],
        "sparsity": stats["sparsity"],
        "size_vs_fp32": 1 / stats["compression_vs_fp32"],
        **extra,
    }


class _Table:
    """Rows of the report, one per model, each evaluated on the same synthetic benchmark."""

    def __init__(self, eval_images: int):
        self.rows: dict[str, dict] = {}
        self.eval_images = eval_images

    def add(self, name: str, model, extra: dict) -> None:
        from ..eval.synthetic import evaluate_synthetic

        print(f"evaluating {name} ...", flush=True)
        self.rows[name] = {**summary_metrics(evaluate_synthetic(model, n=self.eval_images)), **extra}


def _fp32_bytes(teacher, out: Path) -> int:
    """Size of the teacher as an fp32 safetensors file (written, measured, removed)."""
    from safetensors.torch import save_file

    path = out / "teacher-fp32.safetensors"
    save_file({k: v.contiguous().clone() for k, v in teacher.state_dict().items()}, str(path))
    size = path.stat().st_size
    path.unlink()
    return size


def _post_training(teacher, options: QuickstartOptions, table: _Table) -> None:
    from ..quant import TernaryConfig, ternarize_, ternary_stats

    for rule in ("absmean", "twn"):
        config = TernaryConfig(rule=rule, granularity=options.granularity, embedding=True)
        ptq = ternarize_(copy.deepcopy(teacher), config)
        table.add(f"post-training ternary ({rule})", ptq, _stats_columns(ternary_stats(ptq)))


def _students(teacher, options: QuickstartOptions, out: Path, table: _Table) -> tuple[dict, dict]:
    """QAT alone and QAT + KD, the same steps; their trainers and loss curves."""
    trainers, curves = {}, {}
    for name, distill in (("QAT", False), ("QAT + KD", True)):
        trainer, history, seconds = _train(teacher, options, out / name.replace(" + ", "-").lower(), distill)
        trainers[name], curves[name] = trainer, history
        timing = {"train_seconds": seconds, "seconds_per_step": seconds / options.steps}
        table.add(name, trainer.student.eval(), _stats_columns(trainer.stats(), **timing))
    return trainers, curves


def _pack_and_run(kd, options: QuickstartOptions, out: Path, fp32_bytes: int, table: _Table) -> tuple[dict, object]:
    """The distilled student as .tclip (base3, 2bit), run by the runtime in both modes; files and fast model."""
    from ..pack.export import save
    from ..runtime import load

    provenance = {"teacher": "bundled", "data": "synthetic", "steps": options.steps, "method": "QAT+KD"}
    files = {
        packing: save(kd.student, out / f"student-{packing}.tclip", packing=packing, provenance=provenance)
        for packing in PACKINGS
    }
    runtimes = {}
    for mode in ("exact", "fast"):
        runtimes[mode] = load(files["base3"], mode=mode, threads=options.threads)
        size = {"size_vs_fp32": files["base3"].stat().st_size / fp32_bytes}
        table.add(f"QAT + KD, runtime {mode} (.tclip)", runtimes[mode], {**_stats_columns(kd.stats()), **size})
    return files, runtimes["fast"]


def run_quickstart(options: QuickstartOptions) -> dict:
    """Every row of the report, its goals, and report.json / report.md / report.png in ``options.out``."""
    import torch

    from ..eval.report import json_safe
    from ..torch_clip.loading import BUNDLED, load_float_clip

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    if options.threads:
        torch.set_num_threads(options.threads)
    started = time.perf_counter()
    teacher = load_float_clip(BUNDLED)
    fp32_bytes = _fp32_bytes(teacher, out)
    table = _Table(options.eval_images)
    table.add("teacher (fp32)", teacher, {"ternary_fraction": 0.0, "sparsity": 0.0, "size_vs_fp32": 1.0})
    _post_training(teacher, options, table)
    trainers, curves = _students(teacher, options, out, table)
    files, fast = _pack_and_run(trainers["QAT + KD"], options, out, fp32_bytes, table)
    print("measuring latency (interleaved, median) ...", flush=True)
    rows = table.rows
    report = {
        "options": options.__dict__,
        "rows": rows,
        "files": {
            "teacher_fp32_bytes": fp32_bytes,
            **{f"student_{p}_bytes": f.stat().st_size for p, f in files.items()},
        },
        "latency_fast_runtime_vs_torch_teacher": measure_latency(teacher, fast, options.latency_repeats),
        "kd_step_time_vs_qat": rows["QAT + KD"]["seconds_per_step"] / rows["QAT"]["seconds_per_step"],
        "curves": {
            name: [{k: h[k] for k in ("step", "loss", "contrastive", "teacher_cosine") if k in h} for h in hist]
            for name, hist in curves.items()
        },
        "goals": check_goals(rows),
        "seconds": time.perf_counter() - started,
    }
    (out / "report.json").write_text(json.dumps(json_safe(report), indent=2))
    (out / "report.md").write_text(markdown_report(report))
    plot_report(report, str(out / "report.png"))
    return report
