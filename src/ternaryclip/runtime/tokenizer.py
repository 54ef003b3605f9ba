"""CLIP's byte-level BPE tokenizer without torch: the same ids as ``open_clip.get_tokenizer``.

The merges file ``bpe_simple_vocab_16e6.txt.gz`` is OpenAI CLIP's (MIT licence), bundled so that
nothing is downloaded.  Text is cleaned the way open_clip does for CLIP models (ftfy, double HTML
unescape, whitespace collapse, lower case), split with the CLIP pattern, mapped byte by byte to
printable characters, merged by rank, and framed by start/end tokens.  Texts longer than the context
are truncated with the end token kept last, as open_clip does.
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path

import ftfy
import numpy as np
import regex

from ..arch import MAX_CONTEXT

VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
_N_MERGES = 49152 - 256 - 2
_SPECIAL = ("<start_of_text>", "<end_of_text>")


@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """A reversible map from the 256 byte values to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    extra = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(extra)}}


def clean(text: str) -> str:
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


_MAX_CACHED_WORDS = 100_000


def _check_context(context_length) -> int:
    """At least one token, and no more than any CLIP's positional table (the output is sized by it)."""
    if (
        not isinstance(context_length, int)
        or isinstance(context_length, bool)
        or not 1 <= context_length <= MAX_CONTEXT
    ):
        raise ValueError(f"context_length must be an integer in [1, {MAX_CONTEXT}], got {context_length!r}")
    return context_length


class ClipTokenizer:
    """``tokenizer(["a photo of a cat"]) -> int64 [1, context_length]``."""

    def __init__(self, context_length: int = 77, vocab_file: str | Path = VOCAB_FILE):
        merges = gzip.open(vocab_file).read().decode("utf-8").split("\n")[1 : _N_MERGES + 1]
        merges = [tuple(m.split()) for m in merges]
        chars = list(byte_to_char().values())
        vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + list(_SPECIAL)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.sot, self.eot = self.encoder[_SPECIAL[0]], self.encoder[_SPECIAL[1]]
        self.context_length = _check_context(context_length)
        self.vocab_size = len(vocab)
        self._pattern = regex.compile(
            "|".join(_SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
        )
        self._cache: dict[str, list[str]] = {s: [s] for s in _SPECIAL}

    def _remember(self, word: str, symbols: list[str]) -> None:
        if len(self._cache) >= _MAX_CACHED_WORDS:  # a stream of distinct words must not grow memory forever
            self._cache = {s: [s] for s in _SPECIAL}
        self._cache[word] = symbols

    def _merge(self, word: str) -> list[str]:
        """Apply BPE merges, lowest rank first, to one pre-token (last symbol marked with </w>)."""
        if word in self._cache:
            return self._cache[word]
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        self._remember(word, symbols)
        return symbols

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without start/end tokens."""
        to_char = byte_to_char()
        ids = []
        for piece in self._pattern.findall(clean(text)):
            word = "".join(to_char[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self._merge(word))
        return ids

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a string or a list of strings")
        context = self.context_length if context_length is None else _check_context(context_length)
        out = np.zeros((len(texts), context), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > context:
                ids = ids[:context]
                ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return out
