"""The calibration inputs the post-training int8 peers see (NNCF for OpenVINO, ONNX Runtime's static
quantization): the same 32 items for both, one item each, like the bench's own inputs."""

from __future__ import annotations

import numpy as np

CALIBRATION_SIZE = 32


def calibration_inputs(tower: str, arch) -> list[np.ndarray]:
    """32 inputs of one item: random pixels, or caption-like ids (start token, 3-14 words, end token)."""
    rng = np.random.default_rng(1)
    if tower == "image":
        size = arch.vision.image_size
        return [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(CALIBRATION_SIZE)]
    context, vocab = arch.text.context_length, arch.text.vocab_size
    items = []
    for i in range(CALIBRATION_SIZE):
        ids = np.zeros((1, context), dtype=np.int64)
        n = 3 + i % 12
        ids[0, : n + 2] = [vocab - 2, *rng.integers(1, vocab - 2, n), vocab - 1]
        items.append(ids)
    return items
