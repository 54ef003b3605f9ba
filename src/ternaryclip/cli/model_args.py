"""Command-line options shared by verbs that take a float CLIP model and a ternary config."""

from __future__ import annotations

import argparse

from ..choices import GRANULARITIES, RULES


def add_model_source(parser: argparse.ArgumentParser, checkpoint: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--open-clip",
        metavar="NAME",
        help="open_clip architecture: a config name (ViT-B-16), a JSON config file or local-dir:PATH",
    )
    group.add_argument("--hf", metavar="DIR", help="Hugging Face CLIPModel folder (config.json + weights)")
    parser.add_argument(
        "--pretrained",
        metavar="PATH",
        help="open_clip checkpoint file (.pt/.bin/.safetensors); random init when omitted",
    )
    if checkpoint:
        group.add_argument(
            "--checkpoint",
            metavar="PATH",
            help="OpenAI-layout CLIP state dict (.pt/.bin/.safetensors); the architecture is "
            "inferred from its shapes (64-wide attention heads, as in every OpenAI CLIP)",
        )
        parser.add_argument(
            "--act",
            choices=("quick_gelu", "gelu"),
            default="quick_gelu",
            help="activation of a --checkpoint model (OpenAI: quick_gelu, LAION open_clip: gelu)",
        )


def add_ternary_config(parser: argparse.ArgumentParser, rule: bool = True) -> None:
    if rule:
        parser.add_argument(
            "--rule",
            choices=RULES,
            default="absmean",
            help="ternary rule: absmean (BitNet b1.58), absmean2 (zero where |w| <= mean|w|), twn",
        )
    parser.add_argument(
        "--granularity",
        choices=GRANULARITIES,
        default="channel",
        help="one scale per tensor, per output channel (row) or per group of inputs",
    )
    parser.add_argument("--group-size", type=int, default=128, help="inputs per scale with --granularity group")
    parser.add_argument(
        "--scope",
        default="all",
        help="all (every linear layer of both towers), ffn (MLP only) or a regex over parameter names",
    )
    parser.add_argument("--embedding", action="store_true", help="also ternarize the token embedding (per-row scales)")


def load_model(args: argparse.Namespace):
    from ..clip_models import create_open_clip, load_hf_clip, load_openai_checkpoint

    if getattr(args, "checkpoint", None):
        return load_openai_checkpoint(args.checkpoint, quick_gelu=args.act == "quick_gelu")
    if args.hf:
        if args.pretrained:
            raise ValueError("--pretrained goes with --open-clip; a Hugging Face folder holds its own weights")
        return load_hf_clip(args.hf)
    return create_open_clip(args.open_clip, args.pretrained)


def ternary_config(args: argparse.Namespace):
    from ..quant import TernaryConfig

    return TernaryConfig(
        rule=getattr(args, "rule", "absmean"),
        granularity=args.granularity,
        group_size=args.group_size,
        scope=args.scope,
        embedding=args.embedding,
    )
