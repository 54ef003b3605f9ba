"""The torch side of CLIP models, in one home: loading, describing and calling open_clip / HF CLIPs.

- :mod:`.loading`: :func:`load_float_clip`, the one loader every verb uses;
- :mod:`.describe`: which family a model is, its architecture and preprocessing as data (used by
  ``quant`` and ``pack.export``);
- :mod:`.adapters`: open_clip's calling convention for Hugging Face models and the embedding width.

Nothing here reaches the runtime: the runtime ``Preprocess`` of a torch model is built by its users
from :func:`preprocess_meta`.
"""

from __future__ import annotations

from .adapters import HFClipAdapter, as_clip, embed_dim
from .describe import clip_family, model_arch, preprocess_meta
from .loading import BUNDLED, bundled_teacher, create_open_clip, load_float_clip, load_hf_clip, load_openai_checkpoint

__all__ = [
    "BUNDLED",
    "HFClipAdapter",
    "as_clip",
    "bundled_teacher",
    "clip_family",
    "create_open_clip",
    "embed_dim",
    "load_float_clip",
    "load_hf_clip",
    "load_openai_checkpoint",
    "model_arch",
    "preprocess_meta",
]
