"""Every setting of a distillation run, as one dataclass that a YAML/JSON file or the CLI fills."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from ..choices import PACKINGS, PRECISIONS

# Settings that change the numbers a run produces; a checkpoint resumes only under the same values.
TRAINING_KEYS = (
    "teacher",
    "teacher_pretrained",
    "student",
    "student_pretrained",
    "tokenizer",
    "project",
    "data",
    "image_key",
    "caption_key",
    "steps",
    "batch_size",
    "accum",
    "lr",
    "min_lr",
    "warmup",
    "weight_decay",
    "grad_clip",
    "beta1",
    "beta2",
    "eps",
    "scope",
    "rule",
    "granularity",
    "group_size",
    "embedding",
    "float_warmup",
    "contrastive",
    "logit",
    "feature",
    "token_feature",
    "temperature",
    "reverse_kl",
    "feature_loss",
    "seed",
    "precision",
    "ternary",
)


@dataclass
class DistillConfig:
    """Quantization-aware distillation of a ternary student from a float teacher.

    ``teacher``: ``bundled``, an open_clip name / JSON config / ``local-dir:PATH`` (with
    ``teacher_pretrained``), or a Hugging Face folder.  ``student``: None copies the teacher (the
    paper's setting).  ``batch_size`` is the global contrastive batch (split across torchrun
    processes); ``accum`` micro-batches make one optimizer step.  Loss weights ``contrastive``,
    ``logit``, ``feature`` and ``token_feature`` (last-block tokens, same widths only); ``teacher=None``
    trains plain CLIP (contrastive only).  GPU speed settings (same numbers, faster steps):
    ``compile`` (torch.compile of the student and the teacher forward), ``channels_last`` pixels and
    weights, ``fused_adamw`` (the fused CUDA AdamW; ignored on CPU).
    """

    teacher: str | None = "bundled"
    teacher_pretrained: str | None = None
    student: str | None = None
    student_pretrained: str | None = None
    tokenizer: str | None = None  # a Hugging Face tokenizer folder (a SigLIP's); None: CLIP's BPE
    project: bool = False
    data: str = "synthetic"
    image_key: str = "filepath"
    caption_key: str = "title"
    steps: int = 300
    batch_size: int = 128
    accum: int = 1
    lr: float = 3e-4
    min_lr: float = 0.0
    warmup: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    ternary: bool = True
    scope: str = "all"
    rule: str = "absmean"
    granularity: str = "channel"
    group_size: int = 128
    embedding: bool = True
    float_warmup: float = 0.0
    contrastive: float = 1.0
    logit: float = 1.0
    feature: float = 1.0
    token_feature: float = 0.0
    temperature: float = 1.0
    reverse_kl: bool = False
    feature_loss: str = "cosine"
    seed: int = 0
    precision: str = "fp32"
    out: str = "runs/distill"
    resume: bool = False
    save_every: int = 100
    log_every: int = 10
    eval_every: int = 0
    threads: int | None = None
    workers: int = 4
    packing: str = "base3"
    progress: bool = True
    compile: bool = False
    channels_last: bool = False
    fused_adamw: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_types()
        checks = [
            (self.steps > 0, "steps must be > 0"),
            (self.batch_size > 1, "batch_size must be > 1"),
            (self.accum >= 1, "accum must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.min_lr >= 0, "min_lr must be >= 0"),
            (self.warmup >= 0, "warmup must be >= 0"),
            (self.group_size >= 1, "group_size must be >= 1"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.save_every >= 1, "save_every must be >= 1"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.eval_every >= 0, "eval_every must be >= 0 (0: off)"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
            (self.workers >= 0, "workers must be >= 0 (0: decode on the training thread)"),
            (0 <= self.float_warmup < 1, "float_warmup is a fraction of the steps in [0, 1)"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.packing in PACKINGS, f"packing must be one of {PACKINGS}"),
            (self.feature_loss in ("cosine", "mse"), "feature_loss must be cosine or mse"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def _check_types(self) -> None:
        """Values from a YAML/JSON file arrive untyped: ``steps: "10"`` is refused here, not mid-run."""
        kinds = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,)}
        for f in dataclasses.fields(self):
            value, names = getattr(self, f.name), [n.strip() for n in str(f.type).split("|")]
            if value is None and "None" in names:
                continue
            if isinstance(value, os.PathLike) and "str" in names:  # paths given as Path objects
                value = os.fspath(value)
                setattr(self, f.name, value)
            allowed = tuple(t for n in names for t in kinds.get(n, ()))
            wrong_bool = isinstance(value, bool) and bool not in allowed
            if allowed and (not isinstance(value, allowed) or wrong_bool):
                raise ValueError(f"setting {f.name} must be {' or '.join(names)}, got {value!r}")

    def training_values(self) -> dict:
        return {k: getattr(self, k) for k in TRAINING_KEYS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_file(cls, path: str, **overrides) -> DistillConfig:
        """Keys of a ``.yaml``/``.yml``/``.json`` file, then ``overrides`` on top; unknown keys are refused."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file {path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            if path.endswith((".yaml", ".yml")):
                import yaml

                values = yaml.safe_load(f) or {}
            else:
                values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{**values, **overrides})
