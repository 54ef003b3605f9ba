"""What ``ternaryclip bench`` prints and writes: the table, the JSON report and the chart."""

from __future__ import annotations

import json
from pathlib import Path


def format_table(report: dict) -> str:
    engines = report["engines"]
    keys = [k for k in next(iter(engines.values())) if k.startswith(("image_b", "text_b")) and "cosine" not in k]
    lines = [f"{'engine':<20}" + "".join(f"{k:>20}" for k in keys) + f"{'peak RSS':>12}{'file':>10}{'cos img/txt':>14}"]
    for name, r in engines.items():
        cells = []
        for k in keys:
            speed = r.get("speedup_vs_fp32", {}).get(k)
            cells.append(f"{r[k]['median_s'] * 1e3:9.1f} ms" + (f" {speed:5.2f}x" if speed else "      "))
        cos = f"{r.get('image_cosine_vs_fp32', 1):.4f}/{r.get('text_cosine_vs_fp32', 1):.4f}"
        lines.append(
            f"{name:<20}"
            + "".join(f"{c:>20}" for c in cells)
            + f"{r['peak_rss_bytes'] / 1e6:9.0f} MB{r['file_bytes'] / 1e6:7.1f} MB{cos:>14}"
        )
    lines.append(
        "(median latency of interleaved repeats, the order rotated each repeat; speed ratio vs open_clip fp32; "
        "absolute times are machine-bound)"
    )
    return "\n".join(lines)


def write_json(report: dict, path: str) -> None:
    Path(path).write_text(json.dumps(report, indent=1))


def plot(report: dict, path: str) -> None:
    """Bars of speed ratio vs open_clip fp32 per workload, and peak memory / file size per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = report["engines"]
    workloads = [k for k in next(iter(engines.values())).get("speedup_vs_fp32", {})]
    many = len(engines) > 5  # eight engines: wider, labels turned so that they do not overlap
    figsize = (16, 5.5) if many else (13, 4.5)
    fig, (ax_speed, ax_mem) = plt.subplots(
        1, 2, figsize=figsize, gridspec_kw={"width_ratios": [2.4 if many else 2, 1.4]}
    )
    width = 0.8 / max(len(engines), 1)
    for e, (name, r) in enumerate(engines.items()):
        xs = [i + e * width for i in range(len(workloads))]
        bars = ax_speed.bar(xs, [r["speedup_vs_fp32"][w] for w in workloads], width, label=name)
        ax_speed.bar_label(bars, fmt="%.2fx", fontsize=6 if many else 7, rotation=90 if many else 0, padding=2)
    ax_speed.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax_speed.set_xticks([i + width * (len(engines) - 1) / 2 for i in range(len(workloads))], workloads)
    ax_speed.set_ylabel("speed vs open_clip fp32 (higher is better)")
    ax_speed.set_title(f"{report['arch']}, {report['threads']} threads")
    ax_speed.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(engines), 4))
    top = max(r["speedup_vs_fp32"][w] for r in engines.values() for w in workloads)
    ax_speed.set_ylim(0, top * (1.25 if many else 1.15))
    names = list(engines)
    ax_mem.bar(
        [i - 0.2 for i in range(len(names))],
        [engines[n]["peak_rss_bytes"] / 1e6 for n in names],
        0.4,
        label="peak RSS (MB)",
    )
    ax_mem.bar(
        [i + 0.2 for i in range(len(names))], [engines[n]["file_bytes"] / 1e6 for n in names], 0.4, label="file (MB)"
    )
    ax_mem.set_xticks(
        range(len(names)), [n.replace("_", "\n", 1) for n in names], fontsize=7, rotation=45 if many else 0
    )
    ax_mem.set_yscale("log")
    ax_mem.set_title("memory and size (log scale)")
    ax_mem.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
