"""How ternary a model is: ternary fraction, sparsity, bits per weight and compression vs fp32.

Compression counts everything a packed file must hold, not only the codes:
``avg_bits = (ternary * bits_per_weight + scales * scale_bits + float_params * float_bits) / total``
and ``compression_vs_fp32 = 32 / avg_bits``.  Without scales this is the paper's
``32 / (p b + (1 - p) 32)`` (16.98x at p = 0.99, b = 1.58); per-row scales add ~0.04 bits a weight
on ViT-B rows of 768, so our figure is the honest, slightly lower one.
"""

from __future__ import annotations

import math
import re

from torch import nn

from ..arch import tower_of
from .surgery import ternary_sites

PACKING_BITS = {"2bit": 2.0, "base3": 8 / 5, "ideal": math.log2(3)}
_LAYER_INDEX = re.compile(r"\.\d+\.")


def clean_param_name(name: str) -> str:
    """``a.parametrizations.weight.original`` -> ``a.weight``."""
    return re.sub(r"parametrizations\.([^.]+)\.original$", r"\1", name)


def ternary_stats(model: nn.Module, packing: str = "base3", float_bits: int = 32, scale_bits: int = 32) -> dict:
    """Counts and ratios for a (ternarized) model; also works on a float model (zero ternary).

    ``packing`` sets ``bits_per_weight``: ``2bit`` (2.0), ``base3`` (1.6, what ``.tclip`` base3 stores)
    or ``ideal`` (log2 3 = 1.585, the paper's 1.58).
    """
    if packing not in PACKING_BITS:
        raise ValueError(f"unknown packing {packing!r}: expected one of {', '.join(PACKING_BITS)}")
    ternary = {}
    for name, module, param_name, p in ternary_sites(model):
        latent = module.parametrizations[param_name].original
        codes, scales = p.quantize(latent)
        ternary[name] = (int((codes == 0).sum()), scales.numel(), p)

    rows = []
    for raw_name, param in model.named_parameters():
        name = clean_param_name(raw_name)
        row = {"name": name, "shape": list(param.shape), "numel": param.numel(), "tower": tower_of(name)}
        if name in ternary:
            zeros, n_scales, p = ternary[name]
            row.update(
                ternary=True,
                zeros=zeros,
                sparsity=zeros / param.numel(),
                scales=n_scales,
                kind=p.kind,
                rule=p.rule,
                granularity=p.granularity,
            )
        else:
            row.update(ternary=False)
        rows.append(row)

    bpw = PACKING_BITS[packing]
    summary = _summarize(rows, bpw, float_bits, scale_bits)
    summary.update(packing=packing, bits_per_weight=bpw, float_bits=float_bits, scale_bits=scale_bits)
    summary["per_tower"] = {
        tower: _summarize([r for r in rows if r["tower"] == tower], bpw, float_bits, scale_bits)
        for tower in ("vision", "text", "other")
    }
    summary["modules"] = rows
    return summary


def _summarize(rows: list[dict], bpw: float, float_bits: int, scale_bits: int) -> dict:
    total = sum(r["numel"] for r in rows)
    tern = sum(r["numel"] for r in rows if r["ternary"])
    zeros = sum(r["zeros"] for r in rows if r["ternary"])
    scales = sum(r["scales"] for r in rows if r["ternary"])
    bits = tern * bpw + scales * scale_bits + (total - tern) * float_bits
    avg_bits = bits / total if total else 0.0
    return {
        "total_params": total,
        "ternary_params": tern,
        "float_params": total - tern,
        "scale_count": scales,
        "ternary_fraction": tern / total if total else 0.0,
        "sparsity": zeros / tern if tern else 0.0,
        "avg_bits_per_param": avg_bits,
        "compression_vs_fp32": 32.0 / avg_bits if avg_bits else 0.0,
        "ideal_size_bytes": math.ceil(bits / 8),
    }


def grouped_rows(rows: list[dict]) -> list[dict]:
    """Collapse per-layer rows (``...resblocks.3.mlp...``) into one row per role, for printing."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        key = (_LAYER_INDEX.sub(".*.", r["name"]), tuple(r["shape"]), r["ternary"])
        g = groups.setdefault(
            key, {"name": key[0], "shape": r["shape"], "ternary": r["ternary"], "count": 0, "numel": 0, "zeros": 0}
        )
        g["count"] += 1
        g["numel"] += r["numel"]
        g["zeros"] += r.get("zeros", 0)
    return list(groups.values())
