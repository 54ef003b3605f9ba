"""What a ``.tclip`` file holds: architecture, ternary fraction, sparsity, real bits a weight, compression."""

from __future__ import annotations

import os

import numpy as np

from ..arch import tower_of
from .bits import packed_base3_size
from .format import TclipModel, read


def _count(model: TclipModel, names: set[str]) -> dict:
    tern = [t for n, t in model.ternary.items() if n in names]
    floats = [a for n, a in model.floats.items() if n in names]
    ternary_params = sum(t.numel for t in tern)
    float_params = sum(a.size for a in floats)
    zeros = sum(int(np.count_nonzero(t.codes() == 0)) for t in tern)
    total = ternary_params + float_params
    return {
        "total_params": total,
        "ternary_params": ternary_params,
        "float_params": float_params,
        "ternary_fraction": ternary_params / total if total else 0.0,
        "sparsity": zeros / ternary_params if ternary_params else 0.0,
        "fp32_bytes": 4 * total,
    }


def describe(path: str | os.PathLike) -> dict:
    """Architecture and size facts of a ``.tclip`` file (reads and validates it)."""
    model = read(path)
    size = os.path.getsize(path)
    all_names = set(model.ternary) | set(model.floats)
    summary = _count(model, all_names)
    packing = model.packing
    ternary_bytes = sum(
        t.packed.nbytes if packing == "2bit" else packed_base3_size(*t.shape) for t in model.ternary.values()
    )
    summary.update(
        file=str(path),
        file_bytes=size,
        packing=packing,
        float_dtype=model.meta.get("quantization", {}).get("float_dtype"),
        bits_per_ternary_weight=8 * ternary_bytes / summary["ternary_params"] if summary["ternary_params"] else 0.0,
        compression_vs_fp32=summary["fp32_bytes"] / size,
        arch=model.meta["arch"],
        quantization=model.meta.get("quantization", {}),
        provenance=model.meta.get("provenance", {}),
        preprocess=model.meta.get("preprocess", {}),
        family="siglip" if model.arch.is_siglip else "clip",
        tokenizer={**model.meta.get("tokenizer", {}), "blob_bytes": sum(len(b) for b in model.blobs.values())},
    )
    summary["per_tower"] = {
        tower: _count(model, {n for n in all_names if tower_of(n) == tower}) for tower in ("vision", "text", "other")
    }
    return summary
