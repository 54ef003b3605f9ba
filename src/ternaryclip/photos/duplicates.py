"""Near-duplicate photos: groups joined by cosine similarity at or above a threshold (burst shots, copies).

Two photos are linked when their embeddings' cosine is at least the threshold; a group is a connected
component of that graph (so a chain of near-identical burst shots is one group).  The similarity
matrix is computed in square blocks, so memory stays at ``block x block`` floats whatever the number of
photos; the time grows with its square (100,000 photos: 10^10 dot products, about a minute on two
cores).  Within a group the photo with the most pixels (then the largest file) comes first: the one to keep.
"""

from __future__ import annotations

import numpy as np


def similar_pairs(vectors: np.ndarray, threshold: float, block: int = 2048):
    """``(rows i, rows j, cosines)`` arrays of every pair ``i < j`` whose cosine is >= ``threshold``, per block."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    n = len(vectors)
    for start in range(0, n, block):
        rows = vectors[start : start + block]
        for other in range(start, n, block):
            scores = rows @ vectors[other : other + block].T
            i, j = np.nonzero(scores >= threshold)
            i, j, s = i + start, j + other, scores[i, j]
            keep = i < j
            if keep.any():
                yield i[keep], j[keep], s[keep]


def duplicate_groups(vectors: np.ndarray, threshold: float = 0.95, block: int = 2048) -> list[np.ndarray]:
    """Row indices of each group of two or more rows linked by cosine >= ``threshold`` (unit-length rows).

    Groups are sorted, largest first, then by their first row.

    >>> v = np.array([[1, 0], [0.999, 0.0447], [0, 1]], np.float32)
    >>> [g.tolist() for g in duplicate_groups(v, 0.99)]
    [[0, 1]]
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"the threshold must be in (0, 1], got {threshold}")
    parent = list(range(len(vectors)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for rows, cols, _ in similar_pairs(vectors, threshold, block):
        for a, b in zip(rows.tolist(), cols.tolist()):
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for index, r in enumerate(root(x) for x in range(len(vectors))):
        members.setdefault(r, []).append(index)
    groups = [np.array(m, np.int64) for m in members.values() if len(m) > 1]
    return sorted(groups, key=lambda g: (-len(g), int(g[0])))


def find_duplicates(store, threshold: float = 0.95, block: int = 2048) -> list[list[dict]]:
    """The near-duplicate groups of a :class:`~ternaryclip.photos.store.PhotoStore`, each a list of photos.

    A photo is ``{id, path, width, height, size, similarity}``; ``similarity`` is its cosine to the
    group's first photo (the one with the most pixels, then the largest file).
    """
    ids, vectors = store.embeddings()
    groups = duplicate_groups(vectors, threshold, block) if len(ids) else []
    info = store.photos([int(i) for g in groups for i in ids[g]])
    out = []
    for rows in groups:
        photos = sorted(
            (info[int(ids[r])] | {"row": int(r)} for r in rows),
            key=lambda p: (-(p["width"] or 0) * (p["height"] or 0), -(p["size"] or 0), p["path"]),
        )
        first = vectors[photos[0]["row"]]
        out.append(
            [
                {k: p[k] for k in ("id", "path", "width", "height", "size")}
                | {"similarity": float(vectors[p["row"]] @ first)}
                for p in photos
            ]
        )
    return out
