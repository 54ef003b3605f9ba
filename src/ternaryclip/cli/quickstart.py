"""`ternaryclip quickstart`: the offline demo of the whole pipeline on the bundled teacher."""

from __future__ import annotations

import argparse

from .model_args import add_threads, positive_float, positive_int

HELP = "offline demo: teacher, post-training ternary, QAT, QAT+KD, packed runtime"
DESCRIPTION = """\
Runs the whole method on the bundled synthetic-world teacher: evaluates the float teacher, post-training
ternarization, QAT alone and QAT + distillation, packs the distilled student to .tclip, runs it without
torch in exact and fast mode, and writes OUT/report.json, report.md and report.png.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION)
    p.add_argument("--out", default="out/quickstart", help="output folder")
    p.add_argument("--steps", type=positive_int, default=None, help="training steps per student (default 200)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="contrastive batch (default 64)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 3e-4)")
    add_threads(p)
    p.add_argument("--eval-images", type=positive_int, default=None, help="images per zero-shot task (default 600)")
    p.add_argument("--latency-repeats", type=positive_int, default=None, help="timed rounds per workload (default 15)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..quickstart import QuickstartOptions, markdown_report, run_quickstart

    given = {k: v for k, v in vars(args).items() if k in QuickstartOptions.__dataclass_fields__ and v is not None}
    report = run_quickstart(QuickstartOptions(**given))
    print()
    print(markdown_report(report))
    print(f"wrote {args.out}/report.json, report.md, report.png")
    return 0
