"""Photo search: quality and index speed on the synthetic world, database size, search latency at 100k.

    python benchmarks/photos.py --model student.tclip --json benchmarks/photos.json

1. 500 synthetic photos (400 of seen shape-colour pairs, 100 of held-out pairs) and 20 corrupt files
   are indexed twice through the same pipeline (decode, preprocess, thumbnail, embed, SQLite): once
   with the ternary ``.tclip`` (torch-free runtime) and once with the bundled float teacher (open_clip
   fp32).  For every (colour, shape) pair the query "a picture of {colour} {shapes}" is searched;
   precision@10 counts results that have that colour and shape.  Index runs alternate, median of
   ``--repeats``.
2. Database size per 10,000 photos, from the indexed database.
3. Search latency at 100,000 random unit vectors: exact search as shipped (NumPy over the
   embedding matrix read from SQLite), and usearch's HNSW index when installed (with its recall@10).

With ``--phone``, instead, a phone library's throughput:

    python benchmarks/photos.py --phone --threads 2 --json benchmarks/results/photos-phone.json

4. ``--photos`` 4032 x 3024 JPEGs (scikit-image's photographs enlarged, with sensor-like grain so
   they are phone-sized files; every fourth stored sideways with an EXIF orientation tag) are indexed
   by ``index_folder`` as ``ternaryclip index`` does, and the same photos' pixels are encoded alone
   (``encode_pixels``, same model, threads and batch): index photos/s over encoder-only photos/s is the
   headline (goal >= 0.8x), for the whole run and with start-up excluded (a run of a quarter of the
   photos subtracted from the full one, for both).  Models: the bundled one and a ViT-B/16 from random-init open_clip weights,
   both ternarized (scope ``all`` + token embedding) and packed 2-bit as ``ternaryclip bench`` does.
   Also: one thread's decode cost per photo (reduced-scale JPEG decode + preprocess + thumbnail, and
   the full decode + resize it replaced), the decode's share of the CPU time (one thread's decode ms
   over that plus encoder-only ms per photo x threads), and the reduced-scale embeddings' cosine to
   full-decode ones.  Index and encoder-only runs alternate; medians of ``--repeats``.  The load
   average is recorded: with other work on the machine the decoding threads find no idle core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ternaryclip.data.synthetic import COLOURS, SHAPE_PLURALS, SHAPES, SyntheticWorld
from ternaryclip.photos import PhotoRecord, PhotoStore, RuntimeEncoder, Searcher, index_folder


class OpenClipEncoder:
    """The bundled float teacher (open_clip, fp32, torch) behind the photo pipeline's encoder interface."""

    def __init__(self, threads: int, preprocess):
        import torch

        from ternaryclip.assets import TEACHER_WEIGHTS
        from ternaryclip.photos.encoder import file_id
        from ternaryclip.runtime import ClipTokenizer
        from ternaryclip.torch_clip import bundled_teacher

        torch.set_num_threads(threads)
        self.torch, self.model = torch, bundled_teacher()
        self.model_id, self.dim = "teacher-fp32:" + file_id(TEACHER_WEIGHTS), self.model.text_projection.shape[1]
        self.preprocess = preprocess  # the .tclip's, equal to open_clip's eval transform
        self.tokenize = ClipTokenizer(self.model.context_length)

    def _unit(self, x) -> np.ndarray:
        x = x.float().numpy()
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self._unit(self.model.encode_image(self.torch.from_numpy(pixels)))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        with self.torch.inference_mode():
            return self._unit(self.model.encode_text(self.torch.from_numpy(self.tokenize(texts)).long()))


def write_world(folder: Path, n_seen: int = 400, n_heldout: int = 100, corrupt: int = 20) -> dict[str, tuple]:
    """Photos on disk and their (shape, colour) names by absolute path."""
    world, truth = SyntheticWorld(), {}
    for split, n, seed in (("seen", n_seen, 1), ("heldout", n_heldout, 2)):
        batch = world.sample(n, seed=seed, split=split)
        for i, image in enumerate(batch.images):
            path = (folder / f"{split}-{i:04d}.png").resolve()
            Image.fromarray(image).save(path)
            shape, colour = SHAPES[batch.labels["shape"][i]], list(COLOURS)[batch.labels["colour"][i]]
            truth[str(path)] = (shape, colour, split)
    for j in range(corrupt):
        (folder / f"corrupt-{j:02d}.jpg").write_bytes(os.urandom(64 + 50 * j))
    return truth


