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
            f"unsupported CLIP variant: {what}; ternaryclip packs ViT CLIP models "
            "(open_clip CLIP with a VisionTransformer, or transformers CLIPModel)"
        )


def arch_from_open_clip(model: nn.Module) -> ClipArch:
    from open_clip.transformer import VisionTransformer

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


def arch_from_hf(model: nn.Module) -> ClipArch:
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


def preprocess_meta(model: nn.Module, arch: ClipArch) -> dict:
    """Eval preprocessing: open_clip's ``preprocess_cfg`` when the model carries one, else CLIP's."""
    cfg = dict(getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {})
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
