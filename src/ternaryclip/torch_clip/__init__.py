"""The torch side of CLIP models, in one home: loading, describing and calling open_clip / HF CLIPs.

- :mod:`.loading`: :func:`load_float_clip`, the one loader every verb uses;
- :mod:`.describe`: architecture and preprocessing of a torch CLIP, as data (used by ``pack.export``);
- :mod:`.adapters`: open_clip's calling convention for Hugging Face models, the embedding width and
  the runtime ``Preprocess`` of a torch model.

Submodules load on first use, so ``pack.export`` can read :mod:`.describe` without the runtime.
"""

from __future__ import annotations

import importlib

_HOME = {
    "load_float_clip": "loading",
    "bundled_teacher": "loading",
    "create_open_clip": "loading",
    "load_hf_clip": "loading",
    "load_openai_checkpoint": "loading",
    "BUNDLED": "loading",
    "model_arch": "describe",
    "preprocess_meta": "describe",
    "HFClipAdapter": "adapters",
    "as_clip": "adapters",
    "embed_dim": "adapters",
    "model_preprocess": "adapters",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_HOME)
