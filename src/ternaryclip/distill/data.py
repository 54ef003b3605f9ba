"""Image-caption streams for distillation: webdataset shards, CSV/TSV, an image folder, or synthetic.

Every source is a deterministic sequence of *global* batches indexed by micro-step, so that

- ``--resume`` continues from a step number with exactly the data an uninterrupted run would see;
- under torchrun, rank ``r`` keeps rows ``[r*b, (r+1)*b)`` of each global batch, and N processes see
  the same global batches as one process (each rank decodes only its own rows).

Images that fail to decode, are too large, or come with an empty caption are skipped and counted
(``Skipped``), never fatal; the batch is filled from the following samples.  CMYK, palette, grey and
16-bit images are converted to RGB.  Pixels go through the same eval transform as the runtime
(resize the short side bicubic, center crop, normalize), which equals open_clip's.

Spec strings (``--data``): ``synthetic`` / ``synthetic:SEED``, ``a.csv`` / ``a.tsv`` (or ``csv:PATH``),
an image folder (or ``folder:PATH``), and webdataset shards: ``shards/{000..099}.tar``, a ``.tar``
file, a folder of ``.tar`` files, or ``wds:URLS``.
"""

from __future__ import annotations

import glob
import os
import tarfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..data.images import IMAGE_SUFFIXES, DataError, decode_rgb, read_caption_table
from ..runtime.preprocess import Preprocess
from ..runtime.tokenizer import ClipTokenizer


@dataclass
class Skipped:
    """Samples left out of training, by reason."""

    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Batch:
    """One rank's part of a global batch: normalized pixels ``[b, 3, H, W]`` and token ids ``[b, ctx]``."""

    pixels: np.ndarray
    ids: np.ndarray


# ---------------------------------------------------------------- sources


class Source:
    """A deterministic sequence of (image, caption) records; ``records(start)`` iterates from a position."""

    def records(self, start: int) -> Iterator[tuple[object, str]]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class ListSource(Source):
    """Records from a CSV/TSV or an image folder, reshuffled every epoch from a seed."""

    def __init__(self, records: list[tuple[str, str]], seed: int, what: str):
        if not records:
            raise DataError(f"{what}: no image-caption pairs found")
        self.items, self.seed, self.what = records, seed, what

    def records(self, start: int) -> Iterator[tuple[object, str]]:
        n = len(self.items)
        epoch, offset = divmod(start, n)
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
            for i in order[offset:]:
                yield self.items[i]
            epoch, offset = epoch + 1, 0

    def describe(self) -> str:
        return f"{self.what} ({len(self.items)} pairs)"


class WebDatasetSource(Source):
    """webdataset shards (``{jpg,png,webp}`` + ``txt``), read in order, repeated; resume skips ahead."""

    def __init__(self, urls: str | list[str]):
        import webdataset as wds

        self.urls = urls
        self._wds = wds
        files = urls if isinstance(urls, list) else list(_expand_braces(urls))
        missing = [f for f in files if "://" not in f and not os.path.isfile(f)]
        if missing:
            raise DataError(
                f"webdataset shard(s) not found: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
            )
        if not any(_tar_has_pair(f) for f in files if "://" not in f):
            raise DataError(f"webdataset shards {urls!r} hold no image + txt pair")
        self.files = files

    def records(self, start: int) -> Iterator[tuple[object, str]]:
        skipped = 0
        while True:
            dataset = self._wds.WebDataset(
                self.files, shardshuffle=False, handler=self._wds.warn_and_continue, empty_check=False
            )
            for sample in dataset:
                image = next((sample[k] for k in ("jpg", "jpeg", "png", "webp") if k in sample), None)
                text = sample.get("txt", b"")
                if skipped < start:
                    skipped += 1
                    continue
                caption = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
                yield (image if image is not None else b""), caption

    def describe(self) -> str:
        return f"webdataset {self.urls}"


class SyntheticSource(Source):
    """The bundled synthetic world's training split; record ``i`` is a pure function of ``(seed, i)``."""

    CHUNK = 256

    def __init__(self, image_size: int, seed: int = 0):
        from ..data import SyntheticWorld

        self.world, self.seed = SyntheticWorld(image_size=image_size), seed

    def records(self, start: int) -> Iterator[tuple[object, str]]:
        chunk, offset = divmod(start, self.CHUNK)
        while True:
            batch = self.world.sample(self.CHUNK, seed=self.seed * 1_000_003 + chunk, split="train")
            for i in range(offset, self.CHUNK):
                yield batch.images[i], batch.captions[i]
            chunk, offset = chunk + 1, 0

    def describe(self) -> str:
        return f"synthetic (seed {self.seed})"


