"""`ternaryclip <verb>`: each verb lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import os
import sys

from .._version import __version__
from . import bench, clip_benchmark, distill, embed, evaluate, info, pack, quickstart, report, serve, stats
from . import duplicates as duplicates_verb
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
    "duplicates": duplicates_verb,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ternaryclip",
        description="Ternary (1.58-bit) CLIP: quantize, distill, pack and run CLIP models with weights in {-1, 0, +1}.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, module in VERBS.items():
        module.add_parser(sub, name)
    parser.verb_parsers = sub.choices  # so that a verb's unknown flag is reported with that verb's usage
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Arguments of one verb; an unknown flag (``info --jsn``) shows the verb's usage, not the top level's."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.verb_parsers[args.verb].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _quiet_broken_pipe() -> int:
    """The reader went away (``ternaryclip info X | head``): stop without a traceback, as a shell tool does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's final flush of stdout would raise again
    return 141  # 128 + SIGPIPE, what the shell reports for a tool that a closed pipe ended


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["clip-benchmark"]:  # every following flag is CLIP_benchmark's, --help included
        from ..eval.clip_benchmark import main as clip_benchmark_main

        try:
            return clip_benchmark_main(argv[1:])
        except (ValueError, OSError) as err:  # e.g. a data set name CLIP_benchmark does not know
            print(f"ternaryclip clip-benchmark: error: {err}", file=sys.stderr)
            return 2
    args = parse(argv)
    try:
        code = VERBS[args.verb].run(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (ValueError, OSError) as err:  # TclipError, NotTernaryError, DataError are ValueErrors
        print(f"ternaryclip {args.verb}: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """The error's message on one line (a library's multi-line text folded), for a one-line stderr report."""
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
