"""What a torch CLIP is, as data: its architecture (:class:`ClipArch`) and its eval preprocessing.

Reads an open_clip ``CLIP`` or a Hugging Face ``CLIPModel`` and refuses the variants the runtime
graph does not run.  Only ``arch`` below it: ``quant`` asks :func:`clip_family` which naming a model
uses, and ``pack.export`` describes the model it writes without reaching up to the runtime.
"""

from __future__ import annotations

from torch import nn

from ..arch import ClipArch, TextArch, VisionArch

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_family(model: nn.Module) -> str:
    """``"open_clip"`` or ``"hf"``; a ValueError for anything that is not a CLIP with two towers."""
    if hasattr(model, "vision_model") and hasattr(model, "text_model") and hasattr(model, "get_image_features"):
        return "hf"
    if hasattr(model, "visual") and hasattr(model, "encode_image") and hasattr(model, "encode_text"):
        return "open_clip"
    raise ValueError(
        f"model of type {type(model).__name__} is not a CLIP: expected an open_clip CLIP/CustomTextCLIP "
        "(with .visual, encode_image, encode_text) or a transformers CLIPModel (with vision_model, text_model)"
    )


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(
            f"unsupported CLIP variant: {what}; ternaryclip packs ViT CLIP and SigLIP models "
            "(open_clip CLIP with a VisionTransformer, open_clip ViT-*-SigLIP*, transformers CLIPModel or SiglipModel)"
        )


def _gelu_kind(module: nn.Module) -> str:
    """Our activation name for an MLP activation module (torch GELU, its tanh form, open_clip QuickGELU)."""
    name = type(module).__name__
    if name == "QuickGELU":
        return "quick_gelu"
    _require(name in ("GELU", "GELUTanh"), f"activation {name}")
    return "gelu_tanh" if name == "GELUTanh" or getattr(module, "approximate", "none") == "tanh" else "gelu"


def _is_siglip_open_clip(model: nn.Module) -> bool:
    return type(getattr(model, "visual", None)).__name__ == "TimmModel" and hasattr(model, "text")


def arch_from_open_clip_siglip(model: nn.Module) -> ClipArch:
    """open_clip's ``ViT-*-SigLIP*``: a timm ViT with the "map" head beside open_clip's ``TextTransformer``."""
    trunk, text = model.visual.trunk, model.text
    _require(type(trunk).__name__ == "VisionTransformer", f"timm image tower {type(trunk).__name__}")
    _require(trunk.global_pool == "map" and trunk.attn_pool is not None, f"timm pool {trunk.global_pool!r}")
    _require(trunk.num_prefix_tokens == 0 and not trunk.dynamic_img_size, "class or register tokens in a timm ViT")
    _require(len(model.visual.head) == 0, "a projection head after the timm tower")
    for name in ("norm_pre", "fc_norm", "head"):
        _require(isinstance(getattr(trunk, name), nn.Identity), f"timm {name}")
    _require(trunk.attn_pool.latent_len == 1, "an attention pool of several latents")
    block, t_block = trunk.blocks[0], text.transformer.resblocks[0]
    _require(isinstance(block.ls1, nn.Identity) and isinstance(block.attn.q_norm, nn.Identity), "layer scale / qk norm")
    _require(isinstance(t_block.ls_1, nn.Identity) and isinstance(t_block.attn, nn.MultiheadAttention), "text blocks")
    _require(text.text_projection is not None and isinstance(text.text_projection, nn.Linear), "text projection")
    _require(float(block.norm1.eps) == float(t_block.ln_1.eps), "different LayerNorm eps in the two towers")
    conv = trunk.patch_embed.proj
    image_h, image_w = trunk.patch_embed.img_size
    patch_h, patch_w = trunk.patch_embed.patch_size
    _require(image_h == image_w and patch_h == patch_w, "non-square images or patches")
    embed_dim = text.text_projection.out_features
    _require(embed_dim == trunk.embed_dim, "an image width different from the text projection's")
    return ClipArch(
        embed_dim=embed_dim,
        vision=VisionArch(
            image_size=image_h,
            patch_size=patch_h,
            width=trunk.embed_dim,
            layers=len(trunk.blocks),
            heads=block.attn.num_heads,
            mlp_width=block.mlp.fc1.out_features,
            pool_type="map",
            no_ln_pre=True,
            class_token=False,
            patch_bias=conv.bias is not None,
            proj=False,
            activation=_gelu_kind(block.mlp.act),
        ),
        text=TextArch(
            context_length=text.context_length,
            vocab_size=text.vocab_size,
            width=text.width,
            heads=t_block.attn.num_heads,
            layers=len(text.transformer.resblocks),
            mlp_width=t_block.mlp.c_fc.out_features,
            pool_type=text.pool_type,
            eos_id=int(getattr(text, "eos_id", 2) or 2) % text.vocab_size,
            causal=text.attn_mask is not None,
            proj_bias=text.text_projection.bias is not None,
            activation=_gelu_kind(t_block.mlp.gelu),
        ),
        norm_eps=float(block.norm1.eps),
        logit_bias=getattr(model, "logit_bias", None) is not None,
    )


