"""The torch-free tokenizer and preprocessing equal open_clip's, id for id and pixel for pixel."""

import random

import numpy as np
import pytest
from PIL import Image

from ternaryclip.runtime import ClipTokenizer, ImageError, Preprocess

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")


def varied_texts(count: int = 400) -> list[str]:
    rng = random.Random(0)
    words = [
        "a",
        "photo",
        "of",
        "the",
        "cat",
        "dog's",
        "DOG",
        "running!!",
        "naïve",
        "café",
        "東京",
        "🙂",
        "x-ray",
        "3.14",
        "1,000",
        "don't",
        "we'll",
        "<b>bold</b>",
        "&amp;",
        "&lt;3",
        "C++",
        "e-mail@host.com",
        "\t",
        "\n",
        "Ünïcödé",
        "straße",
        "ﬁne",
        "İstanbul",
        "—",
        "...",
        "   ",
        "北京欢迎你",
        "مرحبا",
        "Привет",
        "#hashtag",
        "a" * 40,
        "supercalifragilisticexpialidocious",
        "'s",
        "l'homme",
        "¿qué?",
        "½",
        "²",
        "ⅷ",
    ]
    texts = [
        "",
        " ",
        "a photo of a cat",
        "A PHOTO OF A CAT",
        "two  spaces\tand\nnewlines",
        "mojibake Ã©tÃ©",
        " ".join(["long"] * 200),
    ]
    while len(texts) < count:
        texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))))
    return texts


def test_token_ids_equal_open_clip_on_varied_texts():
    theirs = open_clip.get_tokenizer("ViT-B-32")
    ours = ClipTokenizer(77)
    texts = varied_texts()
    assert np.array_equal(ours(texts), theirs(texts).numpy())
    assert ours.vocab_size == 49408


def test_truncation_keeps_the_end_token_last():
    ours = ClipTokenizer(16)
    ids = ours(["word " * 50])
    assert ids.shape == (1, 16) and ids[0, 0] == ours.sot and ids[0, -1] == ours.eot
    with pytest.raises(ValueError, match="strings"):
        ours([1, 2])


def make_images():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (300, 451, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(rng.integers(0, 256, (217, 180, 4), dtype=np.uint8), "RGBA")
    gray = Image.fromarray(rng.integers(0, 256, (224, 224), dtype=np.uint8), "L")
    palette = rgb.resize((100, 160)).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    tiny = Image.fromarray(rng.integers(0, 256, (7, 13, 3), dtype=np.uint8), "RGB")
    return {"rgb": rgb, "rgba": rgba, "gray": gray, "palette": palette, "tiny": tiny}


@pytest.mark.parametrize("name", ["rgb", "rgba", "gray", "palette", "tiny"])
def test_preprocess_equals_open_clip_eval_transform(name):
    image = make_images()[name]
    theirs = open_clip.image_transform(224, is_train=False)
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    ours = Preprocess(224, tuple(mean), tuple(std))
    assert np.abs(ours(image) - theirs(image).numpy()).max() < 1e-6


def test_preprocess_reads_paths_and_reports_broken_files(tmp_path):
    path = tmp_path / "ok.png"
    make_images()["rgb"].save(path)
    ours = Preprocess(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert ours(path).shape == (3, 64, 64)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        ours(broken)
    with pytest.raises(ImageError, match="PIL image or a path"):
        ours(42)


def test_normalize_equals_the_pil_path_at_model_size():
    import numpy as np
    from PIL import Image

    from ternaryclip.runtime.preprocess import Preprocess

    pre = Preprocess(size=32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    batch = pre.normalize(images)
    assert batch.shape == (3, 3, 32, 32)
    for image, normalized in zip(images, batch):
        np.testing.assert_array_equal(normalized, pre(Image.fromarray(image)))
    with pytest.raises(ValueError, match="uint8"):
        pre.normalize(images[:, :16])


def test_every_merge_is_learned_after_its_parts():
    """What lets BPE take pairs from a heap: no merge can create a pair of lower rank than its own."""
    ours = ClipTokenizer(77)
    made_at = {"".join(pair): rank for pair, rank in ours.ranks.items()}
    for (a, b), rank in ours.ranks.items():
        assert made_at.get(a, -1) < rank and made_at.get(b, -1) < rank, (a, b)
    # and the bound a long word is cut by: no token covers more characters of a word
    from ternaryclip.runtime import tokenizer

    assert max(len(token.removesuffix("</w>")) for token in ours.encoder) == tokenizer._LONGEST_TOKEN


def long_texts() -> list[str]:
    rng = random.Random(1)
    words = " ".join(varied_texts()).split(" ")
    letters = "abcdefghijklmnopqrstuvwxyzéü🙂"
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(100, 1500))) for _ in range(40)]
    for n in (100, 500, 3000):  # one pre-token of n characters, alone and between words
        word = "".join(rng.choice(letters) for _ in range(n))
        texts += [word, f"x {word} y", "&amp; " * 300 + word]
    return texts


@pytest.mark.parametrize("context", [16, 77])
def test_long_texts_and_long_words_equal_open_clip(context):
    texts = long_texts()
    theirs = open_clip.get_tokenizer("ViT-B-32")
    assert np.array_equal(ClipTokenizer(context)(texts), theirs(texts, context_length=context).numpy())


def test_the_first_ids_of_a_long_text_are_the_whole_texts_first_ids():
    """encode(max_tokens=n) reads growing prefixes of the text; its ids equal the whole text's first n."""
    ours = ClipTokenizer(77)
    for text in long_texts()[:40]:
        whole = ours.encode(text)
        for n in (0, 1, 7, 75, 300):
            assert ours.encode(text, n) == whole[:n]


def test_a_huge_caption_costs_what_the_context_can_hold(monkeypatch):
    """5 MB of words, or one 5 MB word: cleaning and BPE see a few thousand characters, not the text."""
    from ternaryclip.runtime import tokenizer

    cleaned, merged = [], []
    clean, bpe = tokenizer.clean, tokenizer.ClipTokenizer._bpe
    monkeypatch.setattr(tokenizer, "clean", lambda text: cleaned.append(len(text)) or clean(text))
    monkeypatch.setattr(
        tokenizer.ClipTokenizer, "_bpe", lambda self, symbols: merged.append(len(symbols)) or bpe(self, symbols)
    )
    theirs = open_clip.get_tokenizer("ViT-B-32")
    rng = random.Random(2)
    words = " ".join(
        rng.choice(["a", "photo", "of", "the", "red", "cat", "running", "naïve"]) for _ in range(1_000_000)
    )
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5_000_000))
    for text, context in ((words, 77), (word, 16)):
        cleaned.clear()
        merged.clear()
        ids = tokenizer.ClipTokenizer(context)([text])
        assert np.array_equal(ids, theirs([text[:3000]], context_length=context).numpy())
        assert sum(cleaned) < 10_000 and sum(merged) < 3_000, (sum(cleaned), sum(merged))
