"""Parameter names: the other layouts' (Hugging Face, open_clip's timm-based SigLIP) and the file's.

A ``.tclip`` names its tensors as open_clip's ``CLIP`` does, so one runtime graph reads every
family; these tables map the other layouts onto those names (and back, for ``to_torch``), stacking
the attention inputs that the source keeps apart into one ``in_proj`` of rows q | k | v.
"""

from __future__ import annotations

import re

import numpy as np

from .format import TernaryTensor

# Parameter names of the other layouts -> open_clip CLIP names (the file's, which the runtime reads).
# Rules apply in order, each to the result of the last.  HF CLIPModel / SiglipModel:
HF_RENAMES = [
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
TIMM_RENAMES = [
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
HF_STACK = (re.compile(r"^(.*)\.self_attn\.([qkv])_proj\.(weight|bias)$"), ("q", "k", "v"))
TIMM_STACK = (re.compile(r"^(visual\.trunk\.attn_pool)\.(q|kv)\.(weight|bias)$"), ("q", "kv"))
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


def to_open_clip_names(ternary: dict, floats: dict, renames: list, stack: tuple, source: str) -> tuple[dict, dict]:
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


def from_open_clip_names(state: dict, target: dict) -> dict:
    """The file's tensors (open_clip CLIP names) under the names and shapes of an open_clip SigLIP's ``target``."""
    pattern, _ = TIMM_STACK
    out = {}
    for name, param in target.items():
        m = pattern.match(name)
        if m:  # the attention pool's q and kv: rows of the stacked q | k | v
            stacked = state[_rename(f"{m.group(1)}.attn.in_proj_{m.group(3)}", TIMM_RENAMES)]
            width = stacked.shape[0] // 3
            out[name] = stacked[:width] if m.group(2) == "q" else stacked[width:]
            continue
        ours = _rename(name, TIMM_RENAMES)
        if ours not in state:
            continue  # load_state_dict names what is missing
        value = state[ours]
        if ours in ("visual.proj", "text_projection") and name.endswith(".weight"):
            value = value.T  # x @ P in the file, a Linear here
        out[name] = value.reshape(param.shape)
    return out