def _expand_braces(spec: str) -> Iterator[str]:
    import braceexpand

    yield from braceexpand.braceexpand(spec)


def _tar_has_pair(path: str) -> bool:
    try:
        with tarfile.open(path) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError):
        return False
    stems = {}
    for name in names:
        stem, _, ext = name.rpartition(".")
        stems.setdefault(stem, set()).add(ext.lower())
    return any("txt" in exts and exts & {"jpg", "jpeg", "png", "webp"} for exts in stems.values())


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
        return SyntheticSource(image_size, int(rest) if rest else seed)
    path = rest
    if kind == "wds" or "{" in path or path.endswith(".tar") or "://" in path:
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


# ---------------------------------------------------------------- batches

REASONS = ("empty caption", "cannot decode", "too large")


def _agree_alone(codes: np.ndarray) -> np.ndarray:
    return codes


class BatchStream:
    """Global batches of ``batch_size`` pairs from a :class:`Source`; this rank keeps its rows.

    Records are consumed in order; a record that cannot be used is counted in ``skipped`` and the
    next one takes its place, so positions stay deterministic.  Under torchrun the candidates of a
    round are split among the ranks, each decodes its share, and ``agree`` (a sum all-reduce of the
    per-record codes) tells every rank which records were usable, so all ranks assign the same
    records to the same rows while decoding each image about once.  ``position`` is the number of
    records consumed, which a checkpoint stores.
    """

    def __init__(
        self,
        source: Source,
        preprocess: Preprocess,
        tokenizer: ClipTokenizer,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        workers: int = 4,
        agree=_agree_alone,
    ):
        if batch_size % world_size:
            raise DataError(f"batch size {batch_size} must be a multiple of the number of processes {world_size}")
        self.source, self.preprocess, self.tokenizer = source, preprocess, tokenizer
        self.batch_size, self.rank, self.world, self.agree = batch_size, rank, world_size, agree
        self.position, self.skipped = start, Skipped()
        self._records = source.records(start)
        self._pool = ThreadPoolExecutor(max(1, workers))

    def _pixels(self, image) -> np.ndarray:
        if isinstance(image, np.ndarray):  # synthetic: uint8 HWC, already at the model's size
            size = self.preprocess.size
            if image.shape[:2] != (size, size):
                return self.preprocess(Image.fromarray(image))
            return self.preprocess.normalize(image)
        return self.preprocess(decode_rgb(image))

    def _try(self, record) -> tuple[np.ndarray | None, int]:
        """Pixels and code 1, or None and ``2 + index`` of the reason in REASONS."""
        image, caption = record
        if not caption or not caption.strip():
            return None, 2
        try:
            return self._pixels(image), 1
        except (ValueError, OSError) as err:
            return None, 4 if str(err).startswith("too large") else 3

    def next_batch(self) -> Batch:
        lo, hi = self.rank * self.batch_size // self.world, (self.rank + 1) * self.batch_size // self.world
        pixels, captions, filled = [], [], 0
        while filled < self.batch_size:
            want = self.batch_size - filled
            records = [next(self._records) for _ in range(want)]
            self.position += want
            share_lo, share_hi = self.rank * want // self.world, (self.rank + 1) * want // self.world
            decoded = dict(zip(range(share_lo, share_hi), self._pool.map(self._try, records[share_lo:share_hi])))
            codes = np.zeros(want, np.int64)
            for j, (_, code) in decoded.items():
                codes[j] = code
            codes = self.agree(codes)
            for j, code in enumerate(codes):
                if filled == self.batch_size:
                    break
                if code != 1:
                    self.skipped.add(REASONS[int(code) - 2])
                    continue
                if lo <= filled < hi:
                    pix = decoded[j][0] if j in decoded else self._try(records[j])[0]
                    pixels.append(pix)
                    captions.append(records[j][1])
                filled += 1
        return Batch(np.stack(pixels).astype(np.float32), self.tokenizer(captions))
