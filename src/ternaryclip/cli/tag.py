"""`ternaryclip tag`: zero-shot labels for every photo of a database."""

from __future__ import annotations

import argparse


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="tag every photo of a database with its best labels (zero-shot)",
        description="Score every photo of --db against the labels in --labels (one a line) and store the best "
        "--top labels per photo; `search` and the web page show them.",
    )
    p.add_argument("--db", required=True, help="photo database built by `ternaryclip index`")
    p.add_argument("--model", required=True, help="the .tclip model the database was indexed with")
    p.add_argument("--labels", required=True, help="text file, one label a line")
    p.add_argument("--template", default="a photo of {}", help="prompt around each label ({} is the label)")
    p.add_argument("--top", type=int, default=3, help="labels kept per photo")
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")


def run(args: argparse.Namespace) -> int:
    from ..photos import PhotoStore, RuntimeEncoder, read_labels, tag_photos

    labels = read_labels(args.labels)
    if not 1 <= args.top <= len(labels):
        raise ValueError(f"--top must be 1..{len(labels)} (the number of labels)")
    encoder = RuntimeEncoder(args.model, threads=args.threads)
    with PhotoStore(args.db, readonly=True) as probe:  # refuse a missing database instead of creating one
        probe.count()
    with PhotoStore(args.db) as store:
        count = tag_photos(store, encoder, labels, template=args.template, top=args.top)
    print(f"tagged {count} photos with the best {args.top} of {len(labels)} labels")
    return 0
