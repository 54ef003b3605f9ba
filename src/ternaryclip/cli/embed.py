"""`ternaryclip embed`: image and text embeddings from a .tclip model, without torch."""

from __future__ import annotations

import argparse
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="embed images and texts with a .tclip model (torch-free runtime)",
        description="Encode images (files or folders) and texts with the torch-free runtime and "
        "save the embeddings to a .npz (arrays image, text, image_files) or .npy file.",
    )
    p.add_argument("model", help="path to a .tclip file")
    p.add_argument("--images", nargs="*", default=[], help="image files or folders (searched for image files)")
    p.add_argument("--texts", nargs="*", default=[], help="texts to encode")
    p.add_argument("--out", required=True, help="output .npz (or .npy: image embeddings, else text)")
    p.add_argument(
        "--mode",
        choices=("fast", "exact"),
        default="fast",
        help="fast: int8 activations (W1.58-A8); exact: float activations (W1.58-A16)",
    )
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")


def image_files(items: list[str]) -> list[Path]:
    files = []
    for item in map(Path, items):
        if item.is_dir():
            files.extend(sorted(f for f in item.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"no such image file or folder: {item}")
    return files


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..runtime import load

    if not args.images and not args.texts:
        raise ValueError("give --images and/or --texts")
    model = load(args.model, mode=args.mode, threads=args.threads, batch_size=args.batch_size)
    files = image_files(args.images)
    image = model.encode_image(files, normalize=args.normalize) if files else np.zeros((0, model.arch.embed_dim))
    text = (
        model.encode_text(args.texts, normalize=args.normalize) if args.texts else np.zeros((0, model.arch.embed_dim))
    )
    out = Path(args.out)
    if out.suffix == ".npy":
        np.save(out, image if files else text)
    else:
        np.savez(out, image=image, text=text, image_files=np.array([str(f) for f in files]))
    print(f"wrote {out}: {len(files)} image and {len(args.texts)} text embeddings of size {model.arch.embed_dim}")
    return 0
