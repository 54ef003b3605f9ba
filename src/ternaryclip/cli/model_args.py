"""Command-line options shared by verbs that take a float CLIP model and a ternary config."""

from __future__ import annotations

import argparse

from ..quant.rules import GRANULARITIES, RULES


def add_model_source(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--open-clip", metavar="NAME",
                       help="open_clip architecture: a config name (ViT-B-16), a JSON config file or local-dir:PATH")
    group.add_argument("--hf", metavar="DIR", help="Hugging Face CLIPModel folder (config.json + weights)")
    parser.add_argument("--pretrained", metavar="PATH",
                        help="open_clip checkpoint file (.pt/.bin/.safetensors); random init when omitted")


def add_ternary_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rule", choices=RULES, default="absmean",
                        help="ternary rule: absmean (BitNet b1.58), absmean2 (zero where |w| <= mean|w|), twn")
    parser.add_argument("--granularity", choices=GRANULARITIES, default="channel",
                        help="one scale per tensor, per output channel (row) or per group of inputs")
    parser.add_argument("--group-size", type=int, default=128, help="inputs per scale with --granularity group")
    parser.add_argument("--scope", default="all",
                        help="all (every linear layer of both towers), ffn (MLP only) or a regex over parameter names")
    parser.add_argument("--embedding", action="store_true", help="also ternarize the token embedding (per-row scales)")


def load_model(args: argparse.Namespace):
    from ..clip_models import create_open_clip, load_hf_clip

    if args.hf:
        if args.pretrained:
            raise ValueError("--pretrained goes with --open-clip; a Hugging Face folder holds its own weights")
        return load_hf_clip(args.hf)
    return create_open_clip(args.open_clip, args.pretrained)


def ternary_config(args: argparse.Namespace):
    from ..quant import TernaryConfig

    return TernaryConfig(rule=args.rule, granularity=args.granularity, group_size=args.group_size,
                         scope=args.scope, embedding=args.embedding)
