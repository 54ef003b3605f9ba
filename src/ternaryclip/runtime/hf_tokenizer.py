"""SigLIP's SentencePiece tokenizers without torch or transformers: Hugging Face ``tokenizers`` (Rust).

A ``.tclip`` of the SigLIP family carries its tokenizer's ``tokenizer.json`` (a blob in the file) and,
in its metadata, the rules open_clip's ``HFTokenizer`` applies around it: the text cleaning (SigLIP's
``canonicalize``: lower case, ASCII punctuation removed, whitespace collapsed), the context
(SigLIP: 64), padding to the context with the pad id, and truncation that keeps the special tokens.
The ids equal ``open_clip.tokenizer.HFTokenizer``'s (and transformers' tokenizer called as it calls it).

A long text costs what its first tokens cost: it is tokenized by growing prefixes, cut at whitespace,
until one yields more tokens than the context holds.
"""

from __future__ import annotations

import html
import string
from functools import lru_cache

import ftfy
import numpy as np

from ..arch import MAX_CONTEXT

CLEANS = ("canonicalize", "lower", "whitespace")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _basic_clean(text: str) -> str:
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def clean_text(text: str, kind: str) -> str:
    """open_clip's ``get_clean_fn(kind)``: ``canonicalize`` (big_vision's), ``lower`` or ``whitespace``."""
    text = _basic_clean(text)
    if kind == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    elif kind == "lower":
        text = text.lower()
    return " ".join(text.split())


class HFTokenizer:
    """``tokenizer(["a photo of a cat"]) -> int64 [1, context_length]``, from a ``tokenizer.json``."""

    def __init__(self, tokenizer_json: str | bytes, context_length: int, pad_id: int, clean: str = "canonicalize"):
        try:
            from tokenizers import Tokenizer
        except ImportError:  # a ValueError, so that every verb reports it in one line
            raise ValueError(
                "this model's tokenizer runs on the tokenizers package: pip install 'ternaryclip[siglip]'"
            ) from None
        if clean not in CLEANS:
            raise ValueError(f"tokenizer clean {clean!r} is not one of {CLEANS}")
        if not isinstance(context_length, int) or not 1 <= context_length <= MAX_CONTEXT:
            raise ValueError(f"context_length must be an integer in [1, {MAX_CONTEXT}], got {context_length!r}")
        text = tokenizer_json.decode("utf-8") if isinstance(tokenizer_json, bytes) else tokenizer_json
        try:
            self.backend = Tokenizer.from_str(text)
        except Exception as err:  # the Rust side raises a bare Exception for a malformed file
            raise ValueError(f"the tokenizer JSON cannot be read ({err})") from None
        self.vocab_size = self.backend.get_vocab_size()
        if not 0 <= pad_id < self.vocab_size:
            raise ValueError(f"tokenizer pad id {pad_id} is not below its vocabulary size {self.vocab_size}")
        self.json, self.context_length, self.pad_id, self.clean = text, context_length, pad_id, clean
        self.backend.enable_truncation(max_length=context_length)
        self.backend.enable_padding(length=context_length, pad_id=pad_id, pad_token=self.backend.id_to_token(pad_id))
        # The most characters one token stands for: a prefix of context x this many holds enough tokens.
        self._chars_per_token = max(max((len(t) for t in self.backend.get_vocab()), default=1), 1)

    def _encode(self, text: str) -> list[int]:
        """The padded, truncated ids of ``text``, tokenizing no more of it than the context needs."""
        budget = 2 * self.context_length * self._chars_per_token
        while True:
            if len(text) <= budget:
                return self.backend.encode(clean_text(text, self.clean)).ids
            cut = text.rfind(" ", 0, budget)
            encoding = self.backend.encode(clean_text(text[: cut if cut > 0 else budget], self.clean))
            if encoding.overflowing:  # the prefix filled the context; the rest would only be cut off
                return encoding.ids
            budget *= 4

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a string or a list of strings")
        if context_length is not None and context_length != self.context_length:
            return _with_context(self, context_length)(texts)
        out = np.full((len(texts), self.context_length), self.pad_id, dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self._encode(text)
            out[row, : len(ids)] = ids
        return out


@lru_cache(maxsize=4)
def _with_context(tokenizer: HFTokenizer, context_length: int) -> HFTokenizer:
    return HFTokenizer(tokenizer.json, context_length, tokenizer.pad_id, tokenizer.clean)


class NoTokenizer:
    """Stands in for the tokenizer of a file that carries none: token ids work, strings say what to do."""

    def __init__(self, context_length: int):
        self.context_length = context_length

    def __call__(self, texts, context_length: int | None = None) -> np.ndarray:
        raise ValueError(
            "this model file carries no tokenizer for its vocabulary: pass token ids as an int array, or "
            "pack it again with --tokenizer DIR (a folder with tokenizer.json, as on the Hugging Face hub)"
        )


def tokenizer_for(meta: dict, blobs: dict, context_length: int):
    """The tokenizer a ``.tclip`` declares: CLIP's BPE (bundled) or its own ``tokenizer.json``."""
    from .tokenizer import ClipTokenizer

    spec = meta.get("tokenizer") if isinstance(meta.get("tokenizer"), dict) else {"type": "clip_bpe"}
    kind = spec.get("type", "clip_bpe")
    if kind == "clip_bpe":
        return ClipTokenizer(context_length)
    if kind == "none":
        return NoTokenizer(context_length)
    if kind != "hf_tokenizers":
        raise ValueError(f"unknown tokenizer type {kind!r} in the file's metadata (clip_bpe, hf_tokenizers, none)")
    blob = blobs.get(spec.get("blob"))
    if blob is None:
        raise ValueError(f"the tokenizer's blob {spec.get('blob')!r} is missing from the file")
    pad_id = spec.get("pad_id")
    if not isinstance(pad_id, int) or isinstance(pad_id, bool):
        raise ValueError(f"tokenizer.pad_id = {pad_id!r} is not an integer")
    return HFTokenizer(blob, context_length, pad_id, spec.get("clean", "canonicalize"))
