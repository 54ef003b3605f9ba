"""Shared fixtures: tiny CLIPs (open_clip and Hugging Face) built locally, never downloaded.

Plain constants and functions live in ``helpers.py``; tests import them from there, not from here.
"""

from __future__ import annotations

import json

import pytest

from helpers import TINY_DISTILL, TINY_OPEN_CLIP, tiny_hf_config


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


@pytest.fixture
def tiny_hf_clip():
    import torch
    from transformers import CLIPModel

    torch.manual_seed(0)
    return CLIPModel(tiny_hf_config()).eval()


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
