""".tclip -> torch: an open_clip model whose weights are the file's, ternary ones dequantized exactly."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .format import TclipModel
from .names import from_open_clip_names


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
        state = from_open_clip_names(state, model.state_dict())
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
