"""Run evaluation sets through a model and collect results in CLIP_benchmark's JSON shape.

A result is ``{"dataset", "model", "pretrained", "task", "metrics", ...}`` as CLIP_benchmark writes
it, so ``ternaryclip report`` reads both tools' files.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..data.images import decode_rgb
from ..runtime.preprocess import Preprocess
from .datasets import ClassificationSet, RetrievalSet
from .metrics import class_embeddings, classification_metrics, retrieval_metrics, zero_shot_prompts


@dataclass
class LoadedModel:
    """An encoder (numpy in / out, with ``preprocess``) and what to call it in reports."""

    encoder: object
    name: str
    kind: str  # "tclip" (runtime) or "torch"
    file_bytes: int | None = None

    @property
    def preprocess(self) -> Preprocess:
        return self.encoder.preprocess


def load_model(
    spec: str, pretrained: str | None = None, mode: str = "fast", threads: int | None = None, batch_size: int = 64
) -> LoadedModel:
    """``x.tclip`` (torch-free runtime), ``bundled``, an open_clip name/config + ``pretrained``, or an HF folder."""
    if spec.endswith(".tclip"):
        from ..runtime import load

        model = load(spec, mode=mode, threads=threads, batch_size=batch_size)
        return LoadedModel(model, f"{os.path.basename(spec)} ({mode})", "tclip", os.path.getsize(spec))
    import torch

    from ..distill.models import load_clip
    from .encoders import TorchEncoder

    if threads:
        torch.set_num_threads(threads)
    encoder = TorchEncoder(load_clip(spec, pretrained), batch_size)
    size = os.path.getsize(pretrained) if pretrained and os.path.isfile(pretrained) else None
    return LoadedModel(encoder, spec, "torch", size)


def pixels_of(
    images: list, preprocess: Preprocess, skipped: Counter, workers: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed ``[N, 3, S, S]`` and the indices kept; files that fail to decode are counted and dropped."""

    def one(image):
        if isinstance(image, np.ndarray) and image.shape[:2] == (preprocess.size, preprocess.size):
            return preprocess.normalize(image)
        try:
            from PIL import Image

            return preprocess(Image.fromarray(image) if isinstance(image, np.ndarray) else decode_rgb(image))
        except (ValueError, OSError):
            return None

    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(one, images))
    kept = np.array([i for i, p in enumerate(out) if p is not None], dtype=np.int64)
    skipped["cannot decode"] += len(images) - len(kept)
    size = preprocess.size
    stacked = np.stack([out[i] for i in kept]) if len(kept) else np.zeros((0, 3, size, size), np.float32)
    return stacked.astype(np.float32, copy=False), kept


def _encode_images(model: LoadedModel, pixels: np.ndarray, batch_size: int, desc: str, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    chunks = [
        model.encoder.encode_image(pixels[i : i + batch_size])
        for i in tqdm(range(0, len(pixels), batch_size), desc=desc, leave=False, unit="batch", disable=not progress)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)


def evaluate_set(model: LoadedModel, data, batch_size: int = 64, progress: bool = True) -> dict:
    """One result (CLIP_benchmark's shape) for a ClassificationSet or RetrievalSet."""
    skipped = Counter(data.skipped)
    pixels, kept = pixels_of(data.images, model.preprocess, skipped)
    if not len(kept):
        raise ValueError(f"{data.name}: no image could be decoded")
    images = _encode_images(model, pixels, batch_size, data.name, progress)
    if isinstance(data, ClassificationSet):
        prompts = zero_shot_prompts(data.classnames, data.templates)
        text = model.encoder.encode_text(prompts).reshape(len(data.classnames), len(data.templates), -1)
        metrics = classification_metrics(images, class_embeddings(text), np.asarray(data.labels)[kept])
        task = "zeroshot_classification"
    elif isinstance(data, RetrievalSet):
        captions = [data.captions[i] for i in kept]
        flat = [c for cs in captions for c in cs]
        owner = np.array([i for i, cs in enumerate(captions) for _ in cs])
        texts = np.concatenate([model.encoder.encode_text(flat[i : i + 512]) for i in range(0, len(flat), 512)])
        metrics = retrieval_metrics(images, texts, owner)
        task = "zeroshot_retrieval"
    else:
        raise TypeError(f"cannot evaluate {type(data).__name__}")
    return {
        "dataset": data.name,
        "model": model.name,
        "pretrained": model.kind,
        "task": task,
        "metrics": metrics,
        "images": int(len(kept)),
        "skipped": dict(skipped),
        "file_bytes": model.file_bytes,
    }


def retention(student: list[dict], teacher: list[dict]) -> list[dict]:
    """Per data set and metric: student, teacher and student / teacher."""
    by_dataset = {r["dataset"]: r for r in teacher}
    rows = []
    for s in student:
        t = by_dataset.get(s["dataset"])
        if t is None:
            continue
        for key, value in s["metrics"].items():
            reference = t["metrics"].get(key)
            if reference is None or not np.isfinite(value) or not np.isfinite(reference):
                continue
            rows.append(
                {
                    "dataset": s["dataset"],
                    "metric": key,
                    "student": value,
                    "teacher": reference,
                    "retention": value / reference if reference else float("nan"),
                }
            )
    return rows
