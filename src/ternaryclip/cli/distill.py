"""`ternaryclip distill`: quantization-aware distillation of a ternary student from a float teacher."""

from __future__ import annotations

import argparse
import dataclasses

from ..choices import GRANULARITIES, RULES
from .model_args import non_negative_int, positive_int

# flag -> (type, help); defaults come from DistillConfig so the file, the flags and the API agree.
FLAGS = {
    "teacher": (str, "teacher: 'bundled', an open_clip name / JSON config / local-dir:PATH, or a Hugging Face folder"),
    "teacher_pretrained": (str, "teacher checkpoint file for an open_clip name (.pt/.bin/.safetensors)"),
    "student": (str, "student architecture (default: a copy of the teacher, the paper's setting)"),
    "student_pretrained": (str, "student checkpoint file"),
    "tokenizer": (str, "Hugging Face tokenizer folder of a SigLIP (tokenizer.json; packed into student.tclip)"),
    "data": (str, "synthetic[:SEED], a CSV/TSV, an image folder, or webdataset shards (dir/{000..099}.tar)"),
    "image_key": (str, "CSV/TSV column with image paths"),
    "caption_key": (str, "CSV/TSV column with captions"),
    "steps": (int, "optimizer steps"),
    "batch_size": (int, "global contrastive batch, split across torchrun processes"),
    "accum": (int, "micro-batches per optimizer step (gradient accumulation)"),
    "lr": (float, "peak learning rate (AdamW)"),
    "min_lr": (float, "learning rate at the end of the cosine"),
    "warmup": (int, "linear warmup steps"),
    "weight_decay": (float, "AdamW weight decay on matrices (not on norms, biases, scales, logit scale)"),
    "grad_clip": (float, "clip the gradient norm (0: off)"),
    "scope": (str, "all (every linear layer of both towers), ffn (MLP only) or a regex over parameter names"),
    "rule": (str, f"ternary rule: {', '.join(RULES)}"),
    "granularity": (str, f"scale granularity: {', '.join(GRANULARITIES)}"),
    "group_size": (int, "inputs per scale with --granularity group"),
    "float_warmup": (float, "fraction of the steps trained in float before ternarization starts"),
    "contrastive": (float, "weight of the student's CLIP contrastive loss"),
    "logit": (float, "weight of logit distillation (KL of in-batch similarity distributions)"),
    "feature": (float, "weight of feature distillation (normalized embeddings)"),
    "token_feature": (float, "weight of token distillation: last-block tokens of both towers, cosine (same widths)"),
    "temperature": (float, "logit distillation temperature"),
    "feature_loss": (str, "cosine or mse"),
    "seed": (int, "seed of weights init, data order and synthetic data"),
    "precision": (str, "fp32, or bf16 / fp16 autocast on a GPU"),
    "out": (str, "output folder: checkpoint.safetensors, metrics.jsonl, config.json, student.tclip"),
    "save_every": (int, "checkpoint every N steps"),
    "log_every": (int, "write metrics.jsonl every N steps"),
    "eval_every": (int, "zero-shot eval on the synthetic benchmark every N steps (0: off)"),
    "threads": (positive_int, "torch CPU threads"),
    "workers": (non_negative_int, "image decoding threads (0: decode on the training thread, as DataLoader's 0)"),
    "packing": (str, "packing of the exported student: base3 (smallest) or 2bit"),
}
SWITCHES = {
    "embedding": "ternarize the token embedding too (default on: 99%% ternary parameters); --no-embedding keeps it float",
    "project": "learn a projection when student and teacher embedding widths differ",
    "reverse_kl": "use KL(student || teacher) for logit distillation",
    "ternary": "ternarize the student (default); --no-ternary trains a float student (baseline)",
    "compile": "torch.compile the student and the teacher forward (GPU; the first steps compile)",
    "channels_last": "channels-last pixels and weights (GPU)",
    "fused_adamw": "the fused CUDA AdamW (default on a GPU); --no-fused-adamw for the plain one",
}


HELP = "distill a ternary student from a float teacher (QAT + KD)"
DESCRIPTION = """\
Quantization-aware training with knowledge distillation: the student's weights are ternarized in the forward
pass (STE) and it learns from the frozen teacher's image-text similarities and embeddings. Runs under
torchrun for several processes. Every flag can also come from --config FILE (YAML or JSON, same keys with _
or -); flags win.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION)
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file with any of the settings below")
    for key, (kind, text) in FLAGS.items():
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=kind, default=None, help=text)
    for key, text in SWITCHES.items():
        p.add_argument(
            "--" + key.replace("_", "-"), dest=key, action=argparse.BooleanOptionalAction, default=None, help=text
        )
    p.add_argument("--resume", action="store_true", default=None, help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from ..distill import DistillConfig

    keys = {f.name for f in dataclasses.fields(DistillConfig)}
    given = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    if args.config:
        return DistillConfig.from_file(args.config, **given)
    return DistillConfig(**given)


def run(args: argparse.Namespace) -> int:
    from ..distill import Trainer
    from ..eval.synthetic import evaluate_synthetic

    config = config_from_args(args)
    for key, least in (("threads", 1), ("workers", 0)):  # a --config file bypasses the flags' checks
        value = getattr(config, key)
        if value is not None and (not isinstance(value, int) or value < least):
            raise ValueError(f"{key} must be an integer >= {least}, got {value!r}")
    eval_fn = (
        (lambda model, step: evaluate_synthetic(model, quick=True)) if config.data.startswith("synthetic") else None
    )
    trainer = Trainer(config, eval_fn=eval_fn)
    trainer.run()
    path = trainer.export()
    if path is not None:
        stats = trainer.stats()
        print(
            f"student: {path} ({stats['ternary_fraction']:.2%} ternary parameters); metrics: {config.out}/metrics.jsonl"
        )
    return 0
