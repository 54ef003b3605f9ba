"""The ``.tclip`` packed file: 2bit / base3 ternary tensors in a safetensors container.

``read``/``write`` and the data classes need only numpy; ``save``, ``to_torch`` and
``tclip_from_model`` need torch and load on first use.
"""

from .bits import pack_2bit, pack_base3, unpack_2bit, unpack_base3
from .format import PACKINGS, TclipError, TclipModel, TernaryTensor, read, write

_TORCH_SIDE = ("save", "to_torch", "tclip_from_model", "detect_ternary", "NotTernaryError")


def __getattr__(name: str):
    if name in _TORCH_SIDE:
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module 'ternaryclip.pack' has no attribute {name!r}")


__all__ = [
    "PACKINGS",
    "TclipError",
    "TclipModel",
    "TernaryTensor",
    "pack_2bit",
    "pack_base3",
    "read",
    "unpack_2bit",
    "unpack_base3",
    "write",
    *_TORCH_SIDE,
]
