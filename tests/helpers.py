"""Test helpers: tiny CLIP configurations and inputs built locally, never downloaded.

Tests import these by name (``from helpers import ...``); ``conftest.py`` holds only fixtures.
"""

from __future__ import annotations

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 48, "heads": 2, "layers": 2},
}


# A tiny CLIP that reads real CLIP BPE ids (vocabulary 49408) and 32 px synthetic images.
TINY_DISTILL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def tiny_hf_config(vocab_size: int = 100, context: int = 16, bos: int = 98, eos: int = 99, pad: int = 1):
    """A tiny Hugging Face CLIPConfig: two 2-layer, 32-wide towers; the text side's vocabulary as asked."""
    from transformers import CLIPConfig

    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    return CLIPConfig(
        text_config=dict(
            **tower,
            vocab_size=vocab_size,
            max_position_embeddings=context,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=pad,
        ),
        vision_config=dict(**tower, image_size=32, patch_size=8),
        projection_dim=16,
    )


def random_inputs(seed: int = 1, image_size: int = 32, context: int = 16, vocab: int = 100, batch: int = 3):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, image_size, image_size, generator=g), torch.randint(
        1, vocab, (batch, context), generator=g
    )
