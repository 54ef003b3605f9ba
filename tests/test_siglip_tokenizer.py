"""SigLIP's tokenizers without torch: ids equal open_clip's ``HFTokenizer`` (transformers underneath),
from a tokenizer built here and carried inside the ``.tclip``."""

from __future__ import annotations

import numpy as np
import pytest

from siglip_support import tiny_open_clip_siglip, write_tiny_tokenizer
from ternaryclip.pack import TclipError, read, write
from ternaryclip.pack.export import tclip_from_model
from ternaryclip.pack.tokenizer import tokenizer_meta
from ternaryclip.quant import TernaryConfig, ternarize_
from ternaryclip.runtime.hf_tokenizer import HFTokenizer, clean_text
from ternaryclip.runtime.model import TernaryCLIP

torch = pytest.importorskip("torch")

TEXTS = [
    "a photo of a cat",
    "A Photo, of a CAT!!",
    "an_old photograph &amp; a family... at the BEACH",
    "  two   small red circles\non a dark background ",
    "",
    "zebra 42 ünïcödé ☃ text",
    "the quick brown fox jumps over the lazy dog " * 12,  # longer than the context: truncated
]


def _open_clip_ids(folder: str, texts: list[str], context: int) -> np.ndarray:
    from open_clip.tokenizer import HFTokenizer as OpenClipHFTokenizer

    return OpenClipHFTokenizer(folder, context_length=context, clean="canonicalize")(texts).numpy()


@pytest.mark.parametrize("siglip2", [False, True], ids=["SigLIP-unigram", "SigLIP2-bpe"])
def test_ids_equal_open_clip_and_transformers(tmp_path, siglip2):
    from transformers import AutoTokenizer

    folder = write_tiny_tokenizer(tmp_path / "tok", siglip2=siglip2)
    meta, blob = tokenizer_meta(folder, context_length=64, vocab_size=100)
    ours = HFTokenizer(blob, 64, meta["pad_id"], meta["clean"])
    expected = _open_clip_ids(folder, TEXTS, 64)
    assert np.array_equal(ours(TEXTS), expected)
    reference = AutoTokenizer.from_pretrained(folder)  # as open_clip calls it, on the cleaned texts
    direct = reference(
        [clean_text(t, "canonicalize") for t in TEXTS], max_length=64, padding="max_length", truncation=True
    )
    assert np.array_equal(ours(TEXTS), np.array(direct["input_ids"]))
    assert (ours([""])[0, 2:] == meta["pad_id"]).all()
    short = ours(TEXTS, context_length=8)  # another context: truncated keeping the special tokens
    assert np.array_equal(short, _open_clip_ids(folder, TEXTS, 8))


def test_a_long_caption_is_tokenized_by_prefix_with_the_same_ids(tmp_path):
    folder = write_tiny_tokenizer(tmp_path / "tok")
    meta, blob = tokenizer_meta(folder, context_length=16, vocab_size=100)
    ours = HFTokenizer(blob, 16, meta["pad_id"])
    long = ["a photo of the sea, " * 5000, "word" * 20000 + " cat"]
    assert np.array_equal(ours(long), _open_clip_ids(folder, long, 16))


def test_the_tokenizer_travels_inside_the_tclip(tmp_path):
    folder = write_tiny_tokenizer(tmp_path / "tok")
    model = ternarize_(tiny_open_clip_siglip(context=16), TernaryConfig(scope="all", embedding=True))
    path = write(tclip_from_model(model, tokenizer=folder), tmp_path / "m.tclip", packing="base3")
    data = read(path)
    assert data.meta["version"] == 3 and data.meta["tokenizer"]["type"] == "hf_tokenizers"
    runtime = TernaryCLIP(data, mode="exact")
    ids = _open_clip_ids(folder, TEXTS, 16)
    assert np.array_equal(runtime.tokenize(TEXTS), ids)
    with torch.no_grad():
        reference = model.encode_text(torch.from_numpy(ids)).numpy()
    got = runtime.encode_text(TEXTS)
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() >= 0.9999


def test_a_siglip_file_without_tokenizer_takes_ids_and_says_how_to_add_one(tmp_path):
    model = ternarize_(tiny_open_clip_siglip(), TernaryConfig(scope="all", embedding=True))
    data = read(write(tclip_from_model(model), tmp_path / "m.tclip"))
    assert data.meta["version"] == 2 and data.meta["tokenizer"]["type"] == "none"
    runtime = TernaryCLIP(data)
    assert runtime.encode_text(np.ones((1, 16), np.int64)).shape == (1, 32)
    with pytest.raises(ValueError, match="--tokenizer"):
        runtime.encode_text(["a cat"])


def test_a_corrupt_tokenizer_blob_is_refused(tmp_path):
    folder = write_tiny_tokenizer(tmp_path / "tok")
    model = ternarize_(tiny_open_clip_siglip(), TernaryConfig(scope="all", embedding=True))
    path = write(tclip_from_model(model, tokenizer=folder), tmp_path / "m.tclip")
    raw = bytearray(path.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    import json

    entry = json.loads(raw[8 : 8 + header])["tokenizer.json"]
    raw[8 + header + entry["data_offsets"][0] + 20] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(TclipError, match="tokenizer.json"):
        read(path)


def test_a_folder_without_tokenizer_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer folder"):
        tokenizer_meta(tmp_path / "missing", 64, 100)
