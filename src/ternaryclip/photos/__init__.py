"""Photo search on a ternary CLIP: index a folder into one SQLite file, search it, tag it, browse it.

Torch-free: everything here runs on the ``.tclip`` runtime.
"""

from .duplicates import duplicate_groups, find_duplicates
from .encoder import Encoder, RuntimeEncoder
from .index import IndexReport, index_folder, scan
from .search import Hit, Searcher, top_k
from .store import PhotoRecord, PhotoStore
from .tag import read_labels, tag_photos

__all__ = [
    "Encoder",
    "Hit",
    "IndexReport",
    "PhotoRecord",
    "PhotoStore",
    "RuntimeEncoder",
    "Searcher",
    "duplicate_groups",
    "find_duplicates",
    "index_folder",
    "read_labels",
    "scan",
    "tag_photos",
    "top_k",
]
