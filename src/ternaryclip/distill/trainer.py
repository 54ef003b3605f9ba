"""The QAT + KD training loop: AdamW, warmup + cosine, accumulation, clipping, checkpoints, torchrun.

Deterministic on CPU: the data of step k, the optimizer state and the RNG are all in the checkpoint,
so a run stopped at step k and resumed reaches the same weights at step n as a run that never
stopped.  A non-finite loss stops the run before the optimizer touches the weights; the last
checkpoint on disk is the last good state.

Over 350 lines on purpose: the step, its accumulation, the checkpoint and resume, and the distributed
set-up share the invariants above, which read best in one file.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..quant import TernaryConfig, set_ternary_enabled, ternarize_, ternary_stats
from ..runtime.tokenizer import ClipTokenizer
from .checkpoint import CheckpointError, load_checkpoint, read_state, remove_stale_temp_files, save_checkpoint
from .config import DistillConfig
from .data import BatchStream, SyntheticSource, open_source
from .losses import DistillLoss, LossWeights
from .models import FeatureProjection, as_clip, embed_dim, freeze, load_clip, make_student, model_arch, model_preprocess
from .token_distill import TokenRecorder, token_loss


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def lr_at(step: int, config: DistillConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup`` steps, then cosine down to ``min_lr`` at ``steps``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on norms, biases, scales, embeddings of position or logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or any(
            s in name
            for s in (
                "ln",
                "norm",
                "bias",
                "logit_scale",
                "positional_embedding",
                "class_embedding",
                "position_embedding",
                "pos_embed",  # timm (SigLIP's image tower)
                "attn_pool.latent",  # SigLIP's attention-pool probe, open_clip / timm and HF names
                "head.probe",
            )
        )
        (no_decay if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class StudentPair(nn.Module):
    """Student and optional projection behind one ``forward`` so that DDP sees every trained weight."""

    def __init__(self, student: nn.Module, projection: FeatureProjection | None):
        super().__init__()
        self.student, self.projection = student, projection

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor):
        clip = as_clip(self.student)
        image, text = clip.encode_image(pixels), clip.encode_text(ids)
        kd_image, kd_text = (
            (self.projection.image(image), self.projection.text(text)) if self.projection else (image, text)
        )
        return image, text, clip.logit_scale.exp().clamp(max=100.0), logit_bias(clip), kd_image, kd_text


def logit_bias(clip) -> torch.Tensor | None:
    """A SigLIP's learned bias (a scalar), None for a CLIP."""
    bias = getattr(clip, "logit_bias", None)
    return bias.reshape(()) if isinstance(bias, torch.Tensor) else None