def precision_at_10(db: Path, encoder, truth: dict[str, tuple]) -> dict[str, float]:
    with PhotoStore(db, readonly=True) as store:
        searcher = Searcher(store, encoder)
        per_split: dict[str, list[float]] = {"seen": [], "heldout": []}
        pairs = {(s, c, split) for s, c, split in truth.values()}
        for shape, colour, split in sorted(pairs):
            hits = searcher.by_text(f"a picture of {colour} {SHAPE_PLURALS[shape]}", k=10)
            per_split[split].append(np.mean([truth[h.path][:2] == (shape, colour) for h in hits]))
    every = per_split["seen"] + per_split["heldout"]
    return {"p@10": float(np.mean(every)), **{f"p@10_{k}": float(np.mean(v)) for k, v in per_split.items()}}


def index_runs(folder: Path, encoders: dict, repeats: int) -> tuple[dict, dict]:
    """Alternating index runs into fresh databases; returns seconds per engine and the last databases."""
    seconds, dbs, reports = {name: [] for name in encoders}, {}, {}
    for r in range(repeats):
        for name, encoder in encoders.items():
            db = folder.parent / f"{name}-{r}.db"
            with PhotoStore(db) as store:
                start = time.perf_counter()
                reports[name] = index_folder(folder, store, encoder, batch_size=32, progress=False)
                seconds[name].append(time.perf_counter() - start)
            dbs[name] = db
    return {n: {"seconds": s, "report": reports[n]} for n, s in seconds.items()}, dbs


def latency(search, queries: np.ndarray) -> dict[str, float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        search(q)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def search_latency(folder: Path, n: int, dim: int, n_queries: int, hnsw: bool) -> dict:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.integers(n, size=n_queries)] + 0.1 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    db = folder / f"latency-{dim}.db"
    with PhotoStore(db) as store:
        for start in range(0, n, 10_000):
            store.add_batch(
                [PhotoRecord(f"/p/{i}.jpg", 1, 1.0, 1, 1, None, vectors[i]) for i in range(start, start + 10_000)], []
            )
    out = {"vectors": n, "dim": dim}
    with PhotoStore(db, readonly=True) as store:
        searcher = Searcher(store)
        start = time.perf_counter()
        searcher.by_vector(queries[0], 10)  # reads the matrix once
        out["exact_first_query_ms"] = (time.perf_counter() - start) * 1000
        out["exact"] = latency(lambda q: searcher.by_vector(q, 10), queries)
    print(json.dumps(out), flush=True)
    if not hnsw:
        return out
    from usearch.index import Index

    index = Index(ndim=dim, metric="cos", dtype="f32")
    start = time.perf_counter()
    index.add(np.arange(n), vectors)
    out["usearch_build_s"] = time.perf_counter() - start
    out["usearch"] = latency(lambda q: index.search(q, 10), queries)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = [len(set(index.search(q, 10).keys.tolist()) & set(e.tolist())) / 10 for q, e in zip(queries, exact)]
    out["usearch_recall@10"] = float(np.mean(found))
    return out


def index_section(tmp: Path, model: str, threads: int, repeats: int, with_teacher: bool = True) -> dict:
    folder = tmp / "photos"
    folder.mkdir()
    truth = write_world(folder)
    ternary = RuntimeEncoder(model, threads=threads)
    encoders = {"ternary": ternary}
    if with_teacher:
        encoders["teacher"] = OpenClipEncoder(threads, ternary.preprocess)
    runs, dbs = index_runs(folder, encoders, repeats)
    results = {"files": len(truth) + 20, "photos": len(truth), "model": model, "engines": {}}
    for name, run in runs.items():
        report, db = run["report"], dbs[name]
        with PhotoStore(db, readonly=True) as store:
            thumbs = store.db.execute("SELECT avg(length(thumbnail)) FROM photos").fetchone()[0]
        size = db.stat().st_size
        results["engines"][name] = {
            "index_s_median": statistics.median(run["seconds"]),
            "index_s": run["seconds"],
            "images_per_s": len(truth) / statistics.median(run["seconds"]),
            "embedded": report.embedded,
            "unreadable": len(report.failed),
            "db_bytes": size,
            "db_mb_per_10k": size / report.embedded * 10_000 / 1e6,
            "thumbnail_bytes_mean": thumbs,
            **precision_at_10(db, encoders[name], truth),
        }
    e = results["engines"]
    if with_teacher:
        results["index_speed_ratio_ternary_vs_teacher"] = e["ternary"]["images_per_s"] / e["teacher"]["images_per_s"]
    return results


