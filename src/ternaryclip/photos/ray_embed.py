"""Embedding millions of photos as shards in parallel with Ray Data; ``ternaryclip index --import`` stores them.

One machine is enough up to a few hundred thousand photos (``ternaryclip index``).  Beyond that, Ray
Data spreads ``map_batches`` over a cluster: each worker loads the ``.tclip`` model once (an actor),
decodes and embeds its batches, and the result is written as Parquet shards (path, size, mtime, size
in pixels, JPEG thumbnail, float32 embedding bytes, or the reason a file could not be read).  The
database is then filled on one machine from those shards, without embedding anything again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .encoder import RuntimeEncoder
from .index import decode_side, prepare, scan
from .store import PhotoRecord, PhotoStore


class EmbedPhotos:
    """The ``map_batches`` callable: one model per actor, a batch of paths in, rows for Parquet out."""

    def __init__(self, model_path: str, threads: int | None = None):
        self.encoder = RuntimeEncoder(model_path, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        min_side = decode_side(self.encoder)
        prepared = [prepare(self.encoder, str(p), min_side) for p in batch["path"]]
        good = [i for i, r in enumerate(prepared) if not isinstance(r, str)]
        vectors = self.encoder.encode_pixels(np.stack([prepared[i].pixels for i in good])) if good else []
        embedding = [b""] * len(prepared)
        for i, vector in zip(good, vectors):
            embedding[i] = np.asarray(vector, np.float32).tobytes()
        ok = [not isinstance(r, str) for r in prepared]
        return {
            "path": batch["path"],
            "size": batch["size"],
            "mtime": batch["mtime"],
            "width": np.array([r.width if k else 0 for r, k in zip(prepared, ok)], np.int64),
            "height": np.array([r.height if k else 0 for r, k in zip(prepared, ok)], np.int64),
            "thumbnail": np.array([r.thumbnail if k else b"" for r, k in zip(prepared, ok)], dtype=object),
            "embedding": np.array(embedding, dtype=object),
            "error": np.array(["" if k else r for r, k in zip(prepared, ok)], dtype=object),
            "model_id": np.array([self.encoder.model_id] * len(prepared), dtype=object),
        }


def embed_with_ray(
    photos_dir: str | os.PathLike, model_path: str, out_dir: str | os.PathLike, batch_size: int = 32, workers: int = 1
) -> int:
    """Embed every photo under ``photos_dir`` with Ray Data (``ray.init`` first, or a local one starts)."""
    import ray

    files = scan(photos_dir)
    rows = [{"path": p, "size": s, "mtime": m} for p, (s, m) in sorted(files.items())]
    dataset = ray.data.from_items(rows).map_batches(
        EmbedPhotos,
        fn_constructor_kwargs={"model_path": str(Path(model_path).resolve())},
        batch_size=batch_size,
        concurrency=workers,
        batch_format="numpy",
    )
    dataset.write_parquet(str(out_dir))
    return len(rows)


def import_embeddings(shards_dir: str | os.PathLike, store: PhotoStore, batch_size: int = 1000) -> int:
    """Store the Parquet shards written by :func:`embed_with_ray`; returns the photos imported."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("--import needs pyarrow (installed with ray[data]): pip install pyarrow") from None
    if not Path(shards_dir).is_dir():
        raise FileNotFoundError(f"no such folder of Parquet shards: {shards_dir}")
    table = pq.read_table(str(shards_dir))
    rows = table.to_pylist()
    imported = 0
    for start in range(0, len(rows), batch_size):
        records, failures = [], []
        for row in rows[start : start + batch_size]:
            if row["error"]:
                failures.append((row["path"], row["size"], row["mtime"], row["error"]))
                continue
            vector = np.frombuffer(row["embedding"], np.float32)
            store.check_model(row["model_id"], len(vector))
            records.append(
                PhotoRecord(
                    row["path"], row["size"], row["mtime"], row["width"], row["height"], row["thumbnail"], vector
                )
            )
        store.add_batch(records, failures)
        imported += len(records)
    return imported
