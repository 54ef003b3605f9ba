"""Data that needs no files: the bundled synthetic image-caption world (numpy only, no torch)."""

from .synthetic import BENCHMARK_TASKS, ZERO_SHOT_TASKS, SyntheticBatch, SyntheticWorld, heldout_pairs

__all__ = ["BENCHMARK_TASKS", "SyntheticBatch", "SyntheticWorld", "ZERO_SHOT_TASKS", "heldout_pairs"]
