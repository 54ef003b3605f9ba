"""`ternaryclip index`: embed a folder of photos into a searchable database (incremental, resumable)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="index a folder of photos into a SQLite photo database (incremental)",
        description="Walk PHOTOS_DIR, embed every new or changed photo with a .tclip model and store path, "
        "size, mtime, a thumbnail and the embedding in --db (one SQLite file, WAL). Photos are turned upright "
        "by their EXIF orientation; JPEGs are decoded at a reduced scale (at least twice the model's input), "
        "HEIC/HEIF read when pillow-heif is installed. Deleted photos are "
        "dropped; unreadable files are skipped and counted. With --import, store embeddings written by "
        "the Ray Data example (Parquet) instead of embedding here.",
    )
    p.add_argument("photos_dir", nargs="?", help="folder of photos (searched recursively)")
    p.add_argument("--model", help="path to a .tclip model, or hf-hub:ORG/NAME / hf:ORG/NAME (converted once)")
    p.add_argument("--db", required=True, help="photo database file (created if missing)")
    p.add_argument("--threads", type=int, help="CPU threads for the model (default: all)")
    p.add_argument("--batch", type=int, default=32, help="photos per batch (one commit per batch)")
    p.add_argument(
        "--decode-threads", type=int, default=2, help="threads decoding photos ahead of the model (default: 2)"
    )
    p.add_argument("--report", help="write the files that could not be read (path<TAB>reason) to this file")
    p.add_argument("--import", dest="import_dir", metavar="DIR", help="Parquet embeddings from the Ray example")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..photos import PhotoStore, RuntimeEncoder, index_folder

    if args.batch < 1:
        raise ValueError("--batch must be at least 1")
    if args.decode_threads < 1:
        raise ValueError("--decode-threads must be at least 1")
    with PhotoStore(args.db) as store:
        if args.import_dir:
            from ..photos.ray_embed import import_embeddings

            count = import_embeddings(args.import_dir, store)
            print(f"imported {count} embeddings into {args.db} ({store.count()} photos)")
            return 0
        if not args.photos_dir or not args.model:
            raise ValueError("give PHOTOS_DIR and --model (or --import DIR)")
        from .model_args import hub_tclip, is_hub_name

        model = str(hub_tclip(args.model)) if is_hub_name(args.model) else args.model  # converted once
        encoder = RuntimeEncoder(model, threads=args.threads, batch_size=args.batch)
        report = index_folder(
            args.photos_dir,
            store,
            encoder,
            batch_size=args.batch,
            workers=args.decode_threads,
            progress=not args.no_progress,
        )
        failures = store.failures()
    print(report.summary())
    print(f"{args.db}: {len(failures)} unreadable files on record")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.writelines(f"{path}\t{reason}\n" for path, reason in failures)
    elif report.failed:
        print("unreadable (use --report FILE for the list):", file=sys.stderr)
        for path, reason in report.failed[:10]:
            print(f"  {path}: {reason}", file=sys.stderr)
    return 0
