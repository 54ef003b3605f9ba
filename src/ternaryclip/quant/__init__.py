"""Ternary quantization on the torch side: rules, STE fake-quant, model surgery and stats."""

from .linear import TernaryLinear
from .rules import GRANULARITIES, RULES, dequantize, fake_quant, ternary_quantize, ternary_values
from .stats import PACKING_BITS, ternary_stats
from .surgery import (
    SCOPES,
    TernaryConfig,
    TernaryWeight,
    materialize_,
    select_sites,
    set_ternary_enabled,
    ternarize_,
    ternary_sites,
)

__all__ = [
    "GRANULARITIES",
    "RULES",
    "SCOPES",
    "PACKING_BITS",
    "TernaryConfig",
    "TernaryLinear",
    "TernaryWeight",
    "dequantize",
    "fake_quant",
    "materialize_",
    "select_sites",
    "set_ternary_enabled",
    "ternarize_",
    "ternary_quantize",
    "ternary_sites",
    "ternary_stats",
    "ternary_values",
]
