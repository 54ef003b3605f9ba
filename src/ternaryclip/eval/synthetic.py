"""The bundled benchmark: zero-shot tasks on held-out (shape, colour) pairs and retrieval, synthetic world.

Zero-shot: shape, colour, count, size and background on images of the held-out pairs only (the
teacher never saw those combinations), and shape on new images of seen pairs (``shape-seen``).  Retrieval: every attribute tuple of the world once (seen and
held-out pairs, so no two images share a description), two captions each, recall@1/5/10 both ways.
"""

from __future__ import annotations

import numpy as np

from ..data.synthetic import BENCHMARK_TASKS, SyntheticWorld
from .encoders import as_encoder
from .metrics import class_embeddings, classification_metrics, retrieval_metrics

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize_pixels(images: np.ndarray, mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """uint8 ``[B, H, W, 3]`` -> float32 ``[B, 3, H, W]`` normalized as the model's preprocessing does."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]


def zero_shot(encoder, images: np.ndarray, target: np.ndarray, classnames, templates) -> dict:
    prompts = [t.format(c=c) for c in classnames for t in templates]
    text = encoder.encode_text(prompts).reshape(len(classnames), len(templates), -1)
    return classification_metrics(encoder.encode_image(normalize_pixels(images)), class_embeddings(text), target)


def retrieval(encoder, images: np.ndarray, captions: list[list[str]]) -> dict:
    flat = [c for cs in captions for c in cs]
    index = np.array([i for i, cs in enumerate(captions) for _ in cs])
    return retrieval_metrics(encoder.encode_image(normalize_pixels(images)), encoder.encode_text(flat), index)


def evaluate_synthetic(model, quick: bool = False, image_size: int | None = None, seed: int = 0,
                       n: int | None = None) -> dict:
    """Flat metrics: ``zeroshot/<task>/acc1`` ..., ``retrieval/<metric>``; ``n`` images a zero-shot task
    (600, or 200 when ``quick``)."""
    encoder = as_encoder(model)
    size = image_size or _image_size(encoder)
    world = SyntheticWorld(image_size=size)
    out: dict[str, float] = {}
    for task in BENCHMARK_TASKS:
        images, target, classnames, templates = world.zero_shot_set(task, n=n or (200 if quick else 600), seed=seed)
        for k, v in zero_shot(encoder, images, target, classnames, templates).items():
            out[f"zeroshot/{task}/{k}"] = v
    images, captions = _retrieval_set(world, seed)
    out.update({f"retrieval/{k}": v for k, v in retrieval(encoder, images, captions).items()})
    out["zeroshot/mean_acc1"] = float(np.mean([out[f"zeroshot/{t}/acc1"] for t in BENCHMARK_TASKS]))
    return out


def _retrieval_set(world: SyntheticWorld, seed: int):
    seen_images, seen_caps = world.retrieval_set("seen", seed=seed)
    held_images, held_caps = world.retrieval_set("heldout", seed=seed)
    return np.concatenate([seen_images, held_images]), seen_caps + held_caps


def _image_size(encoder) -> int:
    arch = getattr(encoder, "arch", None)
    if arch is None:
        raise ValueError("cannot tell the model's image size; pass image_size=")
    return arch.vision.image_size
