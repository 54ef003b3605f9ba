"""Data that needs no files: the bundled synthetic image-caption world (numpy only, no torch)."""

from .synthetic import SyntheticBatch, SyntheticWorld, ZERO_SHOT_TASKS, heldout_pairs

__all__ = ["SyntheticBatch", "SyntheticWorld", "ZERO_SHOT_TASKS", "heldout_pairs"]
