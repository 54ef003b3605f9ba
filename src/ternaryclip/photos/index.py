"""Incremental indexing: walk a folder, embed new or changed photos in batches, drop deleted ones.

A photo is known by its absolute path, size and modification time.  Every batch is committed on its
own, so an interrupted run resumes where it stopped; files that cannot be decoded are recorded (with
their size and mtime, so a rerun does not retry them until they change) and listed, never fatal.
"""

from __future__ import annotations

import io
import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import decode_sized
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


def thumbnail_jpeg(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A JPEG that fits in ``size x size``, from an image already upright (its pixels as shown)."""
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=80)
    return out.getvalue()


def decode_side(encoder: Encoder) -> int | None:
    """The shorter side a JPEG may be decoded down to for ``encoder``: twice its input, at least a thumbnail.

    At twice the input side the model's own resize sees the same picture (embeddings within cosine
    0.999 of a full decode; tests/test_photos_orientation.py), and the thumbnail comes from the same pixels.
    """
    size = getattr(encoder, "image_size", None)
    return max(2 * size, THUMBNAIL_SIZE) if size else None


@dataclass
class Decoded:
    """One photo ready for the model: its pixels, full upright size and thumbnail."""

    pixels: np.ndarray
    width: int
    height: int
    thumbnail: bytes


def prepare(encoder: Encoder, path: str, min_side: int | None) -> Decoded | str:
    """Decode one file (upright, draft-scaled) for the model and the page, or the reason it cannot be read."""
    try:
        image, (width, height) = decode_sized(path, min_side=min_side)
        return Decoded(encoder.preprocess(image), width, height, thumbnail_jpeg(image))
    except Exception as err:  # noqa: BLE001 -- any file that cannot become pixels is skipped, never fatal
        return f"{type(err).__name__}: {err}"


def decode_ahead(paths, decode, pool: ThreadPoolExecutor, ahead: int):
    """``(path, decode(path))`` in order, with up to ``ahead`` files decoding in ``pool`` meanwhile.

    Pillow releases the GIL while it decodes and resizes, and the runtime while it encodes, so the
    next batch decodes while this one is in the model.
    """
    paths = iter(paths)
    pending = deque((p, pool.submit(decode, p)) for p in itertools.islice(paths, max(1, ahead)))
    while pending:
        path, future = pending.popleft()
        for following in itertools.islice(paths, 1):
            pending.append((following, pool.submit(decode, following)))
        yield path, future.result()


def index_folder(
    root: str | os.PathLike,
    store: PhotoStore,
    encoder: Encoder,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
) -> IndexReport:
    """Bring ``store`` up to date with the photos under ``root``; returns what was done.

    ``workers`` threads decode up to two batches ahead of the model.
    """
    store.check_model(encoder.model_id, encoder.dim, **getattr(encoder, "model_file", {}))
    current = scan(root)
    prefix = os.path.join(str(Path(root).resolve()), "")
    known = {p: v for p, v in store.known_files().items() if p.startswith(prefix)}
    todo = sorted((p, v) for p, v in current.items() if known.get(p) != v)
    gone = sorted(p for p in known if p not in current)
    report = IndexReport(found=len(current), unchanged=len(current) - len(todo), removed=len(gone))
    if gone:
        store.remove(gone)
    facts = dict(todo)
    min_side = decode_side(encoder)
    bar = _progress(len(todo), progress)
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="ternaryclip-decode")
    try:
        decoded = decode_ahead(
            (p for p, _ in todo), lambda path: prepare(encoder, path, min_side), pool, 2 * batch_size
        )
        while batch := list(itertools.islice(decoded, batch_size)):
            records, failures = _embed_batch(encoder, [(p, facts[p], result) for p, result in batch], report)
            store.add_batch(records, failures)
            report.embedded += len(records)
            bar.update(len(batch))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return report


def _embed_batch(encoder: Encoder, batch, report: IndexReport) -> tuple[list[PhotoRecord], list]:
    records, failures, ready = [], [], []
    for path, (size, mtime), result in batch:
        if isinstance(result, str):
            failures.append((path, size, mtime, result))
            report.failed.append((path, result))
        else:
            ready.append((path, size, mtime, result))
    if ready:
        vectors = encoder.encode_pixels(np.stack([r[3].pixels for r in ready]))
        for (path, size, mtime, d), vector in zip(ready, vectors):
            records.append(PhotoRecord(path, size, mtime, d.width, d.height, d.thumbnail, vector))
    return records, failures


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=" photos", desc="indexing", disable=not enabled or total == 0)
