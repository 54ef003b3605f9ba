"""Means, 95% intervals and paired differences of the seeded ablation (benchmarks/distill_seeds.py).

    python benchmarks/distill_stats.py seeds-*.json --out benchmarks/ --name distill_seeds

Reads one or more JSON files (shards of one run), and writes ``NAME.md`` (a table: mean and 95%
Student-t interval per arm and metric, retention vs the teacher, the paired differences with their
intervals), ``NAME.json`` and ``NAME.png`` (bars with interval whiskers).  Paired differences pair
runs by seed: the same seed means the same data order, so the difference removes that noise.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

METRICS = ("zs_mean", "zs_shape", "zs_shape-seen", "R@1_mean")
# Table and plot order (shards finish in any order): PTQ, the copy of the teacher, the other student.
ARM_ORDER = [
    "PTQ absmean",
    "PTQ twn",
    "QAT",
    "QAT+KD",
    "hard QAT",
    "hard QAT+KD",
    "xarch no teacher",
    "xarch KD",
    "xarch KD no contrastive",
]
PAIRS = (
    ("QAT+KD", "QAT"),
    ("hard QAT+KD", "hard QAT"),
    ("xarch KD", "xarch no teacher"),
    ("xarch KD", "xarch KD no contrastive"),
)


def t_interval(values: list[float], confidence: float = 0.95) -> dict:
    """Mean, sample standard deviation and the Student-t interval of the mean (NaN width for one value)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "low": math.nan, "high": math.nan}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def paired_difference(a: dict[int, float], b: dict[int, float], confidence: float = 0.95) -> dict:
    """Interval of ``a - b`` over the seeds both have (``{seed: value}`` each)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"n": 0, "mean": math.nan, "std": math.nan, "low": math.nan, "high": math.nan}
    return t_interval([a[s] - b[s] for s in seeds], confidence)


def load_runs(paths: list[str]) -> tuple[dict, list[dict], dict]:
    """Teacher metrics, every run of every shard, and the settings of the first file."""
    teacher, runs, settings = None, [], {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        teacher = teacher or data["teacher"]
        settings = settings or {**data.get("settings", {}), "device": data.get("device")}
        runs.extend(data["runs"])
    if teacher is None:
        raise SystemExit("no result files given")
    return teacher, runs, settings


def summarize(teacher: dict, runs: list[dict]) -> dict:
    """Per arm and metric: interval and retention; per pair and metric: the paired difference."""
    arms: dict[str, dict[str, dict[int, float]]] = {}
    for run in sorted(runs, key=lambda r: ARM_ORDER.index(r["arm"]) if r["arm"] in ARM_ORDER else len(ARM_ORDER)):
        for metric in METRICS:
            arms.setdefault(run["arm"], {}).setdefault(metric, {})[run["seed"]] = run[metric]
    table = {
        arm: {
            m: {**t_interval(list(by_seed.values())), "retention": _retention(by_seed, teacher[m])}
            for m, by_seed in metrics.items()
        }
        for arm, metrics in arms.items()
    }
    pairs = {
        f"{a} - {b}": {m: paired_difference(arms[a][m], arms[b][m]) for m in METRICS}
        for a, b in PAIRS
        if a in arms and b in arms
    }
    return {"teacher": {m: teacher[m] for m in METRICS}, "arms": table, "paired": pairs}


def _retention(by_seed: dict[int, float], reference: float) -> float:
    return sum(by_seed.values()) / len(by_seed) / reference if reference else math.nan


def _cell(s: dict, scale: float = 100.0) -> str:
    if s["n"] < 2:
        return f"{scale * s['mean']:.1f}"
    return f"{scale * s['mean']:.1f} [{scale * s['low']:.1f}, {scale * s['high']:.1f}]"


def markdown(summary: dict, settings: dict) -> str:
    head = "| arm | n | " + " | ".join(f"{m} (95% CI)" for m in METRICS) + " | zs retention | R@1 retention |"
    lines = [
        f"Seeded ablation on the bundled world ({settings.get('device')}; {settings.get('steps')} steps, "
        f"batch {settings.get('batch_size')}; percent, mean and 95% Student-t interval over seeds).",
        "",
        head,
        "|" + "---|" * (len(METRICS) + 4),
        "| teacher | - | " + " | ".join(f"{100 * v:.1f}" for v in summary["teacher"].values()) + " | 100% | 100% |",
    ]
    for arm, row in summary["arms"].items():
        n = row[METRICS[0]]["n"]
        cells = " | ".join(_cell(row[m]) for m in METRICS)
        lines.append(
            f"| {arm} | {n} | {cells} | {row['zs_mean']['retention']:.1%} | {row['R@1_mean']['retention']:.1%} |"
        )
    lines += ["", "Paired differences (same seed = same data order), percentage points, 95% interval:", ""]
    lines += ["| difference | n | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 2)]
    for name, row in summary["paired"].items():
        lines.append(f"| {name} | {row[METRICS[0]]['n']} | " + " | ".join(_cell(row[m]) for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary["arms"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, title in zip(axes, ("zs_mean", "R@1_mean"), ("zero-shot top-1 (mean of tasks)", "retrieval R@1")):
        stats = [summary["arms"][a][metric] for a in arms]
        means = [100 * s["mean"] for s in stats]
        err = [
            [100 * (s["mean"] - s["low"]) if s["n"] > 1 else 0 for s in stats],
            [100 * (s["high"] - s["mean"]) if s["n"] > 1 else 0 for s in stats],
        ]
        ax.bar(range(len(arms)), means, yerr=err, capsize=4, color="#4c72b0")
        ax.axhline(100 * summary["teacher"][metric], color="#c44e52", ls="--", label="teacher")
        ax.set_xticks(range(len(arms)), arms, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{title}, 95% interval over seeds")
        ax.set_ylabel("%")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="+", help="result files of distill_seeds.py (shards are merged)")
    parser.add_argument("--out", default=".")
    parser.add_argument("--name", default="distill_seeds")
    args = parser.parse_args()
    teacher, runs, settings = load_runs(args.json)
    summary = summarize(teacher, runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({"settings": settings, **summary}, indent=1))
    (out / f"{args.name}.md").write_text(markdown(summary, settings))
    plot(summary, str(out / f"{args.name}.png"))
    print(markdown(summary, settings))


if __name__ == "__main__":
    main()
