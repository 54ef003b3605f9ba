"""`ternaryclip pack`: write a float CLIP checkpoint whose weights are ternary (or made so) as ``.tclip``."""

from __future__ import annotations

import argparse

from ..choices import FLOAT_DTYPES, PACKINGS, RULES
from .model_args import add_model_source, add_ternary_config


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="pack a CLIP checkpoint into a .tclip file (2bit or base3)",
        description="Read a float CLIP (open_clip config + checkpoint, an HF folder, or an OpenAI-layout state "
        "dict), check that the weights in --scope are ternary x scale per row (as the public "
        "TernaryCLIP release stores them) and pack them losslessly. Without --quantize the default "
        "--scope auto packs exactly the weights that are ternary x scale and keeps (and lists) the "
        "rest float; with an explicit scope, weights that are not ternary are refused unless "
        "--quantize RULE ternarizes them (post-training).",
    )
    add_model_source(p, checkpoint=True)
    add_ternary_config(p, rule=False)
    p.set_defaults(scope=None)  # auto without --quantize, all with it
    p.add_argument("--out", required=True, help="output .tclip path (written atomically)")
    p.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="Hugging Face tokenizer folder to carry inside the file (a SigLIP's; found by itself for hub "
        "and HF folders that hold one)",
    )
    p.add_argument(
        "--packing",
        choices=PACKINGS,
        default="2bit",
        help="2bit: the kernel layout, 2 bits a weight; base3: 1.6 bits a weight, smallest file",
    )
    p.add_argument(
        "--quantize",
        choices=RULES,
        metavar="RULE",
        help=f"ternarize weights that are not ternary with this rule ({', '.join(RULES)})",
    )
    p.add_argument(
        "--float-dtype",
        choices=FLOAT_DTYPES,
        default="fp32",
        help="storage of the tensors that stay float (LayerNorms, biases, positional embeddings)",
    )


def run(args: argparse.Namespace) -> int:
    from ..pack.export import save
    from ..pack.info import describe
    from .model_args import load_model, model_tokenizer, ternary_config

    if args.scope is None:
        args.scope = "auto" if args.quantize is None else "all"
    model = load_model(args)
    tokenizer, clean = model_tokenizer(args, model)
    source = args.open_clip or args.hf or args.checkpoint
    provenance = {"source": source, "pretrained": args.pretrained}
    path = save(
        model,
        args.out,
        packing=args.packing,
        float_dtype=args.float_dtype,
        config=ternary_config(args),
        quantize=args.quantize,
        provenance=provenance,
        tokenizer=tokenizer,
        tokenizer_clean=clean,
    )
    info = describe(path)
    print(
        f"wrote {path}: {info['file_bytes'] / 1e6:.2f} MB, {info['ternary_fraction']:.2%} ternary, "
        f"{info['compression_vs_fp32']:.2f}x smaller than fp32"
    )
    if info["tokenizer"].get("type") == "none":
        print("note: no tokenizer packed (this SigLIP encodes token ids only); add one with --tokenizer DIR")
    kept = info["quantization"].get("kept_float")
    if kept:
        print(f"kept float ({len(kept)} weights not ternary x scale): {', '.join(kept)}")
    return 0
