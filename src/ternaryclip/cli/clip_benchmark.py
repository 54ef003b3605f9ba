"""`ternaryclip clip-benchmark ...`: CLIP_benchmark's CLI with the `ternaryclip` model type registered."""

from __future__ import annotations

import argparse

HELP = "run CLIP_benchmark with --model_type ternaryclip available"
DESCRIPTION = """\
Everything after the verb goes to CLIP_benchmark, e.g. `ternaryclip clip-benchmark eval --model_type
ternaryclip --model s.tclip --pretrained fast --dataset cifar10 --no_amp`.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION, add_help=False)
    # Never parsed: ``cli.main`` hands everything after the verb to CLIP_benchmark before parsing.
    p.add_argument("args", nargs=argparse.REMAINDER)
