"""Image-caption streams for distillation: webdataset shards, CSV/TSV, an image folder, or synthetic.

Every source is a deterministic sequence of *global* batches indexed by micro-step, so that

- ``--resume`` continues from a step number with exactly the data an uninterrupted run would see;
- under torchrun, rank ``r`` keeps rows ``[r*b, (r+1)*b)`` of each global batch, and N processes see
  the same global batches as one process (each rank decodes only its own rows).

Images that fail to decode, are too large, or come with an empty caption are skipped and counted
(``Skipped``); the batch is filled from the following samples.  A source that yields nothing usable
for ``max_unusable`` records in a row (every image corrupt, every caption empty) stops with a
``DataError`` that counts them by reason, instead of reading forever.  CMYK, palette, grey and
16-bit images are converted to RGB.  Pixels go through the same eval transform as the runtime
(resize the short side bicubic, center crop, normalize), which equals open_clip's.

Spec strings (``--data``): ``synthetic`` / ``synthetic:SEED``, ``a.csv`` / ``a.tsv`` (or ``csv:PATH``),
an image folder (or ``folder:PATH``), and webdataset shards: ``shards/{000..099}.tar``, a ``.tar``
file, a folder of ``.tar`` files, or ``wds:PATHS``.  Every spec names local files: URLs (``pipe:``,
``http://``, ...) are refused, also inside a brace expansion, and shards are opened by this module,
never through webdataset's URL opener, so no data spec can reach a shell.
"""

from __future__ import annotations

import glob
import os
import re
import tarfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ..data.images import IMAGE_SUFFIXES, DataError, ImageTooLarge, model_pixels, read_caption_table
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

    def cycle_length(self) -> int | None:
        """Records after which the sequence provably repeats its content (None: unknown or endless)."""
        return None


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

    def cycle_length(self) -> int:
        # Any 2n consecutive records hold a whole (reshuffled) epoch, so hold every record.
        return 2 * len(self.items)


class WebDatasetSource(Source):
    """webdataset shards (``{jpg,png,webp}`` + ``txt``), read in order, repeated; resume skips ahead.

    The tar files are opened here and handed to webdataset's tar expander and key grouping as
    streams: its URL opener (which runs ``pipe:`` commands in a shell) is never used.
    """

    def __init__(self, paths: str | list[str]):
        self.urls = paths
        files = paths if isinstance(paths, list) else list(_expand_braces(paths))
        for f in files:
            refuse_url(f, paths)
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise DataError(
                f"webdataset shard(s) not found: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
            )
        if not any(_tar_has_pair(f) for f in files):
            raise DataError(f"webdataset shards {paths!r} hold no image + txt pair")
        self.files = files

    def _samples(self) -> Iterator[dict]:
        from webdataset.handlers import warn_and_continue
        from webdataset.tariterators import group_by_keys, tar_file_expander

        def streams():
            for path in self.files:
                with open(path, "rb") as stream:
                    yield {"url": path, "stream": stream}

        files = tar_file_expander(streams(), handler=warn_and_continue)
        return group_by_keys(files, handler=warn_and_continue)

    def records(self, start: int) -> Iterator[tuple[object, str]]:
        skipped = 0
        while True:
            for sample in self._samples():
                if skipped < start:
                    skipped += 1
                    continue
                image = next((sample[k] for k in ("jpg", "jpeg", "png", "webp") if k in sample), None)
                text = sample.get("txt", b"")
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


_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def refuse_url(path: str, spec: str | list[str] | None = None) -> None:
    """A ``DataError`` for anything but a local path: ``pipe:cmd`` would run ``cmd`` in a shell."""
    if _URL_SCHEME.match(path) or "://" in path:
        raise DataError(
            f"data spec {spec if spec is not None else path!r} names {path!r}, which is a URL or a command, "
            "not a local path: training data is read from local files and folders only"
        )


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
        if rest and not rest.isdigit():
            raise DataError(f"data {spec!r}: the synthetic seed must be a non-negative integer")
        return SyntheticSource(image_size, int(rest) if rest else seed)
    path = rest
    for expanded in _expand_braces(path) if "{" in path else [path]:
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


# ---------------------------------------------------------------- batches

MAX_UNUSABLE = 1000  # unusable records in a row before a source counts as broken


