"""Distillation losses: CLIP contrastive (softmax) or SigLIP pair (sigmoid), logit and feature distillation.

A SigLIP student (one with a learned ``logit_bias``) trains with the sigmoid pair loss in place of the
softmax contrastive term, and its logit distillation compares the per-pair sigmoid probabilities of
``logit_scale * s + logit_bias`` rather than softmax rows.

Under DistributedDataParallel every similarity matrix is built from the features of *all* ranks:
each rank all-gathers the others' features without gradient and puts its own, with gradient, in its
slot (as OpenCLIP's ``ClipLoss`` does).  Every rank then computes the loss of the whole global batch,
but gradient flows only through its own rows; DDP averages the ranks' gradients, so the objective a
rank back-propagates must be ``world_size * loss`` for the averaged gradient to equal the gradient of
one process that saw the whole batch.  :func:`DistillLoss.forward` returns that objective separately
from the loss it reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows in rank order; only this rank's rows carry gradient (identity on one process)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


class ClipLoss(nn.Module):
    """Symmetric InfoNCE: image i matches caption i among all captions of the batch, and back."""

    def forward(self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        logits = logit_scale * image @ text.T
        labels = torch.arange(len(image), device=image.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class SigLipLoss(nn.Module):
    """SigLIP's sigmoid loss: every (image, caption) pair is a binary match / no-match decision.

    ``-mean over images of sum over captions of log sigmoid(label * (scale * s + bias))`` with label +1 on
    the diagonal and -1 elsewhere (Zhai et al. 2023; open_clip's ``SigLipLoss`` on one device).
    """

    def forward(
        self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor
    ) -> torch.Tensor:
        logits = logit_scale * image @ text.T + logit_bias
        labels = 2 * torch.eye(len(image), device=image.device, dtype=logits.dtype) - 1
        return -F.logsigmoid(labels * logits).sum() / len(image)


class SigmoidLogitDistillLoss(nn.Module):
    """KL between the teacher's and the student's match probabilities, pair by pair (SigLIP's logits).

    Each pair's probability is ``sigmoid(logit / temperature)``; the Bernoulli KL is averaged over all
    pairs and multiplied by ``temperature**2`` as in :class:`LogitDistillLoss`; ``reverse=True`` uses
    ``KL(p_student || p_teacher)``.
    """

    def __init__(self, temperature: float = 1.0, reverse: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.reverse = temperature, reverse

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        s, t = student_logits / self.temperature, teacher_logits / self.temperature
        if self.reverse:
            s, t = t, s  # KL(p || q) with p the student's
        # KL(Bernoulli(p_t) || Bernoulli(p_s)) from logits, stable: log p = logsigmoid(x), log(1 - p) = logsigmoid(-x)
        p_t = torch.sigmoid(t)
        kl = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))
        return kl.mean() * self.temperature**2


class LogitDistillLoss(nn.Module):
    """KL between the teacher's and the student's in-batch similarity distributions, both directions.

    ``KL(p_teacher || p_student)`` over each row of image->text and of text->image similarities, with
    logits divided by ``temperature`` and the loss multiplied by ``temperature**2`` (Hinton et al.), so
    the gradient scale does not depend on the temperature.  ``reverse=True`` uses
    ``KL(p_student || p_teacher)`` (mode seeking) instead.
    """

    def __init__(self, temperature: float = 1.0, reverse: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.reverse = temperature, reverse

    def _kl(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        log_s = F.log_softmax(student_logits / self.temperature, dim=-1)
        log_t = F.log_softmax(teacher_logits / self.temperature, dim=-1)
        if self.reverse:
            kl = (log_s.exp() * (log_s - log_t)).sum(-1)
        else:
            kl = (log_t.exp() * (log_t - log_s)).sum(-1)
        return kl.mean() * self.temperature**2

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self._kl(student_logits, teacher_logits) + self._kl(student_logits.T, teacher_logits.T))


class FeatureDistillLoss(nn.Module):
    """Distance between normalized student and teacher embeddings: ``1 - cos`` or squared error."""

    def __init__(self, kind: str = "cosine"):
        super().__init__()
        if kind not in ("cosine", "mse"):
            raise ValueError(f"feature loss must be 'cosine' or 'mse', got {kind!r}")
        self.kind = kind

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.kind == "cosine":
            return (1.0 - (student * teacher).sum(-1)).mean()
        return (student - teacher).pow(2).sum(-1).mean()


@dataclass
class LossWeights:
    contrastive: float = 1.0
    logit: float = 1.0
    feature: float = 1.0


class DistillLoss(nn.Module):
    """``w_c * contrastive(student) + w_kd * logit KD + w_f * feature KD`` on gathered, normalized features.

    ``forward`` returns ``(objective, parts)``: ``objective`` is what to back-propagate (the total
    times the world size, see the module docstring); ``parts`` are the detached per-term values and the
    mean student-teacher cosine, for logging.  Without teacher features only the contrastive term runs
    (plain CLIP training, used for the bundled teacher).
    """

    def __init__(
        self,
        weights: LossWeights | None = None,
        temperature: float = 1.0,
        reverse_kl: bool = False,
        feature_kind: str = "cosine",
    ):
        super().__init__()
        self.weights = weights or LossWeights()
        self.contrastive = ClipLoss()
        self.logit = LogitDistillLoss(temperature, reverse_kl)
        self.sigmoid = SigLipLoss()
        self.sigmoid_logit = SigmoidLogitDistillLoss(temperature, reverse_kl)
        self.feature = FeatureDistillLoss(feature_kind)

    def forward(
        self,
        student_image: torch.Tensor,
        student_text: torch.Tensor,
        logit_scale: torch.Tensor,
        teacher_image: torch.Tensor | None = None,
        teacher_text: torch.Tensor | None = None,
        teacher_logit_scale: torch.Tensor | None = None,
        student_kd: tuple[torch.Tensor, torch.Tensor] | None = None,
        logit_bias: torch.Tensor | None = None,
        teacher_logit_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``student_kd``: the student's features mapped to the teacher's width, when a projection exists.

        ``logit_bias``: the student's learned bias, which makes it a SigLIP: the sigmoid pair loss and the
        sigmoid logit distillation replace the softmax ones (the teacher's bias is 0 when it has none).
        """
        image, text = gather_rows(F.normalize(student_image, dim=-1)), gather_rows(F.normalize(student_text, dim=-1))
        if student_kd is not None and student_kd[0] is not student_image:
            kd_image, kd_text = (gather_rows(F.normalize(x, dim=-1)) for x in student_kd)
        else:
            kd_image, kd_text = image, text
        w = self.weights
        sigmoid = logit_bias is not None
        if sigmoid:
            terms = {"contrastive": self.sigmoid(image, text, logit_scale, logit_bias)}
        else:
            terms = {"contrastive": self.contrastive(image, text, logit_scale)}
        if teacher_image is not None and teacher_text is not None:
            t_image = gather_rows(F.normalize(teacher_image.detach(), dim=-1))
            t_text = gather_rows(F.normalize(teacher_text.detach(), dim=-1))
            t_scale = teacher_logit_scale if teacher_logit_scale is not None else logit_scale.detach()
            if w.logit and sigmoid:
                t_bias = teacher_logit_bias.detach() if teacher_logit_bias is not None else 0.0
                terms["logit"] = self.sigmoid_logit(
                    logit_scale * kd_image @ kd_text.T + logit_bias, t_scale * t_image @ t_text.T + t_bias
                )
            elif w.logit:
                terms["logit"] = self.logit(logit_scale * kd_image @ kd_text.T, t_scale * t_image @ t_text.T)
            if w.feature:
                terms["feature"] = 0.5 * (self.feature(kd_image, t_image) + self.feature(kd_text, t_text))
            with torch.no_grad():
                cosine = 0.5 * ((kd_image * t_image).sum(-1).mean() + (kd_text * t_text).sum(-1).mean())
        total = sum(getattr(w, name) * value for name, value in terms.items())
        parts = {name: float(value.detach()) for name, value in terms.items()}
        parts["loss"] = float(total.detach())
        if teacher_image is not None and teacher_text is not None:
            parts["teacher_cosine"] = float(cosine)
        return total * world_size(), parts
