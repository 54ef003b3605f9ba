"""Benchmarks users can rerun on their own CPU: ``ternaryclip bench``."""

from .run import format_table, run_bench

__all__ = ["format_table", "run_bench"]
