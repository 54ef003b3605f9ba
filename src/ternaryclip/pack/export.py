"""From torch CLIP models to ``.tclip`` and back (needs the ``train`` extra: torch, open_clip).

Two ways in:
- a model ternarized with :func:`ternarize_` (QAT or post-training): codes and scales come straight
  from its parametrizations;
- a plain float model whose selected weights are *already* ternary x scale (the public TernaryCLIP
  release stores them so): :func:`detect_ternary` recovers codes and scales exactly, row by row (or by
  groups); a weight that is not ternary is refused, unless ``quantize=RULE`` asks to ternarize it.
  Scope ``auto`` instead packs exactly the weights that are ternary x scale and keeps the others
  float (trainers often leave the patch convolution or the projections float); their names are
  listed in the file's ``quantization.kept_float``.

open_clip ``CLIP`` and SigLIP, Hugging Face ``CLIPModel`` and ``SiglipModel`` are all written with
open_clip CLIP's parameter names (:mod:`.names`: HF's separate q/k/v projections, timm's q | kv, are
stacked into ``in_proj_weight``), so one runtime graph serves them; :mod:`.torch_model` goes back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..quant.rules import as_matrix, ternary_quantize
from ..quant.stats import clean_param_name
from ..quant.surgery import TernaryConfig, clip_family, select_sites, ternary_sites
from ..torch_clip.describe import model_arch, preprocess_meta
from .format import TclipModel, TernaryTensor, write
from .names import HF_RENAMES, HF_STACK, TIMM_RENAMES, TIMM_STACK, to_open_clip_names
from .tokenizer import BLOB as TOKENIZER_BLOB
from .tokenizer import tokenizer_meta
from .torch_model import siglip_open_clip, to_torch


class NotTernaryError(ValueError):
    """A weight that should be ternary takes more than {-s, 0, +s} in some row or group."""


# ---------------------------------------------------------------- ternary detection


def detect_ternary(w: torch.Tensor, group_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and scales of a ``[N, K]`` matrix that takes at most {-s, 0, +s} per row (or per group).

    Exact: ``scale * code`` reproduces ``w`` bit for bit, or NotTernaryError names the first row that
    does not fit.
    """
    w = w.detach().float()
    n, k = w.shape
    g = group_size or k
    groups = -(-k // g)
    padded = torch.nn.functional.pad(w, (0, groups * g - k)).reshape(n, groups, g)
    scales = padded.abs().amax(dim=-1)
    codes = torch.sign(padded).to(torch.int8)
    rebuilt = codes.float() * scales.unsqueeze(-1)
    bad = (rebuilt != padded).any(dim=-1)
    if bad.any():
        row, grp = (int(i) for i in bad.nonzero()[0])
        values = torch.unique(padded[row, grp])[:5].tolist()
        unit = f"row {row}" + (f", group {grp}" if groups > 1 else "")
        raise NotTernaryError(f"{unit} takes values like {[round(v, 6) for v in values]}, more than {{-s, 0, +s}}")
    codes = codes.reshape(n, groups * g)[:, :k]
    if groups == 1 and n > 1 and bool((scales == scales[0, 0]).all()):
        scales = scales[:1]
    return codes, scales


# ---------------------------------------------------------------- model -> tensors


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def _ternary_tensor(
    codes: torch.Tensor, scales: torch.Tensor, group_size: int, param: torch.Tensor, out_axis: int, kind: str
) -> TernaryTensor:
    return TernaryTensor.from_codes(
        codes.cpu().numpy(), _to_numpy(scales), group_size, torch_shape=tuple(param.shape), out_axis=out_axis, kind=kind
    )


def _tensors_of_ternarized(model: nn.Module) -> tuple[dict, dict]:
    ternary = {}
    for name, module, param_name, p in ternary_sites(model):
        latent = module.parametrizations[param_name].original
        codes, scales = p.quantize(latent)
        ternary[name] = _ternary_tensor(codes, scales, p.group_size, latent, p.out_axis, p.kind)
    floats = {}
    for raw, param in model.named_parameters():
        name = clean_param_name(raw)
        if name not in ternary:
            floats[name] = _to_numpy(param)
    return ternary, floats


AUTO_SCOPE = "auto"


def _tensors_of_detected(model: nn.Module, config: TernaryConfig) -> tuple[dict, dict, list[str]]:
    """Scope ``auto``: every weight site (token embedding included) that is ternary x scale, and the rest."""
    search = TernaryConfig(granularity=config.granularity, group_size=config.group_size, scope="all", embedding=True)
    ternary, kept_float = {}, []
    group = config.group_size if config.granularity == "group" else None
    for site in select_sites(model, search):
        param = getattr(site.module, site.param_name)
        matrix = as_matrix(param.detach(), site.out_axis)
        try:
            codes, scales = detect_ternary(matrix, group)
        except NotTernaryError:
            kept_float.append(site.name)
            continue
        ternary[site.name] = _ternary_tensor(codes, scales, group or matrix.shape[1], param, site.out_axis, site.kind)
    if not ternary:
        raise NotTernaryError(
            f"scope 'auto' found no weight that is ternary x scale ({config.granularity} scales) among "
            f"{len(kept_float)} weights: pass --quantize RULE to ternarize a float model"
            + (", or --granularity group --group-size N if it was trained with groups" if group is None else "")
        )
    floats = {name: _to_numpy(p) for name, p in model.named_parameters() if name not in ternary}
    return ternary, floats, kept_float


def _tensors_of_float(model: nn.Module, config: TernaryConfig, quantize: str | None) -> tuple[dict, dict]:
    ternary, refused = {}, []
    for site in select_sites(model, config):
        param = getattr(site.module, site.param_name)
        matrix = as_matrix(param.detach(), site.out_axis)
        group = config.group_size if config.granularity == "group" else None
        try:
            codes, scales = detect_ternary(matrix, group)
            group = group or matrix.shape[1]
        except NotTernaryError as err:
            if quantize is None:
                refused.append(f"{site.name} ({err})")
                continue
            granularity = (
                "channel" if site.kind == "embedding" and config.granularity == "tensor" else config.granularity
            )
            codes, scales = ternary_quantize(matrix, quantize, granularity, config.group_size)
            group = config.group_size if granularity == "group" else matrix.shape[1]
        ternary[site.name] = _ternary_tensor(codes, scales, max(group, 1), param, site.out_axis, site.kind)
    if refused:
        raise NotTernaryError(
            f"{len(refused)} weight(s) in scope {config.scope!r} are not ternary x scale: {'; '.join(refused[:3])}"
            + (f"; and {len(refused) - 3} more" if len(refused) > 3 else "")
            + ". Pass quantize=RULE (--quantize absmean|absmean2|twn) to ternarize them after training"
        )
    floats = {name: _to_numpy(p) for name, p in model.named_parameters() if name not in ternary}
    return ternary, floats


def tclip_from_model(
    model: nn.Module,
    config: TernaryConfig | None = None,
    quantize: str | None = None,
    provenance: dict | None = None,
    tokenizer=None,
    tokenizer_clean: str = "canonicalize",
) -> TclipModel:
    """Everything a ``.tclip`` holds, from a ternarized model or a float model with ternary weights.

    ``tokenizer``: a Hugging Face tokenizer (folder or object) to carry inside the file; a SigLIP needs
    one to encode strings (CLIP's BPE is bundled with the runtime).  ``tokenizer_clean``: open_clip's
    text cleaning before it (``canonicalize`` for SigLIP: lower case, no punctuation).
    """
    family = clip_family(model)
    arch = model_arch(model)
    kept_float = None
    if any(True for _ in ternary_sites(model)):
        ternary, floats = _tensors_of_ternarized(model)
        config = getattr(model, "ternary_config", None) or config or TernaryConfig()
    elif config is not None and config.scope == AUTO_SCOPE:
        if quantize is not None:
            raise ValueError(
                "scope 'auto' packs the weights that are already ternary; with --quantize name the weights "
                "to ternarize (--scope all, ffn or a regex)"
            )
        ternary, floats, kept_float = _tensors_of_detected(model, config)
    else:
        config = config or TernaryConfig()
        ternary, floats = _tensors_of_float(model, config, quantize)
    if family == "hf":
        ternary, floats = to_open_clip_names(ternary, floats, HF_RENAMES, HF_STACK, "Hugging Face")
    elif arch.vision.pool_type == "map":
        ternary, floats = to_open_clip_names(ternary, floats, TIMM_RENAMES, TIMM_STACK, "open_clip SigLIP")
    blobs = {}
    text = arch.text
    if tokenizer is not None:
        tokenizer_spec, blobs[TOKENIZER_BLOB] = tokenizer_meta(
            tokenizer, text.context_length, text.vocab_size, tokenizer_clean
        )
    else:  # CLIP's BPE ships with the runtime; a SigLIP without its tokenizer encodes token ids only
        kind = "none" if arch.is_siglip else "clip_bpe"
        tokenizer_spec = {"type": kind, "context_length": text.context_length, "vocab_size": text.vocab_size}
    meta = {
        "arch": arch.to_dict(),
        "preprocess": preprocess_meta(model, arch),
        "tokenizer": tokenizer_spec,
        "quantization": {
            **config.to_dict(),
            "post_training_rule": quantize,
            **({"kept_float": kept_float} if kept_float is not None else {}),
        },
        "provenance": {
            "source_family": family,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "ternaryclip_version": __version__,
            **(provenance or {}),
        },
    }
    return TclipModel(meta=meta, ternary=ternary, floats=floats, blobs=blobs)


def save(
    model: nn.Module,
    path: str | os.PathLike,
    packing: str = "2bit",
    float_dtype: str = "fp32",
    config: TernaryConfig | None = None,
    quantize: str | None = None,
    provenance: dict | None = None,
    tokenizer=None,
    tokenizer_clean: str = "canonicalize",
) -> Path:
    """Write a ternarized (or already-ternary float) open_clip / HF CLIP to ``path`` as ``.tclip``.

    >>> ternarize_(model, TernaryConfig(embedding=True))           # doctest: +SKIP
    >>> ternaryclip.save(model, "model.tclip", packing="base3")     # doctest: +SKIP
    """
    data = tclip_from_model(model, config, quantize, provenance, tokenizer, tokenizer_clean)
    return write(data, path, packing, float_dtype)


__all__ = [
    "AUTO_SCOPE",
    "NotTernaryError",
    "detect_ternary",
    "save",
    "siglip_open_clip",
    "tclip_from_model",
    "to_torch",
]
