"""Image-caption streams for distillation: webdataset shards, CSV/TSV, an image folder, or synthetic.

Every source is a deterministic sequence of *global* batches indexed by micro-step, so that

- ``--resume`` continues from a step number with exactly the data an uninterrupted run would see;
- under torchrun, rank ``r`` keeps rows ``[r*b, (r+1)*b)`` of each global batch, and N processes see
  the same global batches as one process (each rank decodes only its own rows).

The parts, one job each: :mod:`.specs` (what a ``--data`` string names; local files only),
:mod:`.sources` (the record sequences), :mod:`.batches` (decoding, skipping and counting unusable
records, agreeing among ranks).  This module is their public face.
"""

from __future__ import annotations

from ..data.images import DataError
from .batches import MAX_UNUSABLE, Batch, BatchStream, Outcome, Skipped
from .sources import ListSource, Source, SyntheticSource, WebDatasetSource
from .specs import open_source, refuse_url

__all__ = [
    "MAX_UNUSABLE",
    "Batch",
    "BatchStream",
    "DataError",
    "ListSource",
    "Outcome",
    "Skipped",
    "Source",
    "SyntheticSource",
    "WebDatasetSource",
    "open_source",
    "refuse_url",
]
