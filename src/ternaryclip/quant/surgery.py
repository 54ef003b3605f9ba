"""`ternarize_(model, TernaryConfig(...))`: in-place module surgery for OpenCLIP and Hugging Face CLIP.

Why parametrizations instead of swapping ``nn.Linear`` for a new class: half of CLIP's ternary weights
are not ``nn.Linear`` modules.  open_clip's attention keeps a fused ``in_proj_weight`` on
``nn.MultiheadAttention``, its projections ``visual.proj`` / ``text_projection`` are bare Parameters used
as ``x @ P``, and the patch embedding is a ``Conv2d``.  ``torch.nn.utils.parametrize`` replaces *the
weight* of any module by ``fake_quant(latent)`` without touching the model's forward code, so one
mechanism covers every case, the model's own ``encode_image``/``get_text_features`` keep working, and
the latent float weight stays a trainable Parameter (``<module>.parametrizations.<name>.original``).

The same walk covers SigLIP: open_clip's timm tower (``qkv`` / ``proj`` / ``fc1`` / ``fc2`` Linears, the
attention-pool head's ``q`` / ``kv`` / ``proj`` / MLP, the patch ``Conv2d``), its ``Linear`` text projection,
and HF ``SiglipModel``'s head (an ``nn.MultiheadAttention``).  The probe and the position embeddings stay
float, as CLIP's class and position embeddings do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..choices import GRANULARITIES, RULES, SCOPES
from ..torch_clip.describe import clip_family
from .rules import as_matrix, check_choice, check_group_size, fake_quant, ternary_quantize

FilterFn = Callable[[nn.Module, str], bool]
# Bare 2-D Parameters that CLIP uses as ``x @ P`` (so the output axis is 1).
_PROJECTION_PARAMS = ("proj", "text_projection")
_FFN_NAME = re.compile(r"(^|\.)mlp\.")


@dataclass(frozen=True)
class TernaryConfig:
    """What to ternarize and how.

    rule: ``absmean`` | ``absmean2`` | ``twn`` (see :mod:`ternaryclip.quant.rules`).
    granularity: one scale per ``tensor``, per output ``channel`` (row), or per ``group`` of
        ``group_size`` inputs.
    scope: ``all`` (every linear layer of both towers, attention, projections and patch conv),
        ``ffn`` (MLP layers only) or a regular expression searched in parameter names.
    embedding: also ternarize the token embedding, one scale per token row (99% ternary needs it).
    """

    rule: str = "absmean"
    granularity: str = "channel"
    group_size: int = 128
    scope: str = "all"
    embedding: bool = False

    def __post_init__(self) -> None:
        check_choice("rule", self.rule, RULES)
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_group_size(self.group_size)
        if self.scope not in SCOPES:
            try:
                re.compile(self.scope)
            except re.error as err:
                raise ValueError(
                    f"scope {self.scope!r} is neither one of {', '.join(SCOPES)} nor a valid regular expression: {err}"
                ) from None

    def to_dict(self) -> dict:
        return asdict(self)


class TernaryWeight(nn.Module):
    """Parametrization: the module's weight becomes the ternary value of its latent float weight.

    ``enabled = False`` passes the latent weight through unchanged (float warm-up before QAT).
    """

    def __init__(self, rule: str, granularity: str, group_size: int, out_axis: int = 0, kind: str = "linear"):
        super().__init__()
        self.rule, self.granularity, self.group_size = rule, granularity, group_size
        self.out_axis, self.kind = out_axis, kind
        self.enabled = True

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return latent
        return fake_quant(latent, self.rule, self.granularity, self.group_size, self.out_axis)

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``int8 [N, K]`` and scales of ``latent`` in its ``[N outputs, K inputs]`` orientation."""
        return ternary_quantize(as_matrix(latent.detach(), self.out_axis), self.rule, self.granularity, self.group_size)

    def extra_repr(self) -> str:
        return (
            f"rule={self.rule}, granularity={self.granularity}, group_size={self.group_size}, out_axis={self.out_axis}"
        )


@dataclass(frozen=True)
class WeightSite:
    """One weight that can be ternarized: ``getattr(module, param_name)`` known as ``name`` in the model."""

    name: str
    module: nn.Module
    param_name: str
    kind: str  # linear | attn_in_proj | conv | projection | embedding
    out_axis: int = 0


