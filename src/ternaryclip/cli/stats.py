"""`ternaryclip stats`: how ternary a CLIP becomes under a config, and what it would compress to."""

from __future__ import annotations

import argparse
import json

from ..choices import PACKINGS
from .model_args import add_model_source, add_ternary_config, load_model, ternary_config

HELP = "ternary fraction, sparsity, bits/weight and compression of a ternarized CLIP"
DESCRIPTION = """\
Ternarize a CLIP (random init or a checkpoint) and print its ternary statistics: a per-role table, or
everything as JSON with --json.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION)
    add_model_source(p)
    add_ternary_config(p)
    p.add_argument(
        "--packing",
        choices=(*PACKINGS, "ideal"),
        default="base3",
        help="bits a ternary weight: base3 = 1.6, 2bit = 2, ideal = log2(3) = 1.585",
    )
    p.add_argument("--json", action="store_true", help="print the full statistics (every parameter) as JSON")


def run(args: argparse.Namespace) -> int:
    from ..quant import ternarize_, ternary_stats
    from ..quant.stats import grouped_rows

    model = load_model(args)
    ternarize_(model, ternary_config(args))
    stats = ternary_stats(model, packing=args.packing)
    if args.json:
        print(json.dumps(stats, indent=1))
        return 0
    print(f"{'parameter (role)':<62} {'x':>3} {'shape':>14} {'params':>11} {'ternary':>7} {'zeros':>6}")
    for g in grouped_rows(stats["modules"]):
        zeros = f"{g['zeros'] / g['numel']:.1%}" if g["ternary"] else ""
        shape = "x".join(map(str, g["shape"]))
        print(
            f"{g['name']:<62} {g['count']:>3} {shape:>14} {g['numel']:>11,} {'yes' if g['ternary'] else 'no':>7} {zeros:>6}"
        )
    print()
    for tower, t in [("model", stats)] + list(stats["per_tower"].items()):
        print(
            f"{tower:<7} params {t['total_params']:>12,}  ternary {t['ternary_fraction']:7.3%}  "
            f"sparsity {t['sparsity']:6.2%}  avg bits {t['avg_bits_per_param']:6.3f}  "
            f"compression vs fp32 {t['compression_vs_fp32']:6.2f}x"
        )
    print(
        f"(ternary weights at {stats['bits_per_weight']:.3f} bits ({args.packing}); scales and float "
        f"parameters at {stats['scale_bits']} bits)"
    )
    return 0