class Trainer:
    """One distillation run.  ``eval_fn(student, step) -> dict`` is called every ``eval_every`` steps."""

    def __init__(
        self,
        config: DistillConfig,
        eval_fn: Callable[[nn.Module, int], dict] | None = None,
        teacher: nn.Module | None = None,
        student: nn.Module | None = None,
    ):
        self.config, self.eval_fn = config, eval_fn
        self.rank, self.world = _init_distributed(config)
        self.device = (
            torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.out = Path(config.out)
        self.checkpoint_path = self.out / "checkpoint.safetensors"
        if self.rank == 0:
            for stale in remove_stale_temp_files(self.checkpoint_path):
                print(f"note: removed {stale}, left by a run that stopped while writing its checkpoint")
        resume_state = self._check_resume()
        # Open the data first: a wrong path fails in a second, not after loading a large teacher.
        source = open_source(config.data, config.seed, 224, config.image_key, config.caption_key)
        self.teacher, self.student = self._models(teacher, student)
        self.projection = self._projection()
        self.pair = StudentPair(self.student, self.projection).to(self.device)
        self.model = nn.parallel.DistributedDataParallel(self.pair) if self.world > 1 else self.pair
        if config.channels_last:  # only the patch convolution cares; harmless elsewhere
            self.pair.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.pair, config.weight_decay),
            lr=config.lr,
            betas=(config.beta1, config.beta2),
            eps=config.eps,
            **({"fused": True} if config.fused_adamw and self.device.type == "cuda" else {}),
        )
        self._teacher_encode = self._teacher_encode_eager
        if config.compile:  # in place: state_dict keys and checkpoints stay as without it
            self.pair.compile()
            self._teacher_encode = torch.compile(self._teacher_encode_eager)
        self.loss = DistillLoss(
            LossWeights(config.contrastive, config.logit, config.feature),
            config.temperature,
            config.reverse_kl,
            config.feature_loss,
        )
        self.preprocess, self.arch = model_preprocess(self.student), model_arch(self.student)
        self.tokenizer = text_tokenizer(config.tokenizer, self.arch.text.context_length, self.arch.text.vocab_size)
        self.step, position = 0, 0
        if resume_state is not None:
            state = load_checkpoint(self.checkpoint_path, self.student, self.projection, self.optimizer)
            self.step, position = state["step"], state["position"]
        self.data = self._batches(source, position)
        self.history: list[dict] = []
        self.tokens = None
        if config.token_feature and self.teacher is not None:
            self.tokens = (TokenRecorder(self.student), TokenRecorder(self.teacher))
        fp16 = self.device.type == "cuda" and config.precision == "fp16"
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None  # fp16 gradients underflow unscaled

    # ------------------------------------------------------------ setup helpers
    def _check_resume(self) -> dict | None:
        if not self.config.resume:
            if self.checkpoint_path.exists() and self.rank == 0:
                print(f"note: {self.checkpoint_path} exists and will be overwritten (use --resume to continue it)")
            return None
        state = read_state(self.checkpoint_path)
        mine, theirs = self.config.training_values(), state.get("training", {})
        differ = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        if differ:
            raise CheckpointError(
                f"{self.checkpoint_path} was written with other settings "
                f"({', '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in differ.items())})"
            )
        return state

    def _models(self, teacher: nn.Module | None, student: nn.Module | None) -> tuple[nn.Module | None, nn.Module]:
        """The frozen teacher and the trainable (ternarized) student, on the device."""
        config = self.config
        if teacher is None and config.teacher:
            teacher = load_clip(config.teacher, config.teacher_pretrained)
        teacher = freeze(teacher).to(self.device) if teacher is not None else None
        if student is None:
            if teacher is None and not config.student:
                raise ValueError("training needs a teacher or a student (--student)")
            student = (
                make_student(teacher, config.student, config.student_pretrained)
                if config.student or teacher is None
                else make_student(teacher)
            )
        for p in student.parameters():  # a copy of a frozen teacher arrives frozen
            p.requires_grad_(True)
        student = student.to(self.device).train()
        if config.ternary:
            ternary = TernaryConfig(
                rule=config.rule,
                granularity=config.granularity,
                group_size=config.group_size,
                scope=config.scope,
                embedding=config.embedding,
            )
            ternarize_(student, ternary)
        return teacher, student

    def _batches(self, source, position: int) -> BatchStream:
        if isinstance(source, SyntheticSource) and source.world.image_size != self.preprocess.size:
            source = SyntheticSource(self.preprocess.size, source.seed)
        agree = {"agree": _sum_across_ranks} if self.world > 1 else {}
        config = self.config
        return BatchStream(
            source,
            self.preprocess,
            self.tokenizer,
            config.batch_size,
            self.rank,
            self.world,
            position,
            config.workers,
            **agree,
        )

    def _projection(self) -> FeatureProjection | None:
        if self.teacher is None:
            return None
        t_dim, s_dim = embed_dim(self.teacher), embed_dim(self.student)
        if t_dim == s_dim and not self.config.project:
            return None
        if t_dim != s_dim and not self.config.project:
            raise ValueError(
                f"teacher embeddings are {t_dim}-d but the student's are {s_dim}-d: pick a student "
                "with the same embedding width or add a learned projection (--project)"
            )
        return FeatureProjection(s_dim, t_dim).to(self.device)

    # ------------------------------------------------------------ one step
    def _micro_batch(self):
        batch = self.data.next_batch()
        pixels = torch.from_numpy(batch.pixels).to(self.device, non_blocking=True)
        if self.config.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return pixels, torch.from_numpy(batch.ids).to(self.device, non_blocking=True)

    def _autocast(self):
        if self.device.type == "cuda" and self.config.precision != "fp32":
            dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return nullcontext()

    def train_step(self) -> dict:
        config = self.config
        set_ternary_enabled(self.student, self.step >= int(config.float_warmup * config.steps))
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, config)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for micro in range(config.accum):
            pixels, ids = self._micro_batch()
            sync = nullcontext() if self.world == 1 or micro == config.accum - 1 else self.model.no_sync()
            with sync, self._autocast():
                image, text, scale, bias, kd_image, kd_text = self.model(pixels, ids)
                *teacher, teacher_bias = self._teacher_features(pixels, ids)
                objective, parts = self.loss(
                    image,
                    text,
                    scale,
                    *teacher,
                    student_kd=(kd_image, kd_text),
                    logit_bias=bias,
                    teacher_logit_bias=teacher_bias,
                )
                if self.tokens:  # a per-rank mean: DDP's gradient average is already the global mean
                    tokens = token_loss(*self.tokens)
                    objective = objective + config.token_feature * tokens
                    parts["token_feature"] = float(tokens.detach())
                    parts["loss"] += config.token_feature * parts["token_feature"]
            if not math.isfinite(parts["loss"]):
                raise TrainingDiverged(
                    f"loss is {parts['loss']} at step {self.step} (micro-batch {micro}); the last "
                    f"good state is {self.checkpoint_path if self.checkpoint_path.exists() else 'not saved'}"
                    "; lower --lr, raise --warmup or check the data"
                )
            scaled = objective / config.accum
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v / config.accum
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(
            self.pair.parameters(), config.grad_clip if config.grad_clip > 0 else 1e30
        )
        if self.scaler:  # an overflowing fp16 step is skipped and the scale lowered, as GradScaler does
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif not torch.isfinite(norm):
            raise TrainingDiverged(f"gradient norm is {float(norm)} at step {self.step}; lower --lr or raise --warmup")
        else:
            self.optimizer.step()
        self.step += 1
        return {**totals, "grad_norm": float(norm), "lr": lr_at(self.step - 1, config)}

    def _teacher_features(self, pixels, ids):
        if self.teacher is None:
            return None, None, None, None
        with torch.no_grad():
            return self._teacher_encode(pixels, ids)

    def _teacher_encode_eager(self, pixels, ids):
        clip = as_clip(self.teacher)
        scale = clip.logit_scale.exp().clamp(max=100.0)
        return clip.encode_image(pixels), clip.encode_text(ids), scale, logit_bias(clip)

    # ------------------------------------------------------------ the run
    def save(self) -> None:
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            save_checkpoint(
                self.checkpoint_path,
                self.student,
                self.projection,
                self.optimizer,
                {
                    "step": self.step,
                    "position": self.data.position,
                    "training": self.config.training_values(),
                    "skipped": dict(self.data.skipped.counts),
                },
            )

    def run(self) -> list[dict]:
        """Train to ``config.steps``; returns the logged metrics (also in ``out/metrics.jsonl``)."""
        from tqdm.auto import tqdm

        config = self.config
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        log = _metrics_log(self.out / "metrics.jsonl", self.step) if self.rank == 0 else None
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            disable=self.rank != 0 or not config.progress,
            desc="distill" if self.teacher is not None else "train",
            dynamic_ncols=True,
        )
        try:
            while self.step < config.steps:
                start = time.perf_counter()
                metrics = self.train_step()
                seconds = time.perf_counter() - start
                metrics.update(
                    step=self.step,
                    seconds=seconds,
                    samples_per_s=config.batch_size * config.accum / seconds,
                    skipped=self.data.skipped.total,
                )
                if (
                    config.eval_every
                    and self.eval_fn
                    and (self.step % config.eval_every == 0 or self.step == config.steps)
                ):
                    metrics.update(self.eval_fn(self.student, self.step))
                    self.student.train()
                self.history.append(metrics)
                if log and (self.step % config.log_every == 0 or self.step == config.steps):
                    log.write(json.dumps(metrics) + "\n")
                    log.flush()
                bar.set_postfix(
                    loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.1e}", sps=f"{metrics['samples_per_s']:.0f}"
                )
                bar.update(1)
                if self.step % config.save_every == 0 or self.step == config.steps:
                    self.save()
        finally:
            bar.close()
            if log:
                log.close()
        if self.data.skipped.total and self.rank == 0:
            print(f"skipped {self.data.skipped.total} samples: {dict(self.data.skipped.counts)}")
        return self.history

    def export(self, path: str | os.PathLike | None = None) -> Path | None:
        """The student as ``.tclip`` (rank 0 only); a float run (``ternary=False``) as safetensors."""
        if self.rank != 0:
            return None
        self.student.eval()
        if not self.config.ternary:
            from safetensors.torch import save_file

            target = Path(path or self.out / "model.safetensors")
            save_file({k: v.detach().contiguous().clone() for k, v in self.student.state_dict().items()}, str(target))
            return target
        from ..pack.export import save

        target = Path(path or self.out / "student.tclip")
        provenance = {
            "teacher": self.config.teacher,
            "data": self.config.data,
            "steps": self.step,
            "method": "QAT+KD" if self.teacher is not None else "QAT",
        }
        return save(
            self.student, target, packing=self.config.packing, provenance=provenance, tokenizer=self.config.tokenizer
        )

    def stats(self) -> dict:
        return ternary_stats(self.student)