def phone_photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` 4032 x 3024 JPEGs (quality 92) made from scikit-image's photographs; every fourth a tagged portrait."""
    import skimage.data

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
    rng, paths = np.random.default_rng(seed), []
    for i in range(n):
        pixels = getattr(skimage.data, names[i % len(names)])()
        h, w = pixels.shape[:2]
        cw = min(w, h * 4 // 3)
        ch = cw * 3 // 4
        crop = Image.fromarray(pixels[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw])
        big = np.asarray(crop.resize((4032, 3024), Image.Resampling.BICUBIC), np.float32)
        big = big + rng.normal(0, 4, (3024, 4032, 1)).astype(np.float32)  # grain: a phone-sized file
        image = Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))
        exif = Image.Exif()
        if i % 4 == 3:  # a portrait as phones store it: sideways pixels and the tag that turns them
            image, exif[0x0112] = image.transpose(Image.Transpose.ROTATE_90), 6
        path = folder / f"IMG_{i:04d}.jpg"
        image.save(path, "JPEG", quality=92, exif=exif.tobytes())
        paths.append(str(path.resolve()))
    return paths


def ternary_model(kind: str, folder: Path) -> str:
    """The bundled model or a random-init ViT-B/16, ternarized and packed as ``ternaryclip bench`` does."""
    import torch

    from ternaryclip.pack.export import save
    from ternaryclip.quant import TernaryConfig, ternarize_
    from ternaryclip.torch_clip.loading import bundled_teacher, load_float_clip

    if kind not in ("bundled", "vit-b-16"):
        return kind  # a .tclip path
    torch.manual_seed(0)
    model = bundled_teacher() if kind == "bundled" else load_float_clip("ViT-B-16", family="open_clip")
    ternarize_(model, TernaryConfig(scope="all", embedding=True))
    return str(save(model, folder / f"{kind}.tclip", packing="2bit"))


def phone_section(tmp: Path, model: str, paths: list[str], threads: int, decoders: int, batch: int, repeats: int):
    from ternaryclip.data.images import decode_rgb
    from ternaryclip.photos.index import decode_side, prepare, thumbnail_jpeg

    encoder = RuntimeEncoder(model, threads=threads, batch_size=batch)
    min_side = decode_side(encoder)
    n = len(paths)

    start = time.perf_counter()
    decoded = [prepare(encoder, p, min_side) for p in paths]
    decode_ms = (time.perf_counter() - start) / n * 1000
    start = time.perf_counter()
    for p in paths[:8]:  # the way index decoded before: full size, then resize
        image = decode_rgb(p)
        encoder.preprocess(image)
        thumbnail_jpeg(image)
    full_decode_ms = (time.perf_counter() - start) / 8 * 1000
    pixels = np.stack([d.pixels for d in decoded])
    full = encoder.encode_pixels(np.stack([encoder.preprocess(decode_rgb(p)) for p in paths[:8]]))
    cosine = (encoder.encode_pixels(pixels[:8]) * full).sum(1)

    few = max(batch, n // 4 // batch * batch)  # the start-up runs: the difference is the steady state
    few_folder = tmp / "photos-few"
    if not few_folder.is_dir():
        few_folder.mkdir()
        for p in paths[:few]:
            os.link(p, few_folder / Path(p).name)

    def encode_only(count: int) -> float:
        start = time.perf_counter()
        for i in range(0, count, batch):
            encoder.encode_pixels(pixels[i : min(i + batch, count)])
        return time.perf_counter() - start

    def index(r: int, folder: str, count: int) -> float:
        with PhotoStore(tmp / f"phone-{Path(model).stem}-{count}-{r}.db") as store:
            start = time.perf_counter()
            report = index_folder(folder, store, encoder, batch, decoders, progress=False)
            seconds = time.perf_counter() - start
        assert report.embedded == count and not report.failed, report.summary()
        return seconds

    encode_only(n)  # warm-up: the runtime's buffers, the kernels' threads
    runs = {"encode": [], "encode_few": [], "index": [], "index_few": []}
    for r in range(repeats):
        runs["encode"].append(encode_only(n))
        runs["index"].append(index(r, paths[0].rsplit("/", 1)[0], n))
        runs["encode_few"].append(encode_only(few))
        runs["index_few"].append(index(r, str(few_folder), few))
    median = {k: statistics.median(v) for k, v in runs.items()}
    encode_ps, index_ps = n / median["encode"], n / median["index"]
    steady_encode_ps = (n - few) / (median["encode"] - median["encode_few"])
    steady_index_ps = (n - few) / (median["index"] - median["index_few"])
    encode_core_ms = 1000 / encode_ps * threads
    out = {
        "model": Path(model).name,
        "image_size": encoder.image_size,
        "photos": n,
        "photos_start_up_run": few,
        "decode_min_side": min_side,
        "encoder_only_photos_per_s": encode_ps,
        "index_photos_per_s": index_ps,
        "index_vs_encoder_only": index_ps / encode_ps,
        "steady_encoder_only_photos_per_s": steady_encode_ps,
        "steady_index_photos_per_s": steady_index_ps,
        "steady_index_vs_encoder_only": steady_index_ps / steady_encode_ps,
        "decode_ms_per_photo_1_thread": decode_ms,
        "full_decode_ms_per_photo_1_thread": full_decode_ms,
        "decode_share_of_cpu": decode_ms / (decode_ms + encode_core_ms),
        "draft_vs_full_cosine_min": float(cosine.min()),
        "seconds": runs,
    }
    print(
        f"{out['model']}: index {index_ps:.2f} photos/s, encoder only {encode_ps:.2f} photos/s "
        f"-> {out['index_vs_encoder_only']:.2f}x (start-up excluded: {steady_index_ps:.2f} / {steady_encode_ps:.2f} "
        f"-> {out['steady_index_vs_encoder_only']:.2f}x); decode {decode_ms:.1f} ms/photo on 1 thread "
        f"(full decode {full_decode_ms:.1f}), {100 * out['decode_share_of_cpu']:.0f}% of the CPU time; "
        f"draft vs full cosine >= {out['draft_vs_full_cosine_min']:.5f}",
        flush=True,
    )
    return out


def phone_main(args) -> dict:
    from ternaryclip.bench.machine import cpu_model

    results = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "decode_threads": args.decode_threads,
        "batch": args.batch,
        "models": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "photos").mkdir()
        paths = phone_photos(tmp / "photos", args.photos)
        results["mean_file_mb"] = float(np.mean([os.path.getsize(p) for p in paths]) / 1e6)
        results["load_average_at_start"] = os.getloadavg()[0]  # other work: above the cores, contended
        for kind in args.phone_models:
            model = ternary_model(kind, tmp)
            results["models"].append(
                phone_section(tmp, model, paths, args.threads, args.decode_threads, args.batch, args.repeats)
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="the ternary .tclip (of the bundled teacher's architecture)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--usearch", action="store_true", help="also time usearch's HNSW index (slow to build)")
    parser.add_argument("--skip-index", action="store_true", help="only the search latency")
    parser.add_argument("--no-teacher", action="store_true", help="index with the ternary model only")
    parser.add_argument("--skip-latency", action="store_true", help="only quality, index speed and size")
    parser.add_argument("--phone", action="store_true", help="a phone library's index throughput (section 4) only")
    parser.add_argument(
        "--phone-models", nargs="+", default=["bundled", "vit-b-16"], help="bundled, vit-b-16 or .tclip paths"
    )
    parser.add_argument("--photos", type=int, default=48, help="phone photos to index (--phone)")
    parser.add_argument("--batch", type=int, default=16, help="photos per batch (--phone)")
    parser.add_argument("--decode-threads", type=int, default=2, help="index's decoding threads (--phone)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    if args.phone:
        results = phone_main(args)
    else:
        if not args.model:
            parser.error("--model is required (except with --phone)")
        results = {"threads": args.threads}
        with tempfile.TemporaryDirectory() as tmp:
            if not args.skip_index:
                results.update(index_section(Path(tmp), args.model, args.threads, args.repeats, not args.no_teacher))
                print(json.dumps(results, indent=1), flush=True)
            if not args.skip_latency:
                results["latency"] = [
                    search_latency(Path(tmp), args.latency_vectors, d, args.queries, args.usearch) for d in (128, 512)
                ]
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
