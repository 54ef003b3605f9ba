"""The quickstart's goals: what the distilled ternary student must keep of the teacher, and fast vs exact."""

from __future__ import annotations

GOALS = {"zeroshot_retention": 0.97, "retrieval_retention": 0.95, "fast_vs_exact_points": 0.5}

# The quickstart trains one seed; how far apart seeds land, from the seeded ablation at the quickstart's
# recipe and budget (benchmarks/distill_seeds.py, 200 steps of batch 64, seeds 0-2, CPU; the table is
# benchmarks/results/distill_seeds200.md).  Points; "sd" = standard deviation over seeds, "kd_minus_qat" = the
# paired difference with its 95% Student-t interval.
SEEDED_200_STEPS = {
    "seeds": 3,
    "sd": {"QAT": {"zs": 0.6, "R@1": 0.7}, "QAT + KD": {"zs": 0.6, "R@1": 0.2}},
    "kd_minus_qat": {"zs": (-1.9, -4.8, 1.0), "R@1": (1.1, -0.4, 2.5)},
    "table": "docs/distillation.md#seeded-ablation",
}


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