def text_tokenizer(folder: str | None, context_length: int, vocab_size: int):
    """CLIP's BPE, or the Hugging Face tokenizer in ``folder`` (a SigLIP's), run as the runtime runs it."""
    if folder is None:
        return ClipTokenizer(context_length)
    from ..pack.tokenizer import tokenizer_meta
    from ..runtime.hf_tokenizer import HFTokenizer

    meta, blob = tokenizer_meta(folder, context_length, vocab_size)
    return HFTokenizer(blob, context_length, meta["pad_id"], meta["clean"])


def _metrics_log(path: Path, step: int):
    """``metrics.jsonl`` opened for appending after its lines up to ``step``.

    Lines past ``step`` were logged after the checkpoint being resumed, and a line cut short by a
    kill is not JSON: both go, so that a resumed run logs every step exactly once.
    """
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("step"), int) and entry["step"] <= step:
                kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
    return open(path, "a", encoding="utf-8")


def _init_distributed(config: DistillConfig) -> tuple[int, int]:
    """Rank and world size; joins the torchrun process group (NCCL on GPUs, gloo on CPU) when launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _sum_across_ranks(codes: np.ndarray) -> np.ndarray:
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.from_numpy(codes).to(device)
    dist.all_reduce(t)
    return t.cpu().numpy()