def weight_sites(model: nn.Module) -> Iterator[WeightSite]:
    """Every weight of ``model`` that a ternary scope can select, embeddings included, in module order."""
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, nn.Linear):
            yield WeightSite(prefix + "weight", module, "weight", "linear")
        elif isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None:
                yield WeightSite(prefix + "in_proj_weight", module, "in_proj_weight", "attn_in_proj")
            else:
                for p in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                    yield WeightSite(prefix + p, module, p, "attn_in_proj")
        elif isinstance(module, nn.Conv2d):
            yield WeightSite(prefix + "weight", module, "weight", "conv")
        elif isinstance(module, nn.Embedding) and mod_name.endswith("token_embedding"):
            yield WeightSite(prefix + "weight", module, "weight", "embedding")
        for p in _PROJECTION_PARAMS:
            value = module._parameters.get(p) if not _is_parametrized(module, p) else getattr(module, p)
            if isinstance(value, torch.Tensor) and value.ndim == 2 and not isinstance(module, nn.Linear):
                yield WeightSite(prefix + p, module, p, "projection", out_axis=1)


def _is_parametrized(module: nn.Module, name: str) -> bool:
    return parametrize.is_parametrized(module, name)


def _in_scope(site: WeightSite, config: TernaryConfig) -> bool:
    if site.kind == "embedding":
        return config.embedding
    if config.scope == "all":
        return True
    if config.scope == "ffn":
        return bool(_FFN_NAME.search(site.name))
    return re.search(config.scope, site.name) is not None


def select_sites(model: nn.Module, config: TernaryConfig, filter_fn: FilterFn | None = None) -> list[WeightSite]:
    """The sites ``ternarize_`` would change: in ``config.scope`` and accepted by ``filter_fn``."""
    clip_family(model)
    sites = [s for s in weight_sites(model) if _in_scope(s, config)]
    if filter_fn is not None:
        sites = [s for s in sites if filter_fn(s.module, s.name)]
    if not sites:
        raise ValueError(
            f"nothing to ternarize: scope {config.scope!r}"
            + (" with the given filter_fn" if filter_fn is not None else "")
            + " matches no weight; use scope 'all', 'ffn' or a regex that matches parameter names such as "
            + ", ".join(s.name for s in list(weight_sites(model))[:3])
        )
    return sites


def ternarize_(model: nn.Module, config: TernaryConfig | None = None, filter_fn: FilterFn | None = None) -> nn.Module:
    """Make the selected weights of a CLIP ternary in place (STE fake-quant); returns ``model``.

    >>> import open_clip                                   # doctest: +SKIP
    >>> model = open_clip.create_model("ViT-B-32")          # doctest: +SKIP
    >>> ternarize_(model, TernaryConfig(scope="all", embedding=True))  # doctest: +SKIP
    """
    config = config or TernaryConfig()
    sites = select_sites(model, config, filter_fn)
    for site in sites:
        if _is_parametrized(site.module, site.param_name):
            raise ValueError(f"{site.name} is already parametrized (ternarized twice?); start from the float model")
    for site in sites:
        granularity = "channel" if site.kind == "embedding" and config.granularity == "tensor" else config.granularity
        parametrization = TernaryWeight(config.rule, granularity, config.group_size, site.out_axis, site.kind)
        parametrize.register_parametrization(site.module, site.param_name, parametrization)
    model.ternary_config = config
    return model


def ternary_sites(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, TernaryWeight]]:
    """``(name, module, param_name, parametrization)`` for every ternarized weight of ``model``."""
    for mod_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for param_name, plist in module.parametrizations.items():
            for p in plist:
                if isinstance(p, TernaryWeight):
                    yield (f"{mod_name}.{param_name}" if mod_name else param_name), module, param_name, p


def set_ternary_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every ternary weight between ternary (True) and latent float (False) forward."""
    for _, _, _, p in ternary_sites(model):
        p.enabled = enabled


def materialize_(model: nn.Module) -> nn.Module:
    """Replace every latent weight by its ternary value (``scale * code``) and drop the parametrization.

    The result is a plain float model whose ternary weights take at most three values per scale unit:
    what export and inspection want; it no longer trains as QAT.
    """
    sites = list(ternary_sites(model))
    if not sites:
        raise ValueError("materialize_: the model has no ternary weights; call ternarize_ first")
    for _, module, param_name, p in sites:
        p.enabled = True
        parametrize.remove_parametrizations(module, param_name, leave_parametrized=True)
    return model
