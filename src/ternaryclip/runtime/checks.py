"""Checks of what a caller hands the runtime, done before any buffer is sized or kernel runs."""

from __future__ import annotations

import numpy as np

from .. import kernels


def check_threads(threads) -> int | None:
    """``None`` (the default: ``OMP_NUM_THREADS`` or the cores) or an int in ``[1, kernels.max_threads()]``;
    ValueError otherwise.  A huge count would start a thread each: refused here instead.
    """
    if threads is None:
        return None
    cap = kernels.max_threads()
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or not 1 <= threads <= cap:
        raise ValueError(
            f"threads must be an integer between 1 and {cap} (4 x the cores, at most 1024), got {threads!r}"
        )
    return int(threads)


def check_batch_size(batch_size) -> int:
    """A positive int (a batch of zero or fewer images would silently encode nothing)."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def check_finite_pixels(pixels: np.ndarray) -> np.ndarray:
    """Refuse NaN or infinite pixels: they give NaN embeddings (exact) or silently changed ones (fast)."""
    if not np.isfinite(pixels).all():
        raise ValueError("the image array holds NaN or infinite values")
    return pixels
