"""`ternaryclip <verb>`: each verb lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import sys

from . import bench, embed, info, pack, stats

VERBS = {"stats": stats, "pack": pack, "info": info, "embed": embed, "bench": bench}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ternaryclip",
        description="Ternary (1.58-bit) CLIP: quantize, distill, pack and run CLIP models with weights in {-1, 0, +1}.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, module in VERBS.items():
        module.add_parser(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return VERBS[args.verb].run(args) or 0
    except (ValueError, FileNotFoundError) as err:  # TclipError and NotTernaryError are ValueErrors
        print(f"ternaryclip {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
