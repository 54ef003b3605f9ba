"""What a ``--data`` spec names, and the refusal of anything but local files.

Spec strings: ``synthetic`` / ``synthetic:SEED``, ``a.csv`` / ``a.tsv`` (or ``csv:PATH``), an image
folder (or ``folder:PATH``), and webdataset shards: ``shards/{000..099}.tar``, a ``.tar`` file, a
folder of ``.tar`` files, or ``wds:PATHS``.  Every spec names local files: URLs (``pipe:``,
``http://``, ...) are refused, also inside a brace expansion (:func:`.sources.refuse_url`), so no
data spec can reach a shell.
"""

from __future__ import annotations

import glob
import os

from ..data.images import IMAGE_SUFFIXES, DataError, read_caption_table
from .sources import ListSource, Source, SyntheticSource, WebDatasetSource, expand_braces, refuse_url


def _folder_records(root: str) -> list[tuple[str, str]]:
    """``captions.txt`` lines ``file<TAB>caption`` (or ``file,caption``), else a ``.txt`` beside each image."""
    listing = os.path.join(root, "captions.txt")
    if os.path.isfile(listing):
        out = []
        with open(listing, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    sep = "\t" if "\t" in line else ","
                    name, _, caption = line.rstrip("\n").partition(sep)
                    out.append((os.path.join(root, name.strip()), caption.strip()))
        return out
    out = []
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_SUFFIXES:
                sidecar = os.path.join(dirpath, stem + ".txt")
                if os.path.isfile(sidecar):
                    with open(sidecar, encoding="utf-8") as f:
                        out.append((os.path.join(dirpath, name), f.read().strip()))
    return out


def open_source(
    spec: str, seed: int = 0, image_size: int = 224, image_key: str = "filepath", caption_key: str = "title"
) -> Source:
    """The :class:`Source` a ``--data`` spec names (see the module docstring)."""
    kind, _, rest = (
        spec.partition(":") if spec.split(":", 1)[0] in ("synthetic", "csv", "folder", "wds") else ("", "", spec)
    )
    if kind == "synthetic" or spec == "synthetic":
        if rest and not rest.isdigit():
            raise DataError(f"data {spec!r}: the synthetic seed must be a non-negative integer")
        return SyntheticSource(image_size, int(rest) if rest else seed)
    path = rest
    for expanded in expand_braces(path) if "{" in path else [path]:
        refuse_url(expanded, spec)
    if kind == "wds" or "{" in path or path.endswith(".tar"):
        return WebDatasetSource(path)
    if kind == "csv" or path.endswith((".csv", ".tsv")):
        return ListSource(read_caption_table(path, image_key, caption_key), seed, path)
    if not os.path.isdir(path):
        raise DataError(
            f"data {spec!r} does not exist (expected synthetic, a CSV/TSV, an image folder or webdataset shards)"
        )
    tars = sorted(glob.glob(os.path.join(path, "*.tar")))
    if tars and kind != "folder":
        return WebDatasetSource(tars)
    return ListSource(_folder_records(path), seed, f"image folder {path}")
