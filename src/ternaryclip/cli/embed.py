"""`ternaryclip embed`: image and text embeddings from a .tclip model, without torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..choices import MODES
from ..data.images import IMAGE_SUFFIXES
from .model_args import add_threads, positive_int

HELP = "embed images and texts with a .tclip model (torch-free runtime)"
DESCRIPTION = """\
Encode images (files or folders) and texts with the torch-free runtime and save the embeddings to a .npz
(arrays image, text, image_files) or .npy file.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION)
    p.add_argument("model", help="path to a .tclip file")
    p.add_argument("--images", nargs="*", default=[], help="image files or folders (searched for image files)")
    p.add_argument("--texts", nargs="*", default=[], help="texts to encode")
    p.add_argument(
        "--out", required=True, help="output file: .npy (image embeddings, else text), anything else an .npz archive"
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="fast",
        help="fast: int8 activations (W1.58-A8); exact: float activations (W1.58-A16); bf16: activations rounded "
        "to bf16 (W1.58-A16 on AMX-BF16 tiles where the CPU has them, else exact mode's kernels)",
    )
    add_threads(p)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")


def image_files(items: list[str]) -> list[Path]:
    """The image files named, and those found (recursively) in the folders named; an empty folder is an error."""
    files = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(f for f in item.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"no image files ({' '.join(IMAGE_SUFFIXES)}) in folder {item}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"no such image file or folder: {item}")
    return files


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name (.npz or .npy)")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")


def _write(out: Path, image, text, files: list[Path]) -> None:
    """Exactly ``out``: numpy would append .npz/.npy to other names, and the path printed would be wrong."""
    import numpy as np

    with open(out, "wb") as f:
        if out.suffix == ".npy":
            np.save(f, image if files else text)
        else:
            np.savez(f, image=image, text=text, image_files=np.array([str(p) for p in files]))


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..runtime import load

    if not args.images and not args.texts:
        raise ValueError("give --images and/or --texts")
    out = Path(args.out)
    _check_out(out)
    files = image_files(args.images)  # before loading the model: a wrong path fails at once
    model = load(args.model, mode=args.mode, threads=args.threads, batch_size=args.batch_size)
    empty = np.zeros((0, model.arch.embed_dim), np.float32)
    image = model.encode_image(files, normalize=args.normalize) if files else empty
    text = model.encode_text(args.texts, normalize=args.normalize) if args.texts else empty
    _write(out, image, text, files)
    print(f"wrote {out}: {len(files)} image and {len(args.texts)} text embeddings of size {model.arch.embed_dim}")
    return 0
