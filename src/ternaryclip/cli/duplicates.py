"""`ternaryclip duplicates`: groups of near-identical photos in a photo database (burst shots, copies)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="list groups of near-identical photos in a photo database",
        description="Group the photos of --db whose stored embeddings have a cosine similarity of at least "
        "--threshold (connected groups: a chain of burst shots is one group). The first photo of a group "
        "has the most pixels (then the largest file); each line shows its similarity to that one. "
        "Nothing is deleted.",
    )
    p.add_argument("--db", required=True, help="photo database built by `ternaryclip index`")
    p.add_argument("--threshold", type=float, default=0.95, help="cosine similarity that links two photos")
    p.add_argument("--json", action="store_true", help="print the groups as JSON")


def run(args: argparse.Namespace) -> int:
    from ..photos import PhotoStore, find_duplicates

    if not 0 < args.threshold <= 1:
        raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")
    with PhotoStore(args.db, readonly=True) as store:
        groups = find_duplicates(store, args.threshold)
        total = store.count()
    if args.json:
        print(json.dumps(groups, indent=1))
        return 0
    for number, group in enumerate(groups, 1):
        print(f"group {number}: {len(group)} photos")
        for photo in group:
            print(f"  {photo['similarity']:.3f}  {photo['width']}x{photo['height']}  {photo['path']}")
    in_groups = sum(len(g) for g in groups)
    groups_word = "group" if len(groups) == 1 else "groups"
    print(
        f"{len(groups)} {groups_word} of near-duplicates ({in_groups} of {total} photos) at threshold {args.threshold}"
    )
    return 0
