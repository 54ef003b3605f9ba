"""The seeded ablation's statistics against hand-computed Student-t intervals."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from distill_stats import markdown, paired_difference, summarize, t_interval  # noqa: E402


def test_t_interval_matches_hand_computation():
    # mean 2, sample sd 1, n 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    s = t_interval([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0)
    assert s["low"] == pytest.approx(2.0 - 2.484138, abs=1e-5)
    assert s["high"] == pytest.approx(2.0 + 2.484138, abs=1e-5)


def test_t_interval_of_one_value_has_no_width():
    s = t_interval([0.5])
    assert s["mean"] == 0.5 and math.isnan(s["low"]) and math.isnan(s["high"])


def test_paired_difference_pairs_by_seed():
    # differences 0.1, 0.3 over the shared seeds 0, 1 (seed 2 has no partner): mean 0.2, sd 0.141421,
    # half-width t(0.975, 1) * 0.141421 / sqrt(2) = 12.706205 * 0.1 = 1.270620
    d = paired_difference({0: 0.6, 1: 0.8, 2: 0.9}, {0: 0.5, 1: 0.5})
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.2)
    assert d["high"] - d["mean"] == pytest.approx(1.2706205, abs=1e-5)


def test_summarize_retention_and_table():
    metrics = ("zs_mean", "zs_shape", "zs_shape-seen", "R@1_mean")
    teacher = dict.fromkeys(metrics, 0.8)
    runs = [
        {"arm": arm, "seed": s, **dict.fromkeys(metrics, v)}
        for arm, s, v in [("QAT", 0, 0.4), ("QAT", 1, 0.6), ("QAT+KD", 0, 0.6), ("QAT+KD", 1, 0.6)]
    ]
    summary = summarize(teacher, runs)
    assert summary["arms"]["QAT"]["zs_mean"]["retention"] == pytest.approx(0.5 / 0.8)
    assert summary["paired"]["QAT+KD - QAT"]["R@1_mean"]["mean"] == pytest.approx(0.1)
    table = markdown(summary, {"device": "cpu", "steps": 4, "batch_size": 8})
    assert "| QAT+KD - QAT | 2 |" in table and "75.0%" in table
