"""Tiny SigLIP models built locally (no download): open_clip's SigLIP layout on a registered 2-layer
timm ViT, and a Hugging Face ``SiglipModel`` of the same size.

open_clip builds a SigLIP image tower with ``timm.create_model(NAME)``, which takes no size arguments,
so a tiny tower needs a timm name of its own: :func:`register_tiny_timm` registers ``tclip_tiny_siglip``.
"""

from __future__ import annotations

import copy
import json

TIMM_NAME = "tclip_tiny_siglip"

# open_clip's ViT-B-16-SigLIP2 JSON at 32 px, widths 32, two layers each: the same structure.
TINY_SIGLIP = {
    "embed_dim": 32,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {"image_size": 32, "timm_model_name": TIMM_NAME, "timm_pool": "map", "timm_proj": "none"},
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 100,
        "width": 32,
        "heads": 4,
        "layers": 2,
        "mlp_ratio": 2.0,
        "no_causal_mask": True,
        "proj_bias": True,
        "pool_type": "last",
        "norm_kwargs": {"eps": 1e-6},
        "act_kwargs": {"approximate": "tanh"},
    },
}


def register_tiny_timm() -> None:
    """Register the tiny SigLIP image trunk with timm (once per process)."""
    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import VisionTransformer

    if TIMM_NAME in timm.list_models(TIMM_NAME):
        return

    def tclip_tiny_siglip(pretrained: bool = False, **kwargs):
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, class_token=False)
        return VisionTransformer(**{**args, "global_pool": "map", **kwargs})

    tclip_tiny_siglip.__module__ = "timm.models.vision_transformer"
    register_model(tclip_tiny_siglip)


def tiny_siglip_cfg(siglip2: bool = True, vocab_size: int = 100, context: int = 16) -> dict:
    """The config dict; ``siglip2=False`` is ViT-B-16-SigLIP's (plain GELU in the text tower)."""
    cfg = copy.deepcopy(TINY_SIGLIP)
    cfg["text_cfg"].update(vocab_size=vocab_size, context_length=context)
    if not siglip2:
        del cfg["text_cfg"]["act_kwargs"]
    return cfg


def tiny_open_clip_siglip(seed: int = 0, siglip2: bool = True, vocab_size: int = 100, context: int = 16):
    """A random-init open_clip ``CustomTextCLIP`` of the SigLIP layout in eval mode (weights spread by ``seed``)."""
    import open_clip
    import torch

    register_tiny_timm()
    cfg = tiny_siglip_cfg(siglip2, vocab_size, context)
    cfg.pop("custom_text")
    torch.manual_seed(seed)
    model = open_clip.model.CustomTextCLIP(**cfg).eval()
    with torch.no_grad():  # timm's init leaves LayerNorms at 1 / 0 and biases at 0: spread everything a little
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def write_tiny_siglip_config(path, siglip2: bool = True, vocab_size: int = 100, context: int = 16) -> str:
    """The config as an open_clip JSON file, for the verbs that load ``--open-clip PATH.json``."""
    register_tiny_timm()
    path.write_text(json.dumps(tiny_siglip_cfg(siglip2, vocab_size, context)))
    return str(path)


def tiny_hf_siglip(seed: int = 0, vocab_size: int = 100, context: int = 16):
    """A random-init ``transformers.SiglipModel``: two 2-layer, 32-wide towers, GELU-tanh as SigLIP's config."""
    import torch
    from transformers import SiglipConfig, SiglipModel

    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    config = SiglipConfig(
        text_config=dict(
            **tower,
            vocab_size=vocab_size,
            max_position_embeddings=context,
            bos_token_id=2,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(**tower, image_size=32, patch_size=8),
    )
    torch.manual_seed(seed)
    return SiglipModel(config).eval()


CORPUS = [
    "a photo of a cat",
    "a photo of a dog on the grass",
    "two small red circles on a dark background",
    "the quick brown fox jumps over the lazy dog",
    "a blurry photo of the sea at night",
    "an old photograph of a family at the beach",
] * 10


def write_tiny_tokenizer(folder, siglip2: bool = False, vocab_size: int = 100) -> str:
    """Train a tiny tokenizer locally and save it as transformers does, into ``folder``.

    SigLIP's: a SentencePiece Unigram model, ``</s>`` appended and used as padding (id 1).
    SigLIP 2's (Gemma's): a byte-fallback BPE, ``<bos>`` prepended, ``<pad>`` (id 0) as padding.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if siglip2:
        specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials)
    else:
        specials = ["<pad>", "</s>", "<unk>"]
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainer)
    if siglip2:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))]
        )
        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
        )
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
        )
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="</s>", eos_token="</s>", unk_token="<unk>")
    wrapped.save_pretrained(str(folder))
    return str(folder)
