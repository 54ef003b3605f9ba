"""`ternaryclip info`: architecture, ternary fraction, sparsity, bits a weight and compression of a .tclip."""

from __future__ import annotations

import argparse
import json
import os

HELP = "describe a .tclip file"
DESCRIPTION = """\
Validate a .tclip file and print its architecture, ternary fraction, sparsity, bits a weight, file size and
compression vs fp32, per tower.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION)
    p.add_argument("model", help="path to a .tclip file")
    p.add_argument("--json", action="store_true", help="print everything as JSON")


def run(args: argparse.Namespace) -> int:
    from ..pack.info import describe

    if os.path.isdir(args.model):
        raise ValueError(f"{args.model} is a folder, not a .tclip file")
    info = describe(args.model)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    arch, q = info["arch"], info["quantization"]
    v, t = arch["vision"], arch["text"]
    print(f"{info['file']}")
    print(
        f"  vision  ViT {v['layers']} layers x {v['width']} wide, {v['heads']} heads, patch {v['patch_size']}, "
        f"{v['image_size']} px"
    )
    print(
        f"  text    {t['layers']} layers x {t['width']} wide, {t['heads']} heads, context {t['context_length']}, "
        f"vocab {t['vocab_size']}"
    )
    activation = {"": "QuickGELU" if arch["quick_gelu"] else "GELU", "gelu": "GELU", "gelu_tanh": "GELU-tanh"}
    mlps = {activation[v.get("activation", "")], activation[t.get("activation", "")]}
    print(f"  embed   {arch['embed_dim']}, {' / '.join(sorted(mlps))}")
    if info["family"] == "siglip":
        print(
            f"  siglip  {v.get('pool_type')} pool head, text pooled at its {t['pool_type']} token "
            f"({'causal' if t['causal'] else 'not causal'}), sigmoid logits with logit_bias"
        )
    tok = info["tokenizer"]
    if tok.get("type") == "hf_tokenizers":
        print(f"  tokens  tokenizer.json inside ({tok['blob_bytes']:,} bytes), pad id {tok['pad_id']}, {tok['clean']}")
    elif tok.get("type") == "none":
        print("  tokens  no tokenizer inside: token ids only (pack with --tokenizer DIR to add one)")
    print(
        f"  quant   scope {q.get('scope')}, rule {q.get('post_training_rule') or q.get('rule')}, "
        f"granularity {q.get('granularity')}, embedding {q.get('embedding')}, packing {info['packing']}, "
        f"floats {info['float_dtype']}"
    )
    for tower, s in [("model", info)] + list(info["per_tower"].items()):
        print(
            f"  {tower:<7} {s['total_params']:>12,} params  {s['ternary_fraction']:7.3%} ternary  "
            f"sparsity {s['sparsity']:6.2%}"
        )
    print(
        f"  file    {info['file_bytes']:,} bytes ({info['bits_per_ternary_weight']:.3f} bits a ternary weight); "
        f"fp32 {info['fp32_bytes']:,} bytes -> {info['compression_vs_fp32']:.2f}x smaller"
    )
    return 0
