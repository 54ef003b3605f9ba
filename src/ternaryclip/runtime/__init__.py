"""Torch-free CPU inference on ``.tclip`` files: ``ternaryclip.load(path).encode_image / encode_text``."""

from .model import MODES, TernaryCLIP, load
from .preprocess import ImageError, Preprocess
from .tokenizer import ClipTokenizer

__all__ = ["MODES", "ClipTokenizer", "ImageError", "Preprocess", "TernaryCLIP", "load"]
