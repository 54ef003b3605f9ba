"""The bundled benchmark: zero-shot tasks on held-out (shape, colour) pairs and retrieval, synthetic world.

Zero-shot: shape, colour, count, size and background on images of the held-out pairs only (the
teacher never saw those combinations), and shape on new images of seen pairs (``shape-seen``).
Retrieval: every attribute tuple of the world once (seen and held-out pairs, so no two images share
a description), two captions each, recall@1/5/10 both ways.  The sets come from
:func:`~ternaryclip.eval.datasets.synthetic_sets` and run through the same code as every other data set.
"""

from __future__ import annotations

import numpy as np

from ..data.synthetic import BENCHMARK_TASKS
from .datasets import synthetic_sets
from .encoders import as_encoder
from .run import LoadedModel, evaluate_set


def evaluate_synthetic(model, quick: bool = False, seed: int = 0, n: int | None = None) -> dict:
    """Flat metrics: ``zeroshot/<task>/acc1`` ..., ``retrieval/<metric>``; ``n`` images a zero-shot task
    (600, or 200 when ``quick``).  ``model``: a runtime ``TernaryCLIP`` or a torch CLIP."""
    encoder = as_encoder(model)
    loaded = LoadedModel(encoder, "model", "synthetic")
    out: dict[str, float] = {}
    for data in synthetic_sets(None, encoder.arch.vision.image_size, seed, n or (200 if quick else 600)):
        task = data.name.partition("/")[2]
        prefix = "retrieval" if task == "retrieval" else f"zeroshot/{task}"
        out.update({f"{prefix}/{k}": v for k, v in evaluate_set(loaded, data, progress=False)["metrics"].items()})
    out["zeroshot/mean_acc1"] = float(np.mean([out[f"zeroshot/{t}/acc1"] for t in BENCHMARK_TASKS]))
    return out
