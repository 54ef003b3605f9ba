"""Incremental indexing: walk a folder, embed new or changed photos in batches, drop deleted ones.

A photo is known by its absolute path, size and modification time.  Every batch is committed on its
own, so an interrupted run resumes where it stopped; files that cannot be decoded are recorded (with
their size and mtime, so a rerun does not retry them until they change) and listed, never fatal.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import decode_rgb
from .encoder import Encoder
from .store import PhotoRecord, PhotoStore

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"}
THUMBNAIL_SIZE = 192


@dataclass
class IndexReport:
    """What one run did; ``failed`` lists ``(path, reason)`` of files skipped in this run."""

    found: int = 0
    embedded: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.found} photos found: {self.embedded} embedded, {self.unchanged} unchanged, "
            f"{len(self.failed)} could not be read, {self.removed} removed from the database"
        )


def scan(root: str | os.PathLike) -> dict[str, tuple[int, float]]:
    """Absolute path -> (size, mtime) of every photo file under ``root`` (symlinked folders not followed)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    found = {}
    for folder, _, names in os.walk(root.resolve()):
        for name in names:
            if Path(name).suffix.lower() in PHOTO_SUFFIXES:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except OSError:  # vanished while walking
                    continue
                found[path] = (st.st_size, st.st_mtime)
    return found


def _register_heif() -> None:
    try:  # HEIC/HEIF photos when the optional pillow-heif plugin is installed
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:
        pass


def thumbnail_jpeg(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=80)
    return out.getvalue()


def _prepare(encoder: Encoder, path: str) -> tuple[np.ndarray, int, int, bytes] | str:
    """Decode one file: (pixels, width, height, thumbnail), or the reason it cannot be read."""
    try:
        image = decode_rgb(path)
        return encoder.preprocess(image), image.width, image.height, thumbnail_jpeg(image)
    except Exception as err:  # noqa: BLE001 -- any file that cannot become pixels is skipped, never fatal
        return f"{type(err).__name__}: {err}"


def _embed_batch(encoder: Encoder, pool, batch, report: IndexReport) -> tuple[list[PhotoRecord], list]:
    records, failures, ready = [], [], []
    for (path, (size, mtime)), result in zip(batch, pool.map(lambda item: _prepare(encoder, item[0]), batch)):
        if isinstance(result, str):
            failures.append((path, size, mtime, result))
            report.failed.append((path, result))
        else:
            ready.append((path, size, mtime, result))
    if ready:
        vectors = encoder.encode_pixels(np.stack([r[3][0] for r in ready]))
        for (path, size, mtime, (_, w, h, thumb)), vector in zip(ready, vectors):
            records.append(PhotoRecord(path, size, mtime, w, h, thumb, vector))
    return records, failures


def index_folder(
    root: str | os.PathLike,
    store: PhotoStore,
    encoder: Encoder,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
) -> IndexReport:
    """Bring ``store`` up to date with the photos under ``root``; returns what was done."""
    _register_heif()
    store.check_model(encoder.model_id, encoder.dim)
    current = scan(root)
    prefix = os.path.join(str(Path(root).resolve()), "")
    known = {p: v for p, v in store.known_files().items() if p.startswith(prefix)}
    todo = sorted((p, v) for p, v in current.items() if known.get(p) != v)
    gone = sorted(p for p in known if p not in current)
    report = IndexReport(found=len(current), unchanged=len(current) - len(todo), removed=len(gone))
    if gone:
        store.remove(gone)
    bar = _progress(len(todo), progress)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            records, failures = _embed_batch(encoder, pool, batch, report)
            store.add_batch(records, failures)
            report.embedded += len(records)
            bar.update(len(batch))
    bar.close()
    return report


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="photo", desc="indexing", disable=not enabled or total == 0)
