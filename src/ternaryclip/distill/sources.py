"""Where training records come from: a deterministic sequence of (image, caption) pairs per source.

Each :class:`Source` yields records from any position (``records(start)``), so that ``--resume``
continues with exactly the data an uninterrupted run would see: a CSV/TSV or image folder
reshuffled every epoch from a seed, webdataset shards read in order, or the bundled synthetic world.
Shards are opened here and handed to webdataset as streams, never through its URL opener, and a
path that is a URL or a command (``pipe:``) is refused (:func:`refuse_url`).
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterator

import numpy as np

from ..data.images import DataError


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
        files = paths if isinstance(paths, list) else list(expand_braces(paths))
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


_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def refuse_url(path: str, spec: str | list[str] | None = None) -> None:
    """A ``DataError`` for anything but a local path: ``pipe:cmd`` would run ``cmd`` in a shell."""
    if _URL_SCHEME.match(path) or "://" in path:
        raise DataError(
            f"data spec {spec if spec is not None else path!r} names {path!r}, which is a URL or a command, "
            "not a local path: training data is read from local files and folders only"
        )


def expand_braces(spec: str) -> Iterator[str]:
    """``a{0..2}.tar`` -> ``a0.tar``, ``a1.tar``, ``a2.tar`` (webdataset's brace syntax)."""
    import braceexpand

    yield from braceexpand.braceexpand(spec)
