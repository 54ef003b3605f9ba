"""Loading float CLIP models (the teacher, or a model to ternarize) from open_clip or Hugging Face.

Nothing here downloads by itself: a local checkpoint file, an open_clip ``local-dir:`` folder or a
Hugging Face folder is loaded as given.  Hub names (``hf-hub:``, a pretrained tag, an HF repo id) are
passed through to open_clip / transformers for users who have network access.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn


def create_open_clip(name: str, pretrained: str | None = None) -> nn.Module:
    """An open_clip model in eval mode from a config name, a JSON config file or ``local-dir:PATH``.

    ``pretrained`` is a local checkpoint (``.pt``/``.bin``/``.safetensors``, read with
    ``weights_only=True``) or, with network access, an open_clip pretrained tag.
    """
    import open_clip

    if name.endswith(".json"):
        if not os.path.isfile(name):
            raise FileNotFoundError(f"open_clip model config {name!r} does not exist")
        open_clip.add_model_config(name)
        name = Path(name).stem
    elif not name.startswith(("local-dir:", "hf-hub:")) and name not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {name!r}: use a name from open_clip.list_models(), "
            "a path to a JSON model config, or local-dir:PATH"
        )
    if pretrained and not os.path.isfile(pretrained) and os.sep in pretrained:
        raise FileNotFoundError(f"pretrained checkpoint {pretrained!r} does not exist")
    model = open_clip.create_model(name, pretrained=pretrained or None, weights_only=True)
    return model.eval()


def load_hf_clip(path: str) -> nn.Module:
    """A ``transformers.CLIPModel`` from a local folder (``config.json`` + weights) or a hub id."""
    from transformers import CLIPModel

    if os.sep in path and not os.path.isdir(path):
        raise FileNotFoundError(f"Hugging Face model folder {path!r} does not exist")
    return CLIPModel.from_pretrained(path).eval()


def load_openai_checkpoint(path: str, quick_gelu: bool = True) -> nn.Module:
    """A CLIP from a bare OpenAI-layout state dict; open_clip infers the architecture from its shapes."""
    from open_clip.factory import load_state_dict
    from open_clip.model import build_model_from_openai_state_dict

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    state_dict = load_state_dict(path, weights_only=True)
    if "visual.conv1.weight" not in state_dict or "token_embedding.weight" not in state_dict:
        raise ValueError(
            f"{path} is not an OpenAI/open_clip CLIP state dict (no visual.conv1.weight / "
            "token_embedding.weight); use --open-clip NAME --pretrained PATH or --hf DIR"
        )
    # open_clip builds the architecture from the shapes but rounds weights to fp16 on the way;
    # load them again in fp32 so that ternary x scale values survive exactly.
    model = build_model_from_openai_state_dict(dict(state_dict), quick_gelu=quick_gelu, cast_dtype=None).float()
    model.load_state_dict(
        {k: v for k, v in state_dict.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    )
    return model.eval()