def arch_from_open_clip(model: nn.Module) -> ClipArch:
    from open_clip.transformer import VisionTransformer

    if _is_siglip_open_clip(model):
        return arch_from_open_clip_siglip(model)
    visual = model.visual
    _require(isinstance(visual, VisionTransformer), f"image tower {type(visual).__name__}")
    _require(hasattr(model, "token_embedding"), "a custom text tower (CustomTextCLIP)")
    _require(getattr(visual, "attn_pool", None) is None, "attentional pooling")
    v_block, t_block = visual.transformer.resblocks[0], model.transformer.resblocks[0]
    for block in (v_block, t_block):
        _require(isinstance(block.ls_1, nn.Identity), "layer scale")
        _require(isinstance(block.attn, nn.MultiheadAttention), "custom attention blocks")
    act = type(v_block.mlp.gelu).__name__
    _require(act in ("GELU", "QuickGELU") and type(t_block.mlp.gelu).__name__ == act, f"activation {act}")
    image_h, image_w = visual.image_size
    patch_h, patch_w = visual.patch_size
    _require(image_h == image_w and patch_h == patch_w, "non-square images or patches")
    return ClipArch(
        embed_dim=visual.output_dim,
        vision=VisionArch(
            image_size=image_h,
            patch_size=patch_h,
            width=visual.conv1.out_channels,
            layers=len(visual.transformer.resblocks),
            heads=v_block.attn.num_heads,
            mlp_width=v_block.mlp.c_fc.out_features,
            pool_type=visual.pool_type,
            final_ln_after_pool=bool(visual.final_ln_after_pool),
            no_ln_pre=isinstance(visual.ln_pre, nn.Identity),
        ),
        text=TextArch(
            context_length=model.context_length,
            vocab_size=model.vocab_size,
            width=model.token_embedding.embedding_dim,
            heads=t_block.attn.num_heads,
            layers=len(model.transformer.resblocks),
            mlp_width=t_block.mlp.c_fc.out_features,
            pool_type=model.text_pool_type,
            eos_id=int(getattr(model, "text_eos_id", 2) or 2),
            causal=model.attn_mask is not None,
        ),
        quick_gelu=act == "QuickGELU",
        norm_eps=float(v_block.ln_1.eps),
        logit_bias=getattr(model, "logit_bias", None) is not None,
    )


def _hf_tower(config) -> dict:
    """The transformer dimensions of one Hugging Face tower config, in :mod:`ternaryclip.arch`'s names."""
    return {
        "width": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "mlp_width": config.intermediate_size,
    }


_HF_ACTIVATIONS = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_pytorch_tanh": "gelu_tanh"}


