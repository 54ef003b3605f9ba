"""Quantization-aware distillation: a ternary student learns from its float teacher (needs torch)."""

from .config import DistillConfig
from .losses import ClipLoss, DistillLoss, FeatureDistillLoss, LogitDistillLoss, LossWeights
from .trainer import Trainer, TrainingDiverged, lr_at

__all__ = [
    "ClipLoss",
    "DistillConfig",
    "DistillLoss",
    "FeatureDistillLoss",
    "LogitDistillLoss",
    "LossWeights",
    "Trainer",
    "TrainingDiverged",
    "lr_at",
]
