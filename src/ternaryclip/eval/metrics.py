"""Zero-shot classification and retrieval metrics, defined exactly as CLIP_benchmark defines them.

numpy only, on embeddings, so they serve the torch-free runtime and torch models alike:

- classifier: per class, the normalized text embeddings of every prompt template, averaged and
  renormalized; logits = image embeddings (normalized) @ classifier.
- ``acc1``, ``acc5`` (NaN with fewer than 5 classes), ``mean_per_class_recall`` (balanced accuracy).
- retrieval with several captions per image: ``image_retrieval_recall@k`` (text -> image: the
  caption's image is in its top k) and ``text_retrieval_recall@k`` (image -> text: at least one of
  the image's captions is in its top k).
"""

from __future__ import annotations

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(prompt_embeddings: np.ndarray) -> np.ndarray:
    """``[classes, templates, dim]`` text embeddings -> ``[classes, dim]`` zero-shot weights."""
    return normalize(normalize(prompt_embeddings).mean(axis=1))


def zero_shot_prompts(classnames: list[str], templates: list[str]) -> list[str]:
    """Every template filled with every class name, class-major: reshape the embeddings to ``[classes, templates, dim]``."""
    return [t.format(c=c) for c in classnames for t in templates]


def zero_shot_logits(image_embeddings: np.ndarray, classifier: np.ndarray) -> np.ndarray:
    """Cosine of each image with each class's zero-shot weights: ``[images, classes]``."""
    return normalize(image_embeddings) @ classifier.T


def top_k_accuracy(logits: np.ndarray, target: np.ndarray, k: int) -> float:
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == target[:, None]).any(axis=1).mean())


def mean_per_class_recall(pred: np.ndarray, target: np.ndarray) -> float:
    """Balanced accuracy: the mean over the classes present in ``target`` of their recall."""
    classes = np.unique(target)
    return float(np.mean([(pred[target == c] == c).mean() for c in classes]))


def classification_metrics(image_embeddings: np.ndarray, classifier: np.ndarray, target: np.ndarray) -> dict:
    logits = zero_shot_logits(image_embeddings, classifier)
    target = np.asarray(target)
    acc5 = top_k_accuracy(logits, target, 5) if classifier.shape[0] >= 5 else float("nan")
    return {
        "acc1": top_k_accuracy(logits, target, 1),
        "acc5": acc5,
        "mean_per_class_recall": mean_per_class_recall(logits.argmax(axis=1), target),
    }


def retrieval_metrics(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    text_image_index: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict:
    """``text_image_index[j]`` is the image that caption ``j`` describes."""
    scores = normalize(text_embeddings) @ normalize(image_embeddings).T  # [texts, images]
    index = np.asarray(text_image_index)
    positive = np.zeros(scores.shape, bool)
    positive[np.arange(len(index)), index] = True
    out = {}
    text_order = np.argsort(-scores, axis=1, kind="stable")  # images ranked per caption
    image_order = np.argsort(-scores.T, axis=1, kind="stable")  # captions ranked per image
    for k in ks:
        hit_t2i = np.take_along_axis(positive, text_order[:, :k], axis=1).any(axis=1)
        hit_i2t = np.take_along_axis(positive.T, image_order[:, :k], axis=1).any(axis=1)
        out[f"image_retrieval_recall@{k}"] = float(hit_t2i.mean())
        out[f"text_retrieval_recall@{k}"] = float(hit_i2t.mean())
    return out
