"""Markdown and PNGs from the results of scripts/gpu/run_all.sh (a folder with ``results.tar.gz``).

    python benchmarks/gpu_report.py DIR --out benchmarks/gpu

Writes ``OUT/gpu_report.md`` (step-time table, teacher recipes, the seeded ablation's tables),
``OUT/teacher_curves.png`` (held-out shape zero-shot over training, per recipe), and through
benchmarks/distill_stats.py ``OUT/distill_seeds.{md,json,png}``; the raw JSON goes to ``OUT/raw/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import distill_stats  # noqa: E402


def unpack(folder: Path, out: Path) -> Path:
    """The ``results`` folder: extracted from ``results.tar.gz`` into ``OUT/raw`` (or used in place)."""
    archive = folder / "results.tar.gz"
    if not archive.is_file():
        if (folder / "results").is_dir():
            return folder / "results"
        raise SystemExit(f"{folder} holds neither results.tar.gz nor results/")
    raw = out / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(raw, filter="data")
    return raw / "results"


def step_section(results: Path) -> list[str]:
    path = results / "a_step.json"
    if not path.is_file():
        return ["Step benchmark: no result (see logs/a_step.log).", ""]
    data = json.loads(path.read_text())
    lines = [
        f"Step time, {data['arch']} student copied from a random {data['arch']} teacher, {data['device']}, "
        f"torch {data['torch']}; one cached 224 px batch, steps interleaved, median.",
        "",
        "| setting | batch | variant | s/step | images/s | vs float | step peak GiB | weights+grads+AdamW GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in data["settings"]:
        if "seconds_per_step" not in s:
            lines.append(f"| {s['setting']} | - | {s.get('error') or 'out of memory'} | | | | | |")
            continue
        for v, sec in s["seconds_per_step"].items():
            lines.append(
                f"| {s['setting']} | {s['batch']} | {v} | {sec:.3f} | {s['images_per_s'][v]:.0f} | "
                f"{s['ratio_vs_float'][v]:.2f}x | {s['step_peak_gib'].get(v, float('nan')):.1f} | "
                f"{s['static_gib'][v]:.1f} |"
            )
    cli = results / "a_cli_metrics.jsonl"
    if cli.is_file():
        rows = [json.loads(line) for line in cli.read_text().splitlines() if line.strip()][3:]
        if rows:
            sps = statistics.median(r["samples_per_s"] for r in rows)
            lines += [
                "",
                f"`ternaryclip distill` end to end (fp16, GradScaler, synthetic 224 px rendered on the CPU): median "
                f"{sps:.0f} images/s over steps 4-{rows[-1]['step']}, last loss {rows[-1]['loss']:.3f}.",
            ]
    return lines + [""]


def teacher_section(results: Path, out: Path) -> list[str]:
    runs = sorted(results.glob("teacher-*/curve.json"))
    if not runs:
        return ["Teacher recipes: no result.", ""]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "| recipe | steps | best held-out shape | at step | zero-shot mean there | fp16 MB |",
        "|---|---|---|---|---|---|",
    ]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for path in runs:
        name = path.parent.name.removeprefix("teacher-")
        curve = json.loads(path.read_text())
        best = max(curve, key=lambda p: p["zeroshot/shape/acc1"])
        summary = path.parent / "summary.json"
        mb = json.loads(summary.read_text()).get("best_mb", "-") if summary.is_file() else "-"
        lines.append(
            f"| {name} | {curve[-1]['step']} | {100 * best['zeroshot/shape/acc1']:.1f} | {best['step']} | "
            f"{100 * best['zeroshot/mean_acc1']:.1f} | {mb} |"
        )
        ax.plot([p["step"] for p in curve], [100 * p["zeroshot/shape/acc1"] for p in curve], marker=".", label=name)
    ax.axhline(25, color="grey", ls=":", label="chance")
    ax.axhline(60, color="#c44e52", ls="--", label="goal")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out shape zero-shot top-1 (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "teacher_curves.png", dpi=110)
    plt.close(fig)
    return ["Teacher recipes (held-out (shape, colour) pairs, quick evaluation, 200 images a task):", "", *lines, ""]


def seeds_section(results: Path, out: Path) -> list[str]:
    files = sorted(str(p) for p in results.glob("c_seeds_*.json"))
    if not files:
        return ["Seeded ablation: no result.", ""]
    teacher, runs, settings = distill_stats.load_runs(files)
    summary = distill_stats.summarize(teacher, runs)
    (out / "distill_seeds.json").write_text(json.dumps({"settings": settings, **summary}, indent=1))
    table = distill_stats.markdown(summary, settings)
    (out / "distill_seeds.md").write_text(table)
    distill_stats.plot(summary, str(out / "distill_seeds.png"))
    return [table, "![seeded ablation](distill_seeds.png)", ""]


def merge_teacher(folder: Path, out: Path) -> Path | None:
    """The best teacher's two weight files (each under the 16 MB a result file may have) as one."""
    parts = [folder / f"teacher-best-{p}.safetensors" for p in ("embedding", "rest")]
    if not all(p.is_file() for p in parts):
        return None
    from safetensors.numpy import load_file, save_file

    state = {**load_file(str(parts[0])), **load_file(str(parts[1]))}
    target = out / "teacher-best.safetensors"
    save_file(state, str(target))
    if (folder / "teacher-best-config.json").resolve() != (out / "teacher-best-config.json").resolve():
        shutil.copy(folder / "teacher-best-config.json", out / "teacher-best-config.json")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the folder run_all.sh wrote ($OUT)")
    parser.add_argument("--out", default="benchmarks/gpu")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = unpack(Path(args.folder), out)
    lines = ["## GPU runs", ""]
    lines += ["### Training step time (issue 19.1)", "", *step_section(results)]
    lines += ["### Teacher recipes (issue 19.2)", "", *teacher_section(results, out)]
    lines += ["![teacher curves](teacher_curves.png)", ""]
    lines += ["### Seeded ablation (issue 18)", "", *seeds_section(results, out)]
    teacher = merge_teacher(Path(args.folder), out)
    if teacher:
        lines += [
            f"Best teacher: `{teacher}` ({teacher.stat().st_size / 1e6:.1f} MB fp16) with its config beside it.",
            "",
        ]
    (out / "gpu_report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
