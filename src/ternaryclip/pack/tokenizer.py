"""A Hugging Face tokenizer packed into a ``.tclip``: its ``tokenizer.json`` as a blob, its rules as metadata.

The runtime reads them with ``tokenizers`` alone (:mod:`ternaryclip.runtime.hf_tokenizer`); here,
at pack time, transformers reads the tokenizer as the model's authors saved it (a folder with
``tokenizer.json`` or a SentencePiece model, as on the Hugging Face hub) and says its pad token.
"""

from __future__ import annotations

import os

BLOB = "tokenizer.json"


def _load(source):
    """A transformers tokenizer from a folder, or the tokenizer object itself."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    if not os.path.isdir(source):
        raise FileNotFoundError(
            f"tokenizer folder {str(source)!r} does not exist (give the folder that holds tokenizer.json "
            "or the SentencePiece model with its tokenizer_config.json, as on the Hugging Face hub)"
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(os.fspath(source))
    except (OSError, ValueError) as err:
        raise ValueError(f"{source}: no tokenizer transformers can read ({' '.join(str(err).split())[:200]})") from None


def _backend_json(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a SentencePiece ("slow") tokenizer: transformers converts it to tokenizers' form
        from transformers.convert_slow_tokenizer import convert_slow_tokenizer

        backend = convert_slow_tokenizer(tokenizer)
    return backend.to_str()


def tokenizer_meta(source, context_length: int, vocab_size: int, clean: str = "canonicalize") -> tuple[dict, bytes]:
    """``(meta["tokenizer"], blob)`` for ``source``: a tokenizer folder or a transformers tokenizer."""
    tokenizer = _load(source)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token; SigLIP pads every caption to its context with one")
    if len(tokenizer) > vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's vocabulary {vocab_size}")
    meta = {
        "type": "hf_tokenizers",
        "blob": BLOB,
        "context_length": context_length,
        "vocab_size": vocab_size,
        "pad_id": int(pad_id),
        "clean": clean,
    }
    return meta, _backend_json(tokenizer).encode("utf-8")
