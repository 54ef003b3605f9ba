"""`ternaryclip search`: the photos most like a text or an image."""

from __future__ import annotations

import argparse
import json


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="search a photo database by text or by an image",
        description="Rank the photos of --db by cosine similarity to a text (or to --image) embedded with the "
        "model the database was indexed with (recorded with its SHA-256 by `ternaryclip index`), or --model.",
    )
    p.add_argument("query", nargs="?", help="what to look for, e.g. 'a red car'")
    p.add_argument("--image", help="search by this image instead of a text")
    p.add_argument("--db", required=True, help="photo database built by `ternaryclip index`")
    p.add_argument("--model", help="the .tclip model the database was indexed with (default: the one it records)")
    p.add_argument("-k", type=int, default=20, help="number of results")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")


def run(args: argparse.Namespace) -> int:
    from ..photos import PhotoStore, RuntimeEncoder, Searcher

    if (args.query is None) == (args.image is None):
        raise ValueError("give a query text or --image, not both")
    if args.k < 1:
        raise ValueError("-k must be at least 1")
    with PhotoStore(args.db, readonly=True) as store:
        encoder = RuntimeEncoder(args.model or store.model_file(), threads=args.threads)
        if store.get_meta("model"):
            store.check_model(encoder.model_id, encoder.dim)
        searcher = Searcher(store, encoder)
        hits = searcher.by_image(args.image, args.k) if args.image else searcher.by_text(args.query, args.k)
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=1))
        return 0
    for rank, hit in enumerate(hits, 1):
        labels = ", ".join(label for label, _ in hit.labels)
        print(f"{rank:3d}  {hit.score:.3f}  {hit.path}" + (f"  [{labels}]" if labels else ""))
    return 0
