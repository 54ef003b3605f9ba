"""Global batches from a record source: decode, skip what is unusable, agree among torchrun ranks.

Images that fail to decode, are too large, or come with an empty caption are skipped and counted
(``Skipped``); the batch is filled from the following records.  A source that yields nothing usable
for ``max_unusable`` records in a row (every image corrupt, every caption empty) stops with a
``DataError`` that counts them by reason, instead of reading forever.  CMYK, palette, grey and
16-bit images are converted to RGB.  Pixels go through the same eval transform as the runtime
(resize the short side bicubic, center crop, normalize), which equals open_clip's.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ..data.images import DataError, ImageTooLarge, model_pixels
from ..runtime.preprocess import Preprocess
from ..runtime.tokenizer import ClipTokenizer
from .sources import Source


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
        # workers == 0: decode on the calling thread, as DataLoader's num_workers=0 does
        self._pool = ThreadPoolExecutor(workers) if workers > 0 else None

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
        mapper = self._pool.map if self._pool is not None else map
        decoded = dict(zip(range(share_lo, share_hi), mapper(self._try, records[share_lo:share_hi])))
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