def arch_from_hf_siglip(model: nn.Module) -> ClipArch:
    """Hugging Face ``SiglipModel``: SigLIP's towers, with the attention-pool head of ``vision_use_head``."""
    v, t = model.config.vision_config, model.config.text_config
    _require(model.config.model_type == "siglip", f"Hugging Face model type {model.config.model_type!r}")
    _require(getattr(v, "vision_use_head", True), "a SigLIP image tower without its attention-pool head")
    for tower in (v, t):
        _require(tower.hidden_act in _HF_ACTIVATIONS, f"activation {tower.hidden_act}")
    _require(v.layer_norm_eps == t.layer_norm_eps, "different LayerNorm eps in the two towers")
    embed_dim = getattr(t, "projection_size", None) or t.hidden_size
    _require(embed_dim == v.hidden_size, "an image width different from the text projection's")
    return ClipArch(
        embed_dim=embed_dim,
        vision=VisionArch(
            image_size=v.image_size,
            patch_size=v.patch_size,
            **_hf_tower(v),
            pool_type="map",
            no_ln_pre=True,
            class_token=False,
            patch_bias=True,
            proj=False,
            activation=_HF_ACTIVATIONS[v.hidden_act],
        ),
        text=TextArch(
            context_length=t.max_position_embeddings,
            vocab_size=t.vocab_size,
            **_hf_tower(t),
            pool_type="last",
            eos_id=int(t.eos_token_id) if 0 <= int(t.eos_token_id or 0) < t.vocab_size else 1,
            causal=False,
            proj_bias=True,
            activation=_HF_ACTIVATIONS[t.hidden_act],
        ),
        norm_eps=float(v.layer_norm_eps),
        logit_bias=True,
    )


def arch_from_hf(model: nn.Module) -> ClipArch:
    if getattr(model.config, "model_type", "clip") != "clip":
        return arch_from_hf_siglip(model)
    v, t = model.config.vision_config, model.config.text_config
    _require(v.hidden_act == t.hidden_act and v.hidden_act in ("gelu", "quick_gelu"), f"activation {v.hidden_act}")
    _require(v.layer_norm_eps == t.layer_norm_eps, "different LayerNorm eps in the two towers")
    return ClipArch(
        embed_dim=model.config.projection_dim,
        vision=VisionArch(image_size=v.image_size, patch_size=v.patch_size, **_hf_tower(v)),
        text=TextArch(
            context_length=t.max_position_embeddings,
            vocab_size=t.vocab_size,
            **_hf_tower(t),
            pool_type="argmax" if t.eos_token_id == 2 else "eos",
            eos_id=int(t.eos_token_id),
        ),
        quick_gelu=v.hidden_act == "quick_gelu",
        norm_eps=float(v.layer_norm_eps),
    )


# SigLIP's image processor: resize to the square input (no crop), pixels scaled to [-1, 1].
SIGLIP_PREPROCESS = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "resize_mode": "squash"}


def preprocess_meta(model: nn.Module, arch: ClipArch) -> dict:
    """Eval preprocessing: open_clip's ``preprocess_cfg`` when the model carries one, else the family's
    (a Hugging Face ``SiglipModel`` keeps its in the image processor: SigLIP's; CLIP's otherwise)."""
    cfg = dict(getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {})
    if not cfg and clip_family(model) == "hf" and arch.vision.pool_type == "map":
        cfg = dict(SIGLIP_PREPROCESS)
    size = cfg.get("size", arch.vision.image_size)
    return {
        "size": size if isinstance(size, int) else list(size)[0],
        "mean": list(cfg.get("mean", OPENAI_MEAN)),
        "std": list(cfg.get("std", OPENAI_STD)),
        "interpolation": cfg.get("interpolation", "bicubic"),
        "resize_mode": cfg.get("resize_mode", "shortest"),
    }


def model_arch(model: nn.Module) -> ClipArch:
    """The architecture of an open_clip or Hugging Face CLIP."""
    return arch_from_hf(model) if clip_family(model) == "hf" else arch_from_open_clip(model)
