"""CLIP's byte-level BPE tokenizer without torch: the same ids as ``open_clip.get_tokenizer``.

The merges file ``bpe_simple_vocab_16e6.txt.gz`` is OpenAI CLIP's (MIT licence), bundled so that
nothing is downloaded.  Text is cleaned the way open_clip does for CLIP models (ftfy, double HTML
unescape, whitespace collapse, lower case), split with the CLIP pattern, mapped byte by byte to
printable characters, merged by rank, and framed by start/end tokens.  Texts longer than the context
are truncated with the end token kept last, as open_clip does.
"""

from __future__ import annotations

import gzip
import heapq
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
# Bounds for tokenizing only as much of a text as the context can hold (``encode(max_tokens=)``).
_LONGEST_TOKEN = 32  # characters of the longest token in the vocabulary (its byte-level form)
_CUT_MARGIN = 64  # characters at a cut prefix's end that cleaning may change (HTML entities, ftfy)
_FIRST_PREFIX, _PREFIX_PER_TOKEN = 256, 16  # the first prefix tried: characters, plus these per wanted id


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
        """Apply BPE merges to one pre-token (last symbol marked with </w>)."""
        if word in self._cache:
            return self._cache[word]
        symbols = self._bpe(list(word[:-1]) + [word[-1] + "</w>"])
        self._remember(word, symbols)
        return symbols

    def _bpe(self, symbols: list[str]) -> list[str]:
        """Merge adjacent symbols, lowest rank first and leftmost first within a rank.

        The same result as the usual loop that merges every occurrence of the best pair in turn: a
        merge's parts are always learned before it, so a merge never creates a pair of lower rank
        (``tests/test_tokenizer_preprocess.py`` checks this on the merges file).  A heap of pairs and
        a linked list of symbols make a long word cost O(n log n) instead of O(n^2).
        """
        n, ranks = len(symbols), self.ranks
        symbols = list(symbols)
        after, before = list(range(1, n + 1)), list(range(-1, n - 1))
        heap = [(ranks[pair], i) for i, pair in enumerate(zip(symbols, symbols[1:])) if pair in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = after[i]
            if symbols[i] is None or j == n or ranks.get((symbols[i], symbols[j])) != rank:
                continue  # stale: one of the two symbols took part in another merge since
            symbols[i], symbols[j] = symbols[i] + symbols[j], None
            after[i] = k = after[j]
            if k < n:
                before[k] = i
                if (r := ranks.get((symbols[i], symbols[k]))) is not None:
                    heapq.heappush(heap, (r, i))
            if (h := before[i]) >= 0 and (r := ranks.get((symbols[h], symbols[i]))) is not None:
                heapq.heappush(heap, (r, h))
        return [s for s in symbols if s is not None]

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Token ids of ``text`` without start/end tokens; with ``max_tokens``, only its first ``max_tokens``.

        With ``max_tokens`` the work is bounded by the ids it returns, not by the text: cleaning and
        BPE run on growing prefixes of the text until the ids of the pre-tokens that end well before
        the cut (``_CUT_MARGIN`` characters: an HTML entity or a final sigma cut in two changes only
        the cleaned text's end) reach ``max_tokens``; on ordinary text these are the whole text's
        first ids.  A pre-token too long for the remaining budget (longer than the longest token
        times the ids still wanted, so it alone fills them) is cut to that length before BPE.
        """
        if max_tokens is None:
            return self._encode_clean(clean(text), None, cut=False)[0]
        size = _FIRST_PREFIX + _PREFIX_PER_TOKEN * max_tokens
        while size < len(text):
            ids, done = self._encode_clean(clean(text[:size]), max_tokens, cut=True)
            if done:
                return ids
            size *= 4
        return self._encode_clean(clean(text), max_tokens, cut=False)[0]

    def _encode_clean(self, cleaned: str, max_tokens: int | None, cut: bool) -> tuple[list[int], bool]:
        """Ids of cleaned text, up to ``max_tokens``, and whether they are final (False: ``cleaned``
        is a cut prefix too short to tell; only pre-tokens ending before its last ``_CUT_MARGIN``
        characters count)."""
        to_char = byte_to_char()
        stable = max(0, len(cleaned) - _CUT_MARGIN) if cut else len(cleaned) + 1
        ids: list[int] = []
        for match in self._pattern.finditer(cleaned):
            if max_tokens is not None and len(ids) >= max_tokens:
                break
            piece = cleaned[match.start() : min(match.end(), stable)]
            word = "".join(to_char[b] for b in piece.encode("utf-8"))
            if max_tokens is not None and len(word) > (room := _LONGEST_TOKEN * (max_tokens - len(ids))):
                # Alone it yields more ids than are still wanted: BPE on a prefix of it, no </w>.
                ids.extend(self.encoder[s] for s in self._bpe(list(word[:room])))
                break
            if match.end() >= stable:
                return ids, False
            ids.extend(self.encoder[s] for s in self._merge(word))
        return (ids if max_tokens is None else ids[:max_tokens]), True

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a string or a list of strings")
        context = self.context_length if context_length is None else _check_context(context_length)
        out = np.zeros((len(texts), context), dtype=np.int64)
        for row, text in enumerate(texts):
            # Only the first context - 2 ids can appear, so only those are computed.
            ids = [self.sot] + self.encode(text, max(context - 2, 0)) + [self.eot]
            if len(ids) > context:
                ids = ids[:context]
                ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return out
