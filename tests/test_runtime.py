"""The torch-free runtime against the torch model the file came from."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import ternaryclip
from helpers import TINY_OPEN_CLIP, random_inputs
from ternaryclip.cli import main
from ternaryclip.quant import TernaryConfig, ternarize_
from ternaryclip.runtime import ImageError


def cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture
def ternary_file(tmp_path):
    """A tiny ternary CLIP with CLIP's real 49408-token vocabulary, so that strings can be encoded."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.CLIP(**{**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}})
    ternarize_(model.eval(), TernaryConfig(embedding=True))
    return model, ternaryclip.save(model, tmp_path / "tiny.tclip", packing="base3")


def torch_embeddings(model, image, text):
    with torch.no_grad():
        return model.encode_image(image).numpy(), model.encode_text(text).numpy()


@pytest.mark.parametrize(
    "config",
    [
        TernaryConfig(embedding=True),
        TernaryConfig(scope="ffn", rule="twn"),
        TernaryConfig(granularity="group", group_size=32, rule="absmean2"),
    ],
)
def test_exact_mode_equals_the_torch_ternary_model(tiny_open_clip, tmp_path, config):
    ternarize_(tiny_open_clip, config)
    path = ternaryclip.save(tiny_open_clip, tmp_path / "m.tclip")
    image, text = random_inputs(batch=5)
    want_img, want_txt = torch_embeddings(tiny_open_clip, image, text)
    runtime = ternaryclip.load(path, mode="exact")
    got_img, got_txt = runtime.encode_image(image.numpy()), runtime.encode_text(text.numpy())
    assert cosine(got_img, want_img).min() >= 0.9999 and cosine(got_txt, want_txt).min() >= 0.9999
    assert np.allclose(got_img, want_img, atol=1e-4) and np.allclose(got_txt, want_txt, atol=1e-4)


def test_fast_mode_stays_close_to_exact_mode(ternary_file):
    model, path = ternary_file
    with torch.no_grad():  # random init leaves projections tiny; give the weights O(1) scale first
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0, p.shape[-1] ** -0.5)
    path = ternaryclip.save(model, path)
    image, text = random_inputs(batch=8)
    exact, fast = ternaryclip.load(path, mode="exact"), ternaryclip.load(path, mode="fast")
    img = cosine(fast.encode_image(image.numpy()), exact.encode_image(image.numpy()))
    txt = cosine(fast.encode_text(text.numpy()), exact.encode_text(text.numpy()))
    assert img.min() >= 0.995 and txt.min() >= 0.995


@pytest.mark.parametrize("final_ln_after_pool", [False, True])
def test_average_pooled_image_tower(tmp_path, final_ln_after_pool):
    import open_clip

    cfg = {
        **TINY_OPEN_CLIP,
        "vision_cfg": {**TINY_OPEN_CLIP["vision_cfg"], "pool_type": "avg", "final_ln_after_pool": final_ln_after_pool},
    }
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg).eval()
    ternarize_(model, TernaryConfig())
    path = ternaryclip.save(model, tmp_path / "avg.tclip")
    image, _ = random_inputs()
    with torch.no_grad():
        want = model.encode_image(image).numpy()
    assert np.allclose(ternaryclip.load(path, mode="exact").encode_image(image.numpy()), want, atol=1e-4)


def test_quick_gelu_and_eos_pooling(tmp_path):
    import open_clip

    cfg = {
        **TINY_OPEN_CLIP,
        "quick_gelu": True,
        "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "pool_type": "eos", "eos_id": 7},
    }
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg).eval()
    ternarize_(model, TernaryConfig())
    path = ternaryclip.save(model, tmp_path / "q.tclip")
    image, text = random_inputs()
    text[:, 9] = 7
    want_img, want_txt = torch_embeddings(model, image, text)
    runtime = ternaryclip.load(path, mode="exact")
    assert np.allclose(runtime.encode_image(image.numpy()), want_img, atol=1e-4)
    assert np.allclose(runtime.encode_text(text.numpy()), want_txt, atol=1e-4)


