"""ternaryclip: ternary (1.58-bit) CLIP models.

The top-level package imports nothing heavy: the torch side (``ternaryclip.quant``, ``save``) loads
only when used, so the runtime stays torch-free.
"""

from ._version import __version__

__all__ = ["__version__", "load", "save"]


def __getattr__(name: str):
    if name == "load":
        from .runtime import load

        return load
    if name == "save":
        from .pack.export import save

        return save
    raise AttributeError(f"module 'ternaryclip' has no attribute {name!r}")
