"""The photo database: one SQLite file in WAL mode holding paths, thumbnails, embeddings and labels.

WAL lets any number of readers (the web page, ``search``) see the last committed batch while ``index``
writes the next one; each batch is one transaction, so an interrupted run loses at most one batch and
a rerun skips every photo already committed.  Embeddings are float32 BLOBs, L2-normalized; search is an
exact matrix product over all of them (see :mod:`.search` and docs/photo-search.md for why).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encoder import sha256_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    width INTEGER,
    height INTEGER,
    thumbnail BLOB,
    embedding BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (path TEXT PRIMARY KEY, size INTEGER, mtime REAL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    rank INTEGER NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (photo_id, rank)
);
"""


@dataclass
class PhotoRecord:
    """One photo ready to be stored: its file facts, a JPEG thumbnail and its embedding."""

    path: str
    size: int
    mtime: float
    width: int | None
    height: int | None
    thumbnail: bytes | None
    embedding: np.ndarray


class PhotoStore:
    """A photo database file; open it read-only for search and the page, read-write for ``index``/``tag``."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise FileNotFoundError(f"no photo database at {self.path}; build one with `ternaryclip index`")
        uri = f"{self.path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=30.0, check_same_thread=False)
            self.db.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
                self.db.executescript(SCHEMA)
            self.db.execute("SELECT count(*) FROM photos").fetchone()
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.path} is not a photo database ({err})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PhotoStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ metadata
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def check_model(self, model_id: str, dim: int, path: str | None = None, sha256: str | None = None) -> None:
        """Refuse to mix embeddings of two models in one database; record the model (and its file) on use.

        ``path`` and ``sha256`` name the model file, so that ``search`` can find it without ``--model``;
        the last run that indexed with it records where it is now.
        """
        stored = self.get_meta("model")
        info = json.loads(stored) if stored is not None else {"id": model_id, "dim": dim}
        if info["id"] != model_id or info["dim"] != dim:
            raise ValueError(
                f"{self.path} was indexed with model {info['id']} (dim {info['dim']}); "
                f"this is {model_id} (dim {dim}): use another --db or the same model"
            )
        if path is not None and sha256 is not None:
            info.update(path=str(path), sha256=sha256)
        if stored is None or json.loads(stored) != info:
            self.set_meta("model", json.dumps(info))

    def model_file(self) -> str:
        """The path of the model this database was indexed with, checked against the SHA-256 recorded then.

        Raises ``ValueError`` naming the file when it is not recorded, missing or changed.
        """
        info = json.loads(self.get_meta("model") or "{}")
        if "path" not in info:
            raise ValueError(f"{self.path} does not record the model it was indexed with: give --model")
        path = info["path"]
        if not os.path.isfile(path):
            raise ValueError(f"{path}: the model {self.path} was indexed with is missing: give --model")
        if sha256_of(path) != info["sha256"]:
            raise ValueError(
                f"{path} has changed since {self.path} was indexed with it (its SHA-256 differs): "
                "give --model with the model the photos were indexed with, or index them again"
            )
        return path

    # ------------------------------------------------------------ writing
    def known_files(self) -> dict[str, tuple[int, float]]:
        """path -> (size, mtime) of every stored photo and every recorded failure."""
        rows = self.db.execute("SELECT path, size, mtime FROM photos UNION ALL SELECT path, size, mtime FROM failures")
        return {path: (size, mtime) for path, size, mtime in rows}

    def add_batch(self, records: list[PhotoRecord], failures: list[tuple[str, int, float, str]]) -> None:
        """Store one batch in one transaction: photos (replacing older versions) and decode failures."""
        with self.db:
            for r in records:
                self.db.execute("DELETE FROM failures WHERE path = ?", (r.path,))
                self.db.execute(
                    "INSERT INTO photos (path, size, mtime, width, height, thumbnail, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size = excluded.size, "
                    "mtime = excluded.mtime, width = excluded.width, height = excluded.height, "
                    "thumbnail = excluded.thumbnail, embedding = excluded.embedding",
                    (r.path, r.size, r.mtime, r.width, r.height, r.thumbnail, _blob(r.embedding)),
                )
                self.db.execute("DELETE FROM labels WHERE photo_id = (SELECT id FROM photos WHERE path = ?)", (r.path,))
            for path, size, mtime, reason in failures:
                self.db.execute("DELETE FROM photos WHERE path = ?", (path,))
                self.db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)", (path, size, mtime, reason))
            self._bump_generation()

    def remove(self, paths: list[str]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM photos WHERE path = ?", [(p,) for p in paths])
            self.db.executemany("DELETE FROM failures WHERE path = ?", [(p,) for p in paths])
            self._bump_generation()

    def set_labels(self, labels: dict[int, list[tuple[str, float]]]) -> None:
        """Replace the labels of the given photos (``photo id -> [(label, score), ...]``, best first)."""
        with self.db:
            self.db.executemany("DELETE FROM labels WHERE photo_id = ?", [(i,) for i in labels])
            self.db.executemany(
                "INSERT INTO labels VALUES (?, ?, ?, ?)",
                [(i, rank, label, score) for i, top in labels.items() for rank, (label, score) in enumerate(top)],
            )

    # ------------------------------------------------------------ reading
    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM photos").fetchone()[0]

    def failures(self) -> list[tuple[str, str]]:
        return self.db.execute("SELECT path, reason FROM failures ORDER BY path").fetchall()

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """Every photo's id and embedding, read in one consistent snapshot: ``(ids [N], vectors [N, D])``."""
        rows = self.db.execute("SELECT id, embedding FROM photos ORDER BY id").fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return ids, np.stack([np.frombuffer(r[1], np.float32) for r in rows])

    def embedding(self, photo_id: int) -> np.ndarray:
        row = self.db.execute("SELECT embedding FROM photos WHERE id = ?", (photo_id,)).fetchone()
        if row is None:
            raise KeyError(photo_id)
        return np.frombuffer(row[0], np.float32)

    def photos(self, ids: list[int]) -> dict[int, dict]:
        """id -> {path, width, height, size (bytes), labels: [(label, score)]} for the given ids."""
        out = {}
        for start in range(0, len(ids), 10_000):  # SQLite's limit on a statement's parameters
            chunk = ids[start : start + 10_000]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT id, path, width, height, size FROM photos WHERE id IN ({marks})"
            for i, p, w, h, size in self.db.execute(query, chunk):
                out[i] = {"id": i, "path": p, "width": w, "height": h, "size": size, "labels": []}
            query = f"SELECT photo_id, label, score FROM labels WHERE photo_id IN ({marks}) ORDER BY photo_id, rank"
            for i, label, score in self.db.execute(query, chunk):
                out[i]["labels"].append((label, score))
        return out

    def thumbnail(self, photo_id: int) -> bytes | None:
        row = self.db.execute("SELECT thumbnail FROM photos WHERE id = ?", (photo_id,)).fetchone()
        return row[0] if row else None

    def path_of(self, photo_id: int) -> str | None:
        row = self.db.execute("SELECT path FROM photos WHERE id = ?", (photo_id,)).fetchone()
        return row[0] if row else None

    def generation(self) -> int:
        """A counter that every photo change raises: lets a reader cache the embedding matrix between queries."""
        return int(self.get_meta("generation") or 0)

    def _bump_generation(self) -> None:  # inside the writer's transaction
        self.db.execute(
            "INSERT INTO meta VALUES ('generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()
