"""Evaluation: zero-shot classification and retrieval (CLIP_benchmark's definitions), reports, plots."""

from .metrics import class_embeddings, classification_metrics, retrieval_metrics

__all__ = ["class_embeddings", "classification_metrics", "retrieval_metrics"]
