"""ternaryclip: ternary (1.58-bit) CLIP models.

The top-level package imports nothing heavy: the torch side (``ternaryclip.quant``,
``ternaryclip.clip_models``) loads only when used, so the runtime stays torch-free.
"""

__version__ = "0.1.0"
