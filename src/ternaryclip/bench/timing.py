"""Interleaved timing of the engine processes, and how their embeddings compare with the reference's.

One request to each engine in turn, the order rotated by one each repeat, a short settle before each
timed call; reported per engine and workload as median / min / max seconds.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .workers import ask


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def bench_inputs(arch, batches) -> tuple[np.ndarray, np.ndarray]:
    """Random images and text-like token ids for the largest batch (smaller batches are prefixes)."""
    rng = np.random.default_rng(0)
    size, max_batch = arch.vision.image_size, max(batches)
    images = rng.standard_normal((max_batch, 3, size, size)).astype(np.float32)
    ids = np.zeros((max_batch, arch.text.context_length), dtype=np.int64)
    vocab = arch.text.vocab_size
    for row in range(max_batch):  # start token, some words, end token (the highest id) like real text
        n = 5 + row % 10
        ids[row, : n + 2] = [vocab - 2, *rng.integers(1, vocab - 2, n), vocab - 1]
    return images, ids


# Quiet before each timed call: the previous engine's waiting threads (OpenMP spins ~300k rounds, TBB
# too, ours yield for 2 ms) go idle, so that no engine is timed beside another one's spinning.
SETTLE_S = 0.1


def rotated(names: list, turn: int) -> list:
    """The engines in the order of repeat ``turn``: the list rotated by one a repeat, so that with as many
    repeats as engines each engine runs once in every place.  A fixed order would give the engine after
    a heavy one (or after the settle pause's end, first) the same neighbour every time."""
    shift = turn % len(names) if names else 0
    return names[shift:] + names[:shift]


def time_engines(workers: dict, inputs: dict, batches, repeats: int, progress) -> tuple[dict, dict]:
    """Interleaved timings per engine and workload (median, min, max), and each engine's embeddings."""
    results = {name: {} for name in workers}
    embeddings = {}
    for kind, data in inputs.items():
        for batch in batches:
            key = f"{kind}_b{batch}"
            times = {name: [] for name in workers}
            for name, (_, conn) in workers.items():  # warm-up, and the embeddings for the cosine
                _, out = ask(conn, (kind, data[:batch]))
                embeddings[(name, kind)] = out
            for r in range(repeats):
                for name in rotated(list(workers), r):
                    _, conn = workers[name]
                    time.sleep(SETTLE_S)
                    seconds, _ = ask(conn, (kind, data[:batch]))
                    times[name].append(seconds)
                progress(f"{key}: repeat {r + 1}/{repeats}")
            for name, ts in times.items():
                results[name][key] = {
                    "median_s": statistics.median(ts),
                    "min_s": min(ts),
                    "max_s": max(ts),
                    "items_per_s": batch / statistics.median(ts),
                }
    return results, embeddings


def compare_to_reference(results: dict, embeddings: dict, reference: str) -> None:
    """Cosine of each engine's embeddings to the reference's, and speed / memory / size ratios to it."""
    base = results[reference]
    for name, r in results.items():
        for kind in ("image", "text"):
            r[f"{kind}_cosine_vs_fp32"] = cosine(embeddings[(name, kind)], embeddings[(reference, kind)])
    for r in results.values():
        r["speedup_vs_fp32"] = {
            k: base[k]["median_s"] / r[k]["median_s"]
            for k in base
            if k.startswith(("image_", "text_")) and isinstance(base[k], dict)
        }
        r["memory_ratio_vs_fp32"] = r["peak_rss_bytes"] / base["peak_rss_bytes"]
        r["size_ratio_vs_fp32"] = base["file_bytes"] / r["file_bytes"]
