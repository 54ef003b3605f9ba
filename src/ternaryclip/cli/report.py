"""`ternaryclip report`: one table and one chart from many result files (ours and CLIP_benchmark's)."""

from __future__ import annotations

import argparse

HELP = "table + chart from result JSON files (ternaryclip eval, CLIP_benchmark)"
DESCRIPTION = """\
Collect results of `ternaryclip eval --json` and `clip_benchmark eval --output` into a Markdown table (data
set x model, headline metric) and a PNG chart.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION)
    p.add_argument("files", nargs="+", help="result JSON files")
    p.add_argument("--out", help="Markdown file to write (default: print)")
    p.add_argument("--plot", metavar="PNG", help="chart to write")
    p.add_argument("--reference", help="model label to compare against (e.g. the teacher): adds ratios")


def run(args: argparse.Namespace) -> int:
    from ..eval.report import markdown, plot, read_results

    results = read_results(args.files)
    text = markdown(results, reference=args.reference)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"# Results\n\n{text}")
    print(text, end="")
    if args.plot:
        plot(results, args.plot)
    return 0
