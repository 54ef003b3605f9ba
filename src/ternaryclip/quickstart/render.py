"""The quickstart's report for people: a markdown table and summary, and a PNG of accuracy and training."""

from __future__ import annotations

import numpy as np

from .goals import SEEDED_200_STEPS

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


def seed_note() -> str:
    """One run is one seed: how much seeds move the two students, from the seeded ablation."""
    s = SEEDED_200_STEPS
    sd, diff = s["sd"], s["kd_minus_qat"]
    cell = lambda m: f"{diff[m][0]:+.1f} [{diff[m][1]:+.1f}, {diff[m][2]:+.1f}]"  # noqa: E731
    return (
        f"(one seed: over {s['seeds']} seeds at 200 steps the standard deviation was {sd['QAT']['zs']:.1f} / "
        f"{sd['QAT']['R@1']:.1f} points (zero-shot / R@1) for QAT and {sd['QAT + KD']['zs']:.1f} / "
        f"{sd['QAT + KD']['R@1']:.1f} with KD, and KD - QAT paired by seed was {cell('zs')} zero-shot and "
        f"{cell('R@1')} R@1 (95% intervals): a one-seed gap of a point or two is noise; see {s['table']})"
    )


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
        f"  {seed_note()}",
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