def test_images_as_pil_paths_and_arrays_agree(ternary_file, tmp_path):
    _, path = ternary_file
    runtime = ternaryclip.load(path, batch_size=2)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(3)]
    files = []
    for i, im in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        im.save(files[-1])
    from_pil = runtime.encode_image(images)
    assert np.array_equal(runtime.encode_image(files), from_pil)
    assert np.array_equal(runtime.encode_image(np.stack([runtime.preprocess(im) for im in images])), from_pil)
    normed = runtime.encode_image(images, normalize=True)
    assert np.allclose(np.linalg.norm(normed, axis=1), 1, atol=1e-5)
    text = runtime.encode_text(["a red circle", "a blue square", ""], normalize=True)
    assert text.shape == (3, TINY_OPEN_CLIP["embed_dim"])


def test_bad_inputs_raise_clear_errors(ternary_file, tmp_path):
    _, path = ternary_file
    runtime = ternaryclip.load(path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="broken.png"):
        runtime.encode_image([broken])
    with pytest.raises(ValueError, match="float32"):
        runtime.encode_image(np.zeros((1, 3, 32, 32), np.float64))
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        runtime.encode_image(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(ValueError, match="strings"):
        runtime.encode_text([1, 2])
    with pytest.raises(ValueError, match="token ids"):
        runtime.encode_text(np.full((1, 16), 60_000))
    with pytest.raises(ValueError, match="mode"):
        ternaryclip.load(path, mode="int4")


def test_runtime_never_imports_torch(ternary_file):
    _, path = ternary_file
    code = (
        "import sys, numpy as np, ternaryclip; m = ternaryclip.load(sys.argv[1]); "
        "m.encode_image(np.zeros((1, 3, 32, 32), np.float32)); m.encode_text(['a cat']); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


def test_command_line_starts_without_torch():
    code = "import sys, ternaryclip.cli; ternaryclip.cli.build_parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_embed_cli_writes_embeddings(ternary_file, tmp_path, capsys):
    _, path = ternary_file
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (80 * i, 10, 200)).save(folder / f"{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "emb.npz"
    assert main(["embed", str(path), "--images", str(folder), "--texts", "a cat", "a dog", "--out", str(out)]) == 0
    saved = np.load(out)
    runtime = ternaryclip.load(path)
    assert saved["image"].shape == (3, TINY_OPEN_CLIP["embed_dim"])
    assert np.allclose(saved["text"], runtime.encode_text(["a cat", "a dog"]))
    assert list(saved["image_files"]) == [str(folder / f"{i}.jpg") for i in range(3)]


@pytest.mark.slow
def test_vit_b_32_exact_mode_matches_torch(tmp_path):
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32").eval()
    ternarize_(model, TernaryConfig(embedding=True))
    path = ternaryclip.save(model, tmp_path / "b32.tclip")
    image = torch.randn(2, 3, 224, 224)
    text = open_clip.get_tokenizer("ViT-B-32")(["a photo of a cat", "a diagram"])
    want_img, want_txt = torch_embeddings(model, image, text)
    exact = ternaryclip.load(path, mode="exact")
    assert cosine(exact.encode_image(image.numpy()), want_img).min() >= 0.9999
    assert cosine(exact.encode_text(["a photo of a cat", "a diagram"]), want_txt).min() >= 0.9999
    fast = ternaryclip.load(path, mode="fast")
    assert cosine(fast.encode_image(image.numpy()), want_img).min() >= 0.995


def captions_of_varied_length(rng, batch: int, context: int, vocab: int) -> np.ndarray:
    """Start token, 1..context-3 words, end token (the highest id, where argmax pooling reads), zeros."""
    ids = np.zeros((batch, context), np.int64)
    for row in range(batch):
        n = int(rng.integers(1, context - 2))  # at most context - 1 tokens: every batch truncates
        ids[row, : n + 2] = [vocab - 2, *rng.integers(1, vocab - 2, n), vocab - 1]
    return ids


@pytest.mark.parametrize("mode", ["fast", "exact", "bf16"])
def test_text_at_caption_length_equals_the_full_context_forward(ternary_file, mode):
    _, path = ternary_file
    runtime = ternaryclip.load(path, mode=mode, batch_size=3)  # 3: captions bucketed across batches
    ids = captions_of_varied_length(np.random.default_rng(0), 10, 16, 49408)
    lengths = runtime._text_lengths(ids)
    assert lengths.max() < 16 and len(set(lengths.tolist())) > 3  # the test exercises truncation
    truncated, full = runtime.encode_text(ids), runtime.encode_text(ids, truncate=False)
    assert np.abs(truncated - full).max() <= 1e-6 * np.abs(full).max()
    # one caption alone gives what it gives inside a bucketed batch
    assert np.abs(runtime.encode_text(ids[4:5]) - truncated[4:5]).max() <= 1e-6 * np.abs(full).max()


@pytest.mark.parametrize("mode", ["fast", "exact", "bf16"])
def test_last_block_on_the_pooled_tokens_only_gives_the_same_embeddings(ternary_file, mode):
    _, path = ternary_file
    runtime = ternaryclip.load(path, mode=mode, batch_size=4)
    assert runtime.arch.vision.pool_type == "tok"  # the image tower takes the shortcut too
    ids = captions_of_varied_length(np.random.default_rng(3), 9, 16, 49408)
    pixels = np.random.default_rng(4).standard_normal((5, 3, 32, 32)).astype(np.float32)
    short = runtime.encode_text(ids), runtime.encode_image(pixels)
    runtime.pooled_rows_only = False
    every_row = runtime.encode_text(ids), runtime.encode_image(pixels)
    for got, want in zip(short, every_row):
        if mode == "fast":  # integer dots and row-wise float epilogues: the same bits for any M
            assert np.array_equal(got, want)
        else:
            assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


def test_text_at_caption_length_equals_open_clip(tiny_open_clip, tmp_path):
    ternarize_(tiny_open_clip, TernaryConfig())
    path = ternaryclip.save(tiny_open_clip, tmp_path / "m.tclip")
    ids = captions_of_varied_length(np.random.default_rng(1), 7, 16, 100)
    with torch.no_grad():
        want = tiny_open_clip.encode_text(torch.from_numpy(ids)).numpy()
    runtime = ternaryclip.load(path, mode="exact", batch_size=2)
    assert runtime._text_lengths(ids).max() < 16
    assert np.allclose(runtime.encode_text(ids), want, atol=1e-4)


def test_non_causal_text_tower_keeps_the_full_length(tmp_path):
    import open_clip

    torch.manual_seed(0)
    cfg = {**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "no_causal_mask": True}}
    model = open_clip.CLIP(**cfg).eval()
    ternarize_(model, TernaryConfig())
    path = ternaryclip.save(model, tmp_path / "n.tclip")
    ids = captions_of_varied_length(np.random.default_rng(2), 5, 16, 100)
    with torch.no_grad():
        want = model.encode_text(torch.from_numpy(ids)).numpy()
    runtime = ternaryclip.load(path, mode="exact", batch_size=2)
    assert (runtime._text_lengths(ids) == 16).all()
    assert np.allclose(runtime.encode_text(ids), want, atol=1e-4)


def test_threads_given_at_load_hold_in_every_python_thread(ternary_file):
    import threading

    from ternaryclip import kernels

    _, path = ternary_file
    runtime = ternaryclip.load(path, threads=1)
    seen = []

    def worker():
        kernels.set_num_threads(2)  # what the thread had before; the model applies its own count
        runtime.encode_text(["a cat"])
        seen.append(kernels.get_num_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [1]
    with pytest.raises(ValueError, match="threads must be an integer between 1 and"):
        ternaryclip.load(path, threads=100000)


def test_fast_mode_with_prepared_weights_equals_the_file_layout_path(ternary_file):
    _, path = ternary_file
    image, text = random_inputs(batch=3)
    ids = text.numpy() % 49407
    runtime = ternaryclip.load(path, mode="fast")
    linears = [b.__dict__[n] for b in runtime.visual_blocks + runtime.text_blocks for n in ("in_proj", "c_fc")]
    if all(lin.prepared is None for lin in linears):
        pytest.skip("this CPU's fast path reads the file layout directly")
    prepared = runtime.encode_image(image.numpy()), runtime.encode_text(ids)
    for block in runtime.visual_blocks + runtime.text_blocks:
        for lin in (block.in_proj, block.out_proj, block.c_fc, block.c_proj):
            lin.prepared = None  # back to kernels.gemm over the (released, refaulted) file pages
    assert np.array_equal(prepared[0], runtime.encode_image(image.numpy()))
    assert np.array_equal(prepared[1], runtime.encode_text(ids))
