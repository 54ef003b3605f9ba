"""`ternaryclip eval`: zero-shot classification and retrieval of a model, optionally next to its teacher."""

from __future__ import annotations

import argparse
import json

from ..choices import MODES
from .model_args import positive_int

HELP = "zero-shot classification / retrieval of a .tclip or torch CLIP (vs its teacher)"
DESCRIPTION = """\
Evaluate a model on a data set with CLIP_benchmark's metric definitions. Models: a .tclip file (torch-free
runtime), 'bundled' (the bundled teacher), an open_clip name or JSON config with
--pretrained/--teacher-pretrained, or a Hugging Face folder. With --teacher, both are shown side by side
with student/teacher ratios.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION)
    p.add_argument("--model", required=True, help="the model to evaluate (usually the ternary student)")
    p.add_argument("--pretrained", help="checkpoint for an open_clip --model")
    p.add_argument("--teacher", help="reference model, evaluated on the same data")
    p.add_argument("--teacher-pretrained", help="checkpoint for an open_clip --teacher")
    p.add_argument(
        "--dataset",
        required=True,
        help="synthetic | synthetic/<task> | an image folder root/<class>/*.jpg | a CSV/TSV of image,caption",
    )
    p.add_argument("--task", default="auto", choices=("auto", "zeroshot_classification", "zeroshot_retrieval"))
    p.add_argument("--classnames", help="TXT (one per line) or JSON (folder -> name) class names for an image folder")
    p.add_argument("--templates", help="TXT (one per line, {c} = class) or JSON list of prompt templates")
    p.add_argument("--image-key", default="filepath", help="CSV/TSV image column")
    p.add_argument("--caption-key", default="title", help="CSV/TSV caption column")
    p.add_argument("--mode", choices=MODES, default="fast", help="runtime mode for .tclip models")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--threads", type=positive_int, help="CPU threads")
    p.add_argument("--json", metavar="FILE", help="write the results (CLIP_benchmark's result shape, in 'results')")
    p.add_argument("--plot", metavar="PNG", help="bar chart of the results")


def _evaluate(spec, pretrained, args):
    from ..eval.datasets import open_eval_sets
    from ..eval.run import evaluate_set, load_model

    model = load_model(spec, pretrained, args.mode, args.threads, args.batch_size)
    sets = open_eval_sets(
        args.dataset,
        model.preprocess.size,
        args.classnames,
        args.templates,
        args.image_key,
        args.caption_key,
        args.task,
    )
    return [evaluate_set(model, data, args.batch_size) for data in sets]


def run(args: argparse.Namespace) -> int:
    from ..eval.report import json_safe, markdown, plot, skipped_lines
    from ..eval.run import retention

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    results = _evaluate(args.model, args.pretrained, args)
    teacher = _evaluate(args.teacher, args.teacher_pretrained, args) if args.teacher else []
    for line in skipped_lines(results + teacher):
        print(line)
    reference = teacher[0]["model"] if teacher else None
    print(markdown(results + teacher, reference=reference))
    ratios = retention(results, teacher)
    if ratios:
        print("| data set | metric | student | teacher | retention |\n|---|---|---|---|---|")
        for row in ratios:
            print(
                f"| {row['dataset']} | {row['metric']} | {100 * row['student']:.2f} | {100 * row['teacher']:.2f} | "
                f"{row['retention']:.1%} |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_safe({"results": results + teacher, "retention": ratios}), f, indent=2)
    if args.plot:
        plot(results + teacher, args.plot)
    return 0
