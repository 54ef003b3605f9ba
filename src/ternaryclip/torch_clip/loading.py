"""The one door for float CLIP models (the teacher, or a model to ternarize): :func:`load_float_clip`.

A local checkpoint file, an open_clip ``local-dir:`` folder or a Hugging Face folder is loaded as
given.  Hub names (``hf-hub:ORG/NAME``, an HF repo id ``ORG/NAME``) resolve through huggingface_hub's
cache (:mod:`.hub`): downloaded once with network access, read from the cache after that.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from torch import nn

from ..assets import TEACHER_CONFIG, TEACHER_WEIGHTS

BUNDLED = "bundled"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
Family = Literal["auto", "open_clip", "hf", "openai"]


def load_float_clip(
    spec: str, pretrained: str | None = None, family: Family = "auto", quick_gelu: bool = True
) -> nn.Module:
    """A float CLIP in eval mode, from any spec a verb accepts.

    ``spec`` is ``bundled`` (the packaged teacher), an open_clip config name / JSON config /
    ``local-dir:`` / ``hf-hub:`` name (with ``pretrained`` weights or random init), a Hugging Face
    folder (``config.json`` + weights), or a bare OpenAI-layout state dict file whose architecture
    is inferred from its shapes.  ``family`` forces one reading where a spec could mean two (an HF hub
    id, a ``--checkpoint``); ``quick_gelu`` is the activation of an OpenAI-layout checkpoint.
    """
    if family == "auto":
        family = _guess_family(spec, pretrained)
    if family == "hf":
        if pretrained:
            raise ValueError("--pretrained goes with an open_clip model; a Hugging Face folder holds its own weights")
        return load_hf_clip(spec)
    if family == "openai":
        return load_openai_checkpoint(spec, quick_gelu)
    if spec == BUNDLED:
        return bundled_teacher()
    return create_open_clip(spec, pretrained)


def _guess_family(spec: str, pretrained: str | None) -> Family:
    if os.path.isdir(spec) and os.path.isfile(os.path.join(spec, "config.json")) and not pretrained:
        return "hf"
    if spec.endswith(WEIGHT_SUFFIXES) and not pretrained:
        return "openai"
    from .hub import is_repo_id

    if is_repo_id(spec) and not spec.endswith(".json") and not pretrained:  # ORG/NAME on the hub
        return "hf"
    return "open_clip"


def bundled_teacher() -> nn.Module:
    """The bundled teacher as a float32 open_clip ``CLIP`` in eval mode (trained by scripts/train_teacher.py)."""
    if not TEACHER_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"the bundled teacher weights {TEACHER_WEIGHTS} are missing; train them with "
            "python scripts/train_teacher.py --install"
        )
    return create_open_clip(str(TEACHER_CONFIG), str(TEACHER_WEIGHTS)).float().eval()


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
    if name.startswith("hf-hub:"):  # through the hub's cache, with one-line errors, as a local folder
        from .hub import open_clip_snapshot

        name = f"local-dir:{open_clip_snapshot(name)}"
    if pretrained and not os.path.isfile(pretrained) and os.sep in pretrained:
        raise FileNotFoundError(f"pretrained checkpoint {pretrained!r} does not exist")
    try:
        model = open_clip.create_model(name, pretrained=pretrained or None, weights_only=True)
    except Exception as err:
        if not (pretrained and os.path.isfile(pretrained)):
            raise
        # torch's own message may speak of 'Half' or of a size; say which tensors do not fit instead.
        raise checkpoint_mismatch(name, pretrained, err) from None
    return model.eval()


def read_state_dict(path: str) -> dict:
    """The tensors of a local checkpoint; ValueError says in one line why a file is not one we read."""
    import pickle

    from open_clip.factory import load_state_dict
    from safetensors import SafetensorError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        state = load_state_dict(path, weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{path}: not a weights-only checkpoint (it holds pickled objects beyond tensors, which "
            "torch.load(weights_only=True) refuses); save its state_dict with safetensors or torch.save"
        ) from None
    except SafetensorError as err:
        raise ValueError(f"{path}: not a safetensors file ({err})") from None
    except Exception as err:  # EOF, zip errors, an empty or non-dict pickle
        raise ValueError(f"{path}: cannot read as a checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return state


def checkpoint_mismatch(name: str, path: str, err: Exception) -> ValueError:
    """A one-line error naming the missing, unexpected and mismatched tensors of ``path`` for model ``name``."""
    import open_clip

    state = read_state_dict(path)
    logging.disable(logging.WARNING)  # open_clip warns that the reference model is randomly initialized
    try:
        expected = {k: tuple(v.shape) for k, v in open_clip.create_model(name).state_dict().items()}
    finally:
        logging.disable(logging.NOTSET)
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k} {found[k]} vs {expected[k]}" for k in sorted(set(found) & set(expected)) if found[k] != expected[k]]
    parts = [
        f"{label} {len(items)}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mismatched shapes", shapes))
        if items
    ]
    detail = "; ".join(parts) if parts else f"{type(err).__name__}: {' '.join(str(err).split())}"
    return ValueError(f"{path} is not a checkpoint of open_clip model {name!r} ({detail})")


def load_hf_clip(path: str) -> nn.Module:
    """A ``transformers.CLIPModel`` or ``SiglipModel`` from a local folder (``config.json`` + weights) or a hub
    id ``ORG/NAME`` (through the hub's cache)."""
    import json

    from .hub import TRANSFORMERS_FILES, is_repo_id, snapshot

    if not os.path.isdir(path):
        if not is_repo_id(path):
            raise FileNotFoundError(
                f"Hugging Face model folder {path!r} does not exist (a hub repository is named ORG/NAME)"
            )
        path = str(snapshot(path, TRANSFORMERS_FILES))
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face model folder")
    with open(config, encoding="utf-8") as f:
        model_type = json.load(f).get("model_type")
    if model_type == "siglip":
        from transformers import SiglipModel as Model
    elif model_type == "clip":
        from transformers import CLIPModel as Model
    else:
        raise ValueError(
            f"{path}: model type {model_type!r}; ternaryclip packs CLIP and SigLIP (model_type clip, siglip)"
        )
    return Model.from_pretrained(path).eval()


def load_openai_checkpoint(path: str, quick_gelu: bool = True) -> nn.Module:
    """A CLIP from a bare OpenAI-layout state dict; open_clip infers the architecture from its shapes."""
    from open_clip.model import build_model_from_openai_state_dict

    state_dict = read_state_dict(path)
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
