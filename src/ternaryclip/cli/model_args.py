"""Command-line options shared by verbs: a float CLIP model, a ternary config, counts that must be positive."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..choices import GRANULARITIES, RULES


def positive_int(text: str) -> int:
    """argparse type for counts (threads, steps, batch sizes): an integer >= 1, else argparse's usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type for counts where 0 means none (``--workers 0``: no decoding threads)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type for rates: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_threads(parser: argparse.ArgumentParser, help: str = "CPU threads (default: all)") -> None:
    parser.add_argument("--threads", type=positive_int, help=help)


def add_model_source(parser: argparse.ArgumentParser, checkpoint: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--open-clip",
        metavar="NAME",
        help="open_clip architecture: a config name (ViT-B-16), a JSON config file, local-dir:PATH or "
        "hf-hub:ORG/NAME (through the Hugging Face cache)",
    )
    group.add_argument(
        "--hf",
        metavar="DIR",
        help="Hugging Face CLIPModel / SiglipModel folder (config.json + weights) or hub repository ORG/NAME",
    )
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
    parser.add_argument(
        "--group-size", type=positive_int, default=128, help="inputs per scale with --granularity group"
    )
    parser.add_argument(
        "--scope",
        default="all",
        help="all (every linear layer of both towers), ffn (MLP only) or a regex over parameter names",
    )
    parser.add_argument("--embedding", action="store_true", help="also ternarize the token embedding (per-row scales)")


def load_model(args: argparse.Namespace):
    from ..torch_clip.loading import load_float_clip

    if getattr(args, "checkpoint", None):
        return load_float_clip(args.checkpoint, family="openai", quick_gelu=args.act == "quick_gelu")
    if args.hf:
        return load_float_clip(args.hf, args.pretrained, family="hf")
    return load_float_clip(args.open_clip, args.pretrained, family="open_clip")


def ternary_config(args: argparse.Namespace):
    from ..quant import TernaryConfig

    return TernaryConfig(
        rule=getattr(args, "rule", "absmean"),
        granularity=args.granularity,
        group_size=args.group_size,
        scope=args.scope,
        embedding=args.embedding,
    )


def model_tokenizer(args: argparse.Namespace, model):
    """``(folder, clean)`` of the tokenizer to pack with ``model``: ``--tokenizer``, else a SigLIP's own
    (the HF folder or repository, or what an open_clip hub config names); ``(None, ...)`` for a CLIP."""
    from ..torch_clip.describe import model_arch

    if getattr(args, "tokenizer", None):
        return args.tokenizer, "canonicalize"
    if getattr(args, "checkpoint", None) or not model_arch(model).is_siglip:
        return None, "canonicalize"
    from ..torch_clip.hub import tokenizer_of

    return tokenizer_of(args.hf, "hf") if args.hf else tokenizer_of(args.open_clip, "open_clip")


HUB_NAMES = ("hf-hub:", "hf:")  # open_clip's repository name; a transformers repository


def is_hub_name(spec: str) -> bool:
    return spec.startswith(HUB_NAMES)


def hub_tclip(spec: str) -> Path:
    """A ``.tclip`` for ``hf-hub:ORG/NAME`` (open_clip) or ``hf:ORG/NAME`` (transformers), converted once.

    The repository comes through huggingface_hub's cache; its conversion (scope ``auto``: the weights
    that are ternary x scale, as the TernaryCLIP release stores them, with the tokenizer it names) is
    kept in ``$TERNARYCLIP_CACHE`` (default ``~/.cache/ternaryclip``) under the snapshot's revision, so
    a later start loads the file at once and a new revision converts again.
    """
    from ..torch_clip.hub import TRANSFORMERS_FILES, open_clip_snapshot, snapshot, tokenizer_of

    open_clip = spec.startswith("hf-hub:")
    repo_id = spec.split(":", 1)[1]
    folder = open_clip_snapshot(spec) if open_clip else snapshot(repo_id, TRANSFORMERS_FILES)
    cache = Path(os.environ.get("TERNARYCLIP_CACHE") or Path.home() / ".cache" / "ternaryclip")
    target = cache / "hub" / f"{repo_id.replace('/', '--')}--{folder.name}.tclip"
    if target.is_file():
        return target
    try:
        from ..pack.export import save
        from ..quant import TernaryConfig
        from ..torch_clip.loading import load_float_clip
    except ImportError as err:
        raise ValueError(
            f"converting {spec} needs the train extra ({err.name} is missing): pip install 'ternaryclip[train]', "
            "or pack it elsewhere with ternaryclip pack and give the .tclip"
        ) from None
    family = "open_clip" if open_clip else "hf"
    model = load_float_clip(f"local-dir:{folder}" if open_clip else str(folder), family=family)
    tokenizer, clean = tokenizer_of(spec if open_clip else str(folder), family)
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"converting {spec} (revision {folder.name[:12]}) into {target}", flush=True)
    return save(
        model,
        target,
        config=TernaryConfig(scope="auto"),
        provenance={"source": spec, "revision": folder.name},
        tokenizer=tokenizer,
        tokenizer_clean=clean,
    )
