"""Tables and charts from result files: ours (``ternaryclip eval --json``) and CLIP_benchmark's.

A CLIP_benchmark file is one result ``{"dataset", "model", "pretrained", "task", "metrics"}``; ours
holds ``{"results": [...]}``.  Each (data set, model) cell shows the headline metric: ``acc1`` for
classification (``mean_average_precision`` for multi-label), the mean of the two recall@1 for
retrieval.
"""

from __future__ import annotations

import json
import math
import os


def json_safe(value):
    """NaN and inf (acc5 with < 5 classes) become null: strict JSON readers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def skipped_lines(results: list[dict]) -> list[str]:
    """One line per data set that lost images (several models meet the same files: said once)."""
    lines, seen = [], set()
    for r in results:
        counts = {k: v for k, v in (r.get("skipped") or {}).items() if v}
        if counts and r["dataset"] not in seen:
            seen.add(r["dataset"])
            lines.append(f"{r['dataset']}: skipped {sum(counts.values())} images {counts}")
    return lines


def headline(result: dict) -> tuple[str, float]:
    m = result.get("metrics", {})
    if "acc1" in m:
        return "acc1", m["acc1"]
    if "mean_average_precision" in m:
        return "mAP", m["mean_average_precision"]
    if "image_retrieval_recall@1" in m and "text_retrieval_recall@1" in m:
        return "R@1", 0.5 * (m["image_retrieval_recall@1"] + m["text_retrieval_recall@1"])
    key = next(iter(m), None)
    return (key or "-"), (m[key] if key else float("nan"))


def model_label(result: dict) -> str:
    model, pretrained = str(result.get("model", "?")), str(result.get("pretrained", ""))
    if pretrained in ("", "tclip", "torch") or pretrained == model:
        return model
    return f"{model} / {os.path.basename(pretrained)}"


def read_results(paths: list[str]) -> list[dict]:
    results = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable JSON result file ({err})") from err
        items = (
            data.get("results", [])
            if isinstance(data, dict) and "results" in data
            else (data if isinstance(data, list) else [data])
        )
        for item in items:
            if not isinstance(item, dict) or "metrics" not in item or "dataset" not in item:
                raise ValueError(
                    f"{path}: expected CLIP_benchmark results (dataset, model, metrics) or "
                    "ternaryclip eval --json output"
                )
            results.append(item)
    if not results:
        raise ValueError("no results in the given files")
    return results


def table(results: list[dict]) -> tuple[list[str], list[str], dict]:
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    models = list(dict.fromkeys(model_label(r) for r in results))
    cells = {(r["dataset"], model_label(r)): headline(r) for r in results}
    return datasets, models, cells


def markdown(results: list[dict], reference: str | None = None) -> str:
    """A data set x model table; with ``reference`` (a model label), each cell also shows the ratio to it."""
    datasets, models, cells = table(results)
    reference = reference if reference in models else None
    lines = ["| data set | metric | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for d in datasets:
        metric = next((cells[(d, m)][0] for m in models if (d, m) in cells), "-")
        row = []
        for m in models:
            if (d, m) not in cells:
                row.append("-")
                continue
            value = cells[(d, m)][1]
            text = f"{100 * value:.1f}"
            ref = cells.get((d, reference), (None, None))[1] if reference else None
            if ref and m != reference and math.isfinite(value):
                text += f" ({value / ref:.1%})"
            row.append(text)
        lines.append(f"| {d} | {metric} | " + " | ".join(row) + " |")
    means = []
    for m in models:
        values = [cells[(d, m)][1] for d in datasets if (d, m) in cells and math.isfinite(cells[(d, m)][1])]
        means.append(f"{100 * sum(values) / len(values):.1f}" if values else "-")
    lines.append("| **mean** | | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: str) -> str:
    """Grouped bars (data set x model); a second panel of mean score vs file size when sizes are known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets, models, cells = table(results)
    sizes = {}
    for r in results:
        if r.get("file_bytes"):
            sizes[model_label(r)] = r["file_bytes"]
    panels = 2 if len(sizes) >= 2 else 1
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(max(6, 1.2 * len(datasets) * max(1, len(models)) / 2) + 4 * (panels - 1), 4.2),
        squeeze=False,
    )
    ax = axes[0][0]
    width = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        values = [100 * cells[(d, m)][1] if (d, m) in cells else 0.0 for d in datasets]
        ax.bar([i + j * width for i in range(len(datasets))], values, width, label=m)
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(datasets))])
    ax.set_xticklabels(datasets, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score (%): acc1, or mean R@1 for retrieval")
    ax.legend(fontsize=7)
    ax.set_title("per data set")
    if panels == 2:
        ax2 = axes[0][1]
        for m, size in sizes.items():
            values = [cells[(d, m)][1] for d in datasets if (d, m) in cells and math.isfinite(cells[(d, m)][1])]
            ax2.scatter(size / 1e6, 100 * sum(values) / len(values), s=40)
            ax2.annotate(m, (size / 1e6, 100 * sum(values) / len(values)), fontsize=7)
        ax2.set_xscale("log")
        ax2.set_xlabel("file size (MB, log)")
        ax2.set_ylabel("mean score (%)")
        ax2.set_title("score vs size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
