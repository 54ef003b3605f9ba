"""`ternaryclip <verb>`: each verb lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import sys

from . import bench, clip_benchmark, distill, embed, evaluate, info, pack, quickstart, report, serve, stats
from . import index as index_verb
from . import search as search_verb
from . import tag as tag_verb

VERBS = {
    "stats": stats,
    "pack": pack,
    "info": info,
    "embed": embed,
    "bench": bench,
    "distill": distill,
    "eval": evaluate,
    "report": report,
    "clip-benchmark": clip_benchmark,
    "quickstart": quickstart,
    "serve": serve,
    "index": index_verb,
    "search": search_verb,
    "tag": tag_verb,
}


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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["clip-benchmark"]:  # every following flag is CLIP_benchmark's, --help included
        from ..eval.clip_benchmark import main as clip_benchmark_main

        try:
            return clip_benchmark_main(argv[1:])
        except (ValueError, FileNotFoundError) as err:  # e.g. a data set name CLIP_benchmark does not know
            print(f"ternaryclip clip-benchmark: error: {err}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    try:
        return VERBS[args.verb].run(args) or 0
    except (ValueError, FileNotFoundError) as err:  # TclipError and NotTernaryError are ValueErrors
        print(f"ternaryclip {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
