"""Shared fixtures: tiny CLIPs (open_clip and Hugging Face) built locally, never downloaded."""

from __future__ import annotations

import json

import pytest

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 48, "heads": 2, "layers": 2},
}


@pytest.fixture
def tiny_config_path(tmp_path):
    path = tmp_path / "tiny-clip.json"
    path.write_text(json.dumps(TINY_OPEN_CLIP))
    return path


@pytest.fixture
def tiny_open_clip():
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_OPEN_CLIP).eval()
    # open_clip initializes some projections to tiny values; make every weight O(1/sqrt(fan_in)) so
    # that ternary rounding actually changes numbers the tests compare.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0, p.shape[-1] ** -0.5)
    return model


def tiny_hf_config():
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=100,
            max_position_embeddings=16,
            bos_token_id=98,
            eos_token_id=99,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )


@pytest.fixture
def tiny_hf_clip():
    import torch
    from transformers import CLIPModel

    torch.manual_seed(0)
    return CLIPModel(tiny_hf_config()).eval()


def random_inputs(seed: int = 1, image_size: int = 32, context: int = 16, vocab: int = 100, batch: int = 3):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, image_size, image_size, generator=g), torch.randint(
        1, vocab, (batch, context), generator=g
    )


# A tiny CLIP that reads real CLIP BPE ids (vocabulary 49408) and 32 px synthetic images.
TINY_DISTILL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture
def tiny_teacher_files(tmp_path):
    """A tiny open_clip config and a checkpoint of it, written locally (the teacher of these tests)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    config = tmp_path / "tiny-distill.json"
    config.write_text(json.dumps(TINY_DISTILL))
    torch.manual_seed(1)
    model = open_clip.CLIP(**TINY_DISTILL)
    weights = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return str(config), str(weights)