class Outcome(IntEnum):
    """What one record gave.  Integers, so that ranks agree by summing (a rank that did not decode
    a record contributes 0)."""

    USABLE = 1
    EMPTY_CAPTION = 2
    CANNOT_DECODE = 3
    TOO_LARGE = 4

    @property
    def reason(self) -> str:
        return self.name.lower().replace("_", " ")


def _agree_alone(codes: np.ndarray) -> np.ndarray:
    return codes


class BatchStream:
    """Global batches of ``batch_size`` pairs from a :class:`Source`; this rank keeps its rows.

    Records are consumed in order; a record that cannot be used is counted in ``skipped`` and the
    next one takes its place, so positions stay deterministic.  Under torchrun the candidates of a
    round are split among the ranks, each decodes its share, and ``agree`` (a sum all-reduce of the
    per-record :class:`Outcome` codes) tells every rank which records were usable, so all ranks
    assign the same records to the same rows while decoding each image about once.  ``position``
    is the number of records consumed, which a checkpoint stores.  ``max_unusable`` records in a
    row without a usable one (fewer when the source provably repeats sooner) raise ``DataError``.
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
        max_unusable: int = MAX_UNUSABLE,
    ):
        if batch_size % world_size:
            raise DataError(f"batch size {batch_size} must be a multiple of the number of processes {world_size}")
        self.source, self.preprocess, self.tokenizer = source, preprocess, tokenizer
        self.batch_size, self.rank, self.world, self.agree = batch_size, rank, world_size, agree
        self.position, self.skipped = start, Skipped()
        cycle = source.cycle_length()
        self.max_unusable = max(1, min(max_unusable, cycle) if cycle else max_unusable)
        self._unusable_run = Counter()  # reasons of the unusable records since the last usable one
        self._records = source.records(start)
        self._pool = ThreadPoolExecutor(max(1, workers))

    def _try(self, record) -> tuple[np.ndarray | None, Outcome]:
        """The record's pixels (None unless usable) and its outcome."""
        image, caption = record
        if not caption or not caption.strip():
            return None, Outcome.EMPTY_CAPTION
        try:
            return model_pixels(image, self.preprocess), Outcome.USABLE
        except ImageTooLarge:
            return None, Outcome.TOO_LARGE
        except (ValueError, OSError):
            return None, Outcome.CANNOT_DECODE

    def _count(self, outcome: Outcome) -> None:
        if outcome == Outcome.USABLE:
            self._unusable_run.clear()
            return
        self.skipped.add(outcome.reason)
        self._unusable_run[outcome.reason] += 1
        if sum(self._unusable_run.values()) >= self.max_unusable:
            kinds = ", ".join(f"{n} {reason}" for reason, n in sorted(self._unusable_run.items()))
            raise DataError(
                f"{self.source.describe()}: {sum(self._unusable_run.values())} records in a row were unusable "
                f"({kinds}); check the images and the caption column (--image-key / --caption-key)"
            )

    def _outcomes(self, records: list) -> tuple[dict, np.ndarray]:
        """This rank's decoded share of ``records`` and every record's agreed outcome."""
        want = len(records)
        share_lo, share_hi = self.rank * want // self.world, (self.rank + 1) * want // self.world
        decoded = dict(zip(range(share_lo, share_hi), self._pool.map(self._try, records[share_lo:share_hi])))
        codes = np.zeros(want, np.int64)
        for j, (_, outcome) in decoded.items():
            codes[j] = int(outcome)
        return decoded, self.agree(codes)

    def next_batch(self) -> Batch:
        lo, hi = self.rank * self.batch_size // self.world, (self.rank + 1) * self.batch_size // self.world
        pixels, captions, filled = [], [], 0
        while filled < self.batch_size:
            want = self.batch_size - filled
            records = [next(self._records) for _ in range(want)]
            self.position += want
            decoded, codes = self._outcomes(records)
            for j, code in enumerate(codes):
                if filled == self.batch_size:
                    break
                self._count(Outcome(int(code)))
                if code != Outcome.USABLE:
                    continue
                if lo <= filled < hi:
                    pix = decoded[j][0] if j in decoded else self._try(records[j])[0]
                    pixels.append(pix)
                    captions.append(records[j][1])
                filled += 1
        return Batch(np.stack(pixels).astype(np.float32), self.tokenizer(captions))
