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

Both open_clip ``CLIP`` and Hugging Face ``CLIPModel`` are written with open_clip's parameter names
(HF's separate q/k/v projections are stacked into ``in_proj_weight``), so one runtime graph and one
``to_torch`` serve both.
"""

from __future__ import annotations

import os
import re
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
from .tokenizer import BLOB as TOKENIZER_BLOB
from .tokenizer import tokenizer_meta


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


# Parameter names of the other layouts -> open_clip CLIP names (the file's, which the runtime reads).
# Rules apply in order, each to the result of the last.  HF CLIPModel / SiglipModel:
_HF_RENAMES = [
    (r"^vision_model\.embeddings\.class_embedding$", "visual.class_embedding"),
    (r"^vision_model\.embeddings\.patch_embedding\.", "visual.conv1."),
    (r"^vision_model\.embeddings\.position_embedding\.weight$", "visual.positional_embedding"),
    (r"^vision_model\.pre_layrnorm\.", "visual.ln_pre."),
    (r"^vision_model\.post_layernorm\.", "visual.ln_post."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.", r"visual.transformer.resblocks.\1."),
    (r"^vision_model\.head\.probe$", "visual.attn_pool.probe"),
    (r"^vision_model\.head\.attention\.", "visual.attn_pool.attn."),
    (r"^vision_model\.head\.layernorm\.", "visual.attn_pool.ln."),
    (r"^vision_model\.head\.", "visual.attn_pool."),
    (r"^text_model\.encoder\.layers\.(\d+)\.", r"transformer.resblocks.\1."),
    (r"^text_model\.embeddings\.token_embedding\.weight$", "token_embedding.weight"),
    (r"^text_model\.embeddings\.position_embedding\.weight$", "positional_embedding"),
    (r"^text_model\.final_layer_norm\.", "ln_final."),
    (r"^text_model\.head\.weight$", "text_projection"),
    (r"^text_model\.head\.bias$", "text_projection_bias"),
    (r"^visual_projection\.weight$", "visual.proj"),
    (r"^text_projection\.weight$", "text_projection"),
    (r"\.self_attn\.out_proj\.", ".attn.out_proj."),
    (r"\.layer_norm1\.", ".ln_1."),
    (r"\.layer_norm2\.", ".ln_2."),
    (r"\.mlp\.fc1\.", ".mlp.c_fc."),
    (r"\.mlp\.fc2\.", ".mlp.c_proj."),
]
# open_clip's SigLIP: a timm ViT (``visual.trunk``) and a ``TextTransformer`` under ``text.``.
_TIMM_RENAMES = [
    (r"^visual\.trunk\.patch_embed\.proj\.", "visual.conv1."),
    (r"^visual\.trunk\.pos_embed$", "visual.positional_embedding"),
    (r"^visual\.trunk\.cls_token$", "visual.class_embedding"),
    (r"^visual\.trunk\.norm_pre\.", "visual.ln_pre."),
    (r"^visual\.trunk\.norm\.", "visual.ln_post."),
    (r"^visual\.trunk\.attn_pool\.latent$", "visual.attn_pool.probe"),
    (r"^visual\.trunk\.attn_pool\.proj\.", "visual.attn_pool.attn.out_proj."),
    (r"^visual\.trunk\.attn_pool\.norm\.", "visual.attn_pool.ln."),
    (r"^visual\.trunk\.attn_pool\.", "visual.attn_pool."),
    (r"^visual\.trunk\.blocks\.(\d+)\.", r"visual.transformer.resblocks.\1."),
    (r"\.norm1\.", ".ln_1."),
    (r"\.norm2\.", ".ln_2."),
    (r"\.attn\.qkv\.(weight|bias)$", r".attn.in_proj_\1"),
    (r"\.attn\.proj\.", ".attn.out_proj."),
    (r"\.mlp\.fc1\.", ".mlp.c_fc."),
    (r"\.mlp\.fc2\.", ".mlp.c_proj."),
    (r"^text\.text_projection\.weight$", "text_projection"),
    (r"^text\.text_projection\.bias$", "text_projection_bias"),
    (r"^text\.", ""),
]
# Attention inputs kept apart in the source, stacked q | k | v here: (pattern, the parts in order).
_HF_STACK = (re.compile(r"^(.*)\.self_attn\.([qkv])_proj\.(weight|bias)$"), ("q", "k", "v"))
_TIMM_STACK = (re.compile(r"^(visual\.trunk\.attn_pool)\.(q|kv)\.(weight|bias)$"), ("q", "kv"))
_KEPT_NAMES = ("logit_scale", "logit_bias")


def _stack_ternary(parts: list[TernaryTensor]) -> TernaryTensor:
    codes = np.concatenate([p.codes() for p in parts])
    groups = max(p.scales.shape[1] for p in parts)
    if all(p.scales.shape == (1, 1) for p in parts) and len({float(p.scales[0, 0]) for p in parts}) == 1:
        scales = parts[0].scales
    else:
        scales = np.concatenate([np.broadcast_to(p.scales, (p.shape[0], groups)) for p in parts])
    return TernaryTensor.from_codes(codes, scales, parts[0].group_size, kind="attn_in_proj")


def _rename(name: str, renames: list) -> str:
    for pattern, repl in renames:
        name = re.sub(pattern, repl, name)
    return name


def _to_open_clip_names(ternary: dict, floats: dict, renames: list, stack: tuple, source: str) -> tuple[dict, dict]:
    """The tensors of an HF or timm-based model under open_clip CLIP's names and orientations."""
    pattern, order = stack
    out_t, out_f, parts_of = {}, {}, {}
    for name, value in list(ternary.items()) + list(floats.items()):
        m = pattern.match(name)
        if m:
            parts_of.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        new = _rename(name, renames)
        if new == name and name not in _KEPT_NAMES:
            raise ValueError(f"unsupported CLIP variant: no open_clip name for {source} parameter {name!r}")
        if new in ("visual.proj", "text_projection"):  # a Linear [E, D] is already our [N, K]; torch side is x @ P
            if isinstance(value, TernaryTensor):
                value = TernaryTensor(
                    value.packed, value.scales, value.shape, value.group_size, value.torch_shape[::-1], 1, "projection"
                )
            else:
                value = np.ascontiguousarray(value.T)
        elif new == "visual.positional_embedding":  # timm's [1, tokens, width]
            value = value.reshape(value.shape[-2:])
        elif new == "visual.class_embedding":
            value = value.reshape(-1)
        (out_t if isinstance(value, TernaryTensor) else out_f)[new] = value
    for (prefix, kind), parts in parts_of.items():
        ordered = [parts[x] for x in order]
        name = _rename(f"{prefix}.attn.in_proj_{kind}", renames)
        if all(isinstance(p, TernaryTensor) for p in ordered):
            out_t[name] = _stack_ternary(ordered)
        else:  # partly ternary: keep the exact values as float (lossless, just not packed)
            out_f[name] = np.concatenate([p.dequantize() if isinstance(p, TernaryTensor) else p for p in ordered])
    return out_t, out_f


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
        ternary, floats = _to_open_clip_names(ternary, floats, _HF_RENAMES, _HF_STACK, "Hugging Face")
    elif arch.vision.pool_type == "map":
        ternary, floats = _to_open_clip_names(ternary, floats, _TIMM_RENAMES, _TIMM_STACK, "open_clip SigLIP")
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


# ---------------------------------------------------------------- .tclip -> torch


def to_torch(source) -> nn.Module:
    """An open_clip ``CLIP`` (eval mode) whose weights are the file's: ternary ones dequantized exactly.

    A SigLIP comes back as open_clip's ``CustomTextCLIP`` with a timm image tower, as
    ``open_clip.create_model("ViT-B-16-SigLIP2")`` builds it.
    """
    import open_clip

    from .format import read

    model_data = source if isinstance(source, TclipModel) else read(source)
    state = {name: torch.from_numpy(t.torch_layout().astype(np.float32)) for name, t in model_data.ternary.items()}
    state.update({name: torch.from_numpy(np.array(a, dtype=np.float32)) for name, a in model_data.floats.items()})
    if model_data.arch.vision.pool_type == "map":
        model = siglip_open_clip(model_data.arch)
        state = _from_open_clip_names(state, model.state_dict())
    else:
        model = open_clip.CLIP(**model_data.arch.to_open_clip_cfg())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{model_data.path}: tensors do not match the architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval()


def siglip_open_clip(arch) -> nn.Module:
    """A random-init open_clip SigLIP (``CustomTextCLIP``, timm ViT with the map head) of ``arch``'s sizes.

    open_clip names a timm model and timm takes no sizes through it, so the trunk of these sizes is
    registered with timm under a name that spells them.
    """
    import open_clip

    v, t = arch.vision, arch.text
    name = (
        "tclip_siglip_"
        + "_".join(
            str(x)
            for x in (v.image_size, v.patch_size, v.width, v.layers, v.heads, v.mlp_width, v.activation or "gelu")
        )
        + f"_{arch.norm_eps:g}"
    )
    _register_timm_siglip(name, arch)
    text_cfg = {
        "context_length": t.context_length,
        "vocab_size": t.vocab_size,
        "width": t.width,
        "heads": t.heads,
        "layers": t.layers,
        "mlp_ratio": t.mlp_width / t.width,
        "no_causal_mask": not t.causal,
        "proj_bias": t.proj_bias,
        "pool_type": t.pool_type,
        "eos_id": t.eos_id,
        "norm_kwargs": {"eps": arch.norm_eps},
    }
    if arch.activation(t) == "gelu_tanh":
        text_cfg["act_kwargs"] = {"approximate": "tanh"}
    vision_cfg = {"image_size": v.image_size, "timm_model_name": name, "timm_pool": "map", "timm_proj": "none"}
    model = open_clip.model.CustomTextCLIP(
        embed_dim=arch.embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg, init_logit_bias=0.0
    )
    return model.eval()


def _register_timm_siglip(name: str, arch) -> None:
    import functools

    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import VisionTransformer

    if timm.is_model(name):
        return
    v = arch.vision

    def build(pretrained: bool = False, **kwargs):
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        return VisionTransformer(
            **{
                "img_size": v.image_size,
                "patch_size": v.patch_size,
                "embed_dim": v.width,
                "depth": v.layers,
                "num_heads": v.heads,
                "mlp_ratio": v.mlp_width / v.width,
                "class_token": False,
                "global_pool": "map",
                "act_layer": "gelu_tanh" if arch.activation(v) == "gelu_tanh" else "gelu",
                "norm_layer": functools.partial(nn.LayerNorm, eps=arch.norm_eps),
                **kwargs,
            }
        )

    build.__name__ = build.__qualname__ = name
    build.__module__ = VisionTransformer.__module__
    register_model(build)


def _from_open_clip_names(state: dict, target: dict) -> dict:
    """The file's tensors (open_clip CLIP names) under the names and shapes of an open_clip SigLIP's ``target``."""
    pattern, _ = _TIMM_STACK
    out = {}
    for name, param in target.items():
        m = pattern.match(name)
        if m:  # the attention pool's q and kv: rows of the stacked q | k | v
            stacked = state[_rename(f"{m.group(1)}.attn.in_proj_{m.group(3)}", _TIMM_RENAMES)]
            width = stacked.shape[0] // 3
            out[name] = stacked[:width] if m.group(2) == "q" else stacked[width:]
            continue
        ours = _rename(name, _TIMM_RENAMES)
        if ours not in state:
            continue  # load_state_dict names what is missing
        value = state[ours]
        if ours in ("visual.proj", "text_projection") and name.endswith(".weight"):
            value = value.T  # x @ P in the file, a Linear here
        out[name] = value.reshape(param.shape)
    return out
